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
    ("[legacy]\ndefault_mode = \"v3\"\n", "legacy.default_mode: must be one of v1, v2"),
    ("[legacy.hub]\nclient_fingerprint = \"AB:CD\"\n",
     "legacy.hub.client_fingerprint: must be the certificate's SHA-256"),
    ("[legacy.exit_codes]\n10 = \"decrypt\"\n", "legacy.exit_codes.10: must be one of"),
    ("[legacy.exit_codes]\n0 = \"unsigned\"\n", "legacy.exit_codes.0: must be an exit status"),
    ("[legacy]\nsigner_pattern = \"SIGNER .*\"\n", "legacy.signer_pattern: must be a regular"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_legacy_generation_and_the_hub(tmp_path: Path) -> None:
    """``[legacy] default_mode`` (v2 unless told), ``[legacy.hub]`` with the trust space's
    anchors and CRLs by default, the command adapter's tool description."""
    s = config.load(write(tmp_path, "[trust]\nanchors = [\"ca.pem\"]\ncrls = [\"ca.crl\"]\n"))
    assert s.legacy.default_mode == "v2" and not s.hub.configured
    fpr = "AB:" * 31 + "CD"
    s = config.load(write(tmp_path, f"""
[legacy]
default_mode = "V1"
armor_markers = ["$APICRYPT"]
attachment_suffixes = [".APZ"]
signer_pattern = "^Signature valide : (\\\\S+)"
[legacy.exit_codes]
10 = "cannot_decrypt"
20 = "transient"
[legacy.hub]
client_subject = "CN=hub.legacy.example,O=RESEAU"
client_fingerprint = "{fpr}"
auth_file = "hub-auth"
[trust]
anchors = ["ca.pem"]
crls = ["ca.crl"]
"""))
    assert s.legacy.default_mode == "v1"
    assert s.legacy.attachment_suffixes == (".apz",)
    assert s.legacy.exit_codes == {10: "cannot_decrypt", 20: "transient"}
    assert s.hub.configured and s.hub.certificate
    assert s.hub.client_fingerprint == fpr.replace(":", "").lower()
    assert s.hub.anchors == (tmp_path / "ca.pem",) and s.hub.crls == (tmp_path / "ca.crl",)
    assert s.hub.auth_file == tmp_path / "hub-auth"
    s = config.load(write(tmp_path, "[legacy.hub]\nclient_subject = \"CN=hub\"\n"
                                    "anchors = [\"hub-ca.pem\"]\n[trust]\ncrls = [\"ca.crl\"]\n"))
    assert s.hub.anchors == (tmp_path / "hub-ca.pem",) and s.hub.crls == ()  # its own CA


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
    assert default.legacy.adapter == "auto"  # the world leaves it to the default
