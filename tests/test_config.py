"""Configuration: typed settings, relative paths, errors that name file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config
from gateway.crypto.world import World
from gateway.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "passerelle.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, """
[gateway]
domain = "Legacy.MSSante.example"
[legacy]
gnupg_home = "keys/gnupg"
gateway_fingerprint = "ab12 "
[trust]
anchors = ["pki/ca.pem"]
accept_unsigned = false
"""))
    assert s.domain == "legacy.mssante.example"
    assert s.legacy.gnupg_home == tmp_path / "keys" / "gnupg"
    assert s.legacy.gateway_fingerprint == "AB12"
    assert s.trust.anchors == (tmp_path / "pki" / "ca.pem",)
    assert s.trust.accept_unsigned is False
    assert s.addresses == tmp_path / "mappings" / "addresses.csv"
    assert s.state_dir == tmp_path / "state"
    assert "ECDHE-RSA-AES256-GCM-SHA384" in s.trust.ciphers
    assert s.journal_url.startswith("sqlite:///")


@pytest.mark.parametrize(("text", "message"), [
    ("[legacy]\ntimeout = -1\n", "legacy.timeout: must be a positive number"),
    ("[legacy]\nadapter = \"magic\"\n", "legacy.adapter"),
    ("[trust]\naccept_unsigned = \"yes\"\n", "trust.accept_unsigned: must be true or false"),
    ("[trust]\nanchors = 3\n", "trust.anchors: must be a list of paths"),
    ("gateway = 1\n", "gateway: must be a table"),
    ("[gateway\n", "not valid TOML"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "absent.toml")


def test_directory_preference_and_aliases(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, """
[directory]
types = ["cab", "PER"]
preferred_domains = ["Hopital-A.mssante.example"]
hprim_alias = "Resultats"
"""))
    assert s.directory.types == ("CAB", "PER")
    assert s.directory.preferred_domains == ("hopital-a.mssante.example",)
    assert s.directory.hprim_alias == "resultats"
    assert s.directory_target == tmp_path / "state" / "directory.db"
    assert config.load(write(tmp_path, "")).directory.types == ("PER", "CAB", "ORG", "APP")
    with pytest.raises(ConfigError, match=r"directory\.types: unknown mailbox type\(s\) XYZ"):
        config.load(write(tmp_path, '[directory]\ntypes = ["PER", "XYZ"]\n'))
    with pytest.raises(ConfigError, match=r"directory\.hprim_alias"):
        config.load(write(tmp_path, '[directory]\nhprim_alias = "rpps-x"\n'))


def test_sop_adapter_and_its_command(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, "[legacy]\nadapter = \"sop\"\n"))
    assert (s.legacy.adapter, s.legacy.sop_command) == ("sop", ("sqop",))
    s = config.load(write(tmp_path, "[legacy]\nadapter = \"sop\"\n"
                                    "sop_command = [\"/opt/sop/bin/sqop\", \"--debug\"]\n"))
    assert s.legacy.sop_command == ("/opt/sop/bin/sqop", "--debug")


def test_the_default_adapter_is_auto_and_rnp_is_one(tmp_path: Path) -> None:
    """Unset, ``legacy.adapter`` is "auto" (librnp when it loads, else gpg: see the factory)."""
    assert config.load(write(tmp_path, "[legacy]\n")).legacy.adapter == "auto"
    assert config.load(write(tmp_path, "[legacy]\nadapter = \"rnp\"\n")).legacy.adapter == "rnp"


def test_a_worlds_configuration_takes_keys_for_its_own_tables_and_new_ones(
        world: World, tmp_path: Path) -> None:
    """How tests and benchmarks run the demo world with another adapter: the world's [legacy]
    table has the keys given replaced or added, the rest of it and of the file as it was."""
    path = world.write_config(tmp_path / "p.toml", tmp_path / "state", {
        "legacy": {"adapter": "sop", "sop_command": ["/opt/sqop", "--x"]},
        "listen.legacy": {"port": 2600}})
    s = config.load(path)
    assert (s.legacy.adapter, s.legacy.sop_command) == ("sop", ("/opt/sqop", "--x"))
    assert s.legacy.gnupg_home == world.gnupg_gateway
    assert s.legacy.gateway_fingerprint == world.fingerprints["gateway"]
    assert s.trust.anchors == (world.ca_cert,) and s.state_dir == tmp_path / "state"
    assert s.daemon.legacy_listen[1] == 2600
    default = config.load(world.write_config(tmp_path / "d.toml", tmp_path / "state", {}))
    assert default.legacy.adapter == "openpgp"  # the world says which
