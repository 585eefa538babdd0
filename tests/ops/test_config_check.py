"""`passerelle config check` on a real temporary setup: certificates made here with cryptography."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.atrest import Keyring
from gateway.crypto.world import World
from gateway.documents import codes
from gateway.errors import EX_CONFIG
from gateway.ops import cli as ops_cli
from gateway.ops.configcheck import check
from tests.conftest import require_library, require_tool

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
ADDRESSES = (
    "legacy_address,trust_address,display_name,rpps,legacy_fingerprint,charset,hprim_code\n"
    f"dr.test@medical33.legacy.example,dr.test@legacy.mssante.example,Dr Test,10000000001,"
    f"{FPR},cp1252,DRTEST\n"
)
DOMAIN_LIST = """<?xml version="1.0" encoding="UTF-8"?>
<ListeBlanche xmlns="https://listeblanche.mssante.fr/schema">
  <DateDeGeneration>{generated}</DateDeGeneration>
  <Domaine><Nom>op.example</Nom><DNCertificatOperateur>CN=mx.op.example</DNCertificatOperateur>
  </Domaine>
</ListeBlanche>
"""


def signed_list(tmp: Path, xml: str) -> bytes:
    """``xml`` signed by the setup's anchor, the list's configured publisher."""
    from lxml import etree
    from signxml import methods
    from signxml.signer import XMLSigner

    root = etree.fromstring(xml.encode())
    done = XMLSigner(method=methods.enveloped, signature_algorithm="ecdsa-sha256",
                     digest_algorithm="sha256").sign(
        root, key=(tmp / "pki" / "anchor.key").read_bytes(),
        cert=(tmp / "pki" / "anchor.pem").read_text())
    return bytes(etree.tostring(done, xml_declaration=True, encoding="UTF-8"))


def make_cert(
    cn: str, *, days: int = 365, start_days: int = -1, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[bytes, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=start_days))
        .not_valid_after(NOW + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def write_setup(tmp: Path, **overrides: str) -> Path:
    """A complete, valid setup under ``tmp``; ``overrides`` replace whole TOML lines by key."""
    (tmp / "state").mkdir(mode=0o700)
    Keyring.generate().save(tmp / "keyring.json")
    (tmp / "gnupg").mkdir(mode=0o700)
    maps = tmp / "mappings"
    maps.mkdir()
    for name in ("lab-codes.csv", "units.csv"):
        shutil.copy(ROOT / "mappings" / name, maps / name)
    (maps / "addresses.csv").write_text(ADDRESSES, encoding="utf-8")
    pki = tmp / "pki"
    pki.mkdir()
    for role in ("signing", "server", "client", "anchor"):
        cert, key = make_cert(f"{role}.legacy.mssante.example")
        (pki / f"{role}.pem").write_bytes(cert)
        (pki / f"{role}.key").write_bytes(key)
    generated = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp / "liste.xml").write_bytes(signed_list(tmp, DOMAIN_LIST.format(generated=generated)))
    lines = {
        "state_dir": 'state_dir = "state"',
        "keys": 'file = "keyring.json"',
        # its GnuPG home holds no key: the gpg adapter, which looks at keys only at work
        "adapter": 'adapter = "openpgp"',
        "gnupg_home": 'gnupg_home = "gnupg"',
        "gateway_fingerprint": f'gateway_fingerprint = "{FPR}"',
        "signing_cert": 'signing_cert = "pki/signing.pem"',
        "signing_key": 'signing_key = "pki/signing.key"',
        "server_cert": 'server_cert = "pki/server.pem"',
        "server_key": 'server_key = "pki/server.key"',
        "client_cert": 'client_cert = "pki/client.pem"',
        "client_key": 'client_key = "pki/client.key"',
        "anchors": 'anchors = ["pki/anchor.pem"]',
        "domain_list": 'domain_list = "liste.xml"',
        "list_signer_cert": 'list_signer_cert = "pki/anchor.pem"',
    }
    lines.update(overrides)
    text = "\n".join([
        "[gateway]", lines["state_dir"], "[keys]", lines["keys"],
        "[legacy]", lines["adapter"], lines["gnupg_home"], lines["gateway_fingerprint"],
        "[trust]", *(lines[k] for k in ("signing_cert", "signing_key", "server_cert", "server_key",
                                        "client_cert", "client_key", "anchors", "domain_list",
                                        "list_signer_cert")),
        "[ops]", 'listen = "127.0.0.1:9325"', "[logging]", 'level = "info"', "",
    ])  # fmt: skip
    path = tmp / "passerelle.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="passerelle")
    ops_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.handler(args)
    return code, capsys.readouterr().out


def errors(path: Path) -> list[str]:
    return [str(p) for p in check(path) if p.level == "ERROR"]


needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not on PATH")


@needs_gpg
def test_a_valid_setup_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_setup(tmp_path)
    assert check(path) == []
    code, out = run_cli(["config", "check", "--config", str(path)], capsys)
    assert code == 0 and out == f"{path}: ok; legacy adapter: openpgp\n"


def test_expired_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_setup(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    cert, pem_key = make_cert("server", days=-3, start_days=-400, key=key)
    (tmp_path / "pki" / "server.pem").write_bytes(cert)
    (tmp_path / "pki" / "server.key").write_bytes(pem_key)
    day = (NOW - timedelta(days=3)).strftime("%Y-%m-%d")
    code, out = run_cli(["config", "check", "--config", str(path)], capsys)
    assert code == EX_CONFIG
    assert f"ERROR trust.server_cert: {tmp_path / 'pki' / 'server.pem'}: certificate expired " \
        f"on {day}" in out.splitlines()


def test_key_that_does_not_match_its_certificate(tmp_path: Path) -> None:
    path = write_setup(tmp_path, client_key='client_key = "pki/server.key"')
    assert errors(path) == [
        f"ERROR trust.client_key: {tmp_path / 'pki' / 'server.key'}: does not match the "
        f"certificate in {tmp_path / 'pki' / 'client.pem'}"
    ]


def test_soon_expiring_certificate_is_a_warning(tmp_path: Path) -> None:
    path = write_setup(tmp_path)
    cert, _ = make_cert("anchor", days=10)
    (tmp_path / "pki" / "anchor.pem").write_bytes(cert)
    anchors = [p for p in check(path) if p.key == "trust.anchors"]
    assert [p.level for p in anchors] == ["WARNING"]
    assert "in 9 days" in str(anchors[0]) or "in 10 days" in str(anchors[0])


def test_unreadable_and_garbage_files(tmp_path: Path) -> None:
    path = write_setup(tmp_path, signing_cert='signing_cert = "pki/missing.pem"',
                       anchors='anchors = ["pki/anchor.key"]')  # fmt: skip
    (tmp_path / "pki" / "server.key").write_text("not a key")
    found = errors(path)
    assert any(e.startswith("ERROR trust.signing_cert:") and "cannot read" in e for e in found)
    assert any(e.startswith("ERROR trust.server_key:") and "not a PEM or DER private key" in e
               for e in found)  # fmt: skip
    assert any(e.startswith("ERROR trust.anchors:") and "not a PEM or DER X.509" in e
               for e in found)  # fmt: skip


def test_domain_list_problems(tmp_path: Path) -> None:
    path = write_setup(tmp_path)
    listing = tmp_path / "liste.xml"
    listing.write_text("<ListeBlanche><Domaine></Domaine>", encoding="utf-8")
    assert any("not well-formed XML" in e for e in errors(path))
    listing.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    assert any("DOCTYPE" in e for e in errors(path))
    listing.write_bytes(DOMAIN_LIST.format(generated="2026-01-01").encode())
    assert any("not signed" in e for e in errors(path))
    listing.write_bytes(signed_list(tmp_path, '<ListeBlanche xmlns="https://listeblanche.mssante'
                                              '.fr/schema"><DateDeGeneration>2026-12-01'
                                              '</DateDeGeneration></ListeBlanche>'))
    assert any("no Domaine entry" in e for e in errors(path))
    old = (NOW - timedelta(hours=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    listing.write_bytes(signed_list(tmp_path, DOMAIN_LIST.format(generated=old)))
    stale = [str(p) for p in check(path) if p.key == "trust.domain_list"]
    assert stale == [f"WARNING trust.domain_list: {listing}: list generated 60 h ago "
                     "(max 48 h): refresh it"]  # fmt: skip


def test_mappings_and_legacy_problems(tmp_path: Path) -> None:
    path = write_setup(tmp_path, gnupg_home='gnupg_home = "nowhere"',
                       gateway_fingerprint='gateway_fingerprint = "ABC"')  # fmt: skip
    (tmp_path / "mappings" / "addresses.csv").write_text(
        ADDRESSES.replace(FPR, "XYZ"), encoding="utf-8"
    )
    found = errors(path)
    assert f"ERROR legacy.gnupg_home: {tmp_path / 'nowhere'}: not a directory" in found
    assert "ERROR legacy.gateway_fingerprint: must be 40 hex digits" in found
    assert any(e.startswith("ERROR mappings.addresses:") and "legacy_fingerprint" in e
               for e in found)  # fmt: skip


def test_daemon_keys_are_shape_checked(tmp_path: Path) -> None:
    path = write_setup(tmp_path)
    with path.open("a", encoding="utf-8") as f:
        f.write('[limits]\nmax_message_size = -1\n[routes]\n"op.example" = "mx.op.example"\n'
                '[retry]\ninitial = 7200\nmax = 3600\n[listen.legacy]\nport = 70000\n'
                '[lisen]\nx = 1\n')  # fmt: skip
    text = path.read_text().replace('level = "info"', 'level = "loud"')
    path.write_text(text.replace('listen = "127.0.0.1:9325"', 'listen = "9325"'))
    keys = {p.key for p in check(path)}
    assert {"limits.max_message_size", 'routes."op.example"', "retry.initial",
            "listen.legacy.port", "lisen", "ops.listen", "logging.level"} <= keys  # fmt: skip


def test_unreadable_config_and_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli(["config", "check", "--config", str(tmp_path / "no.toml"), "--json"],
                        capsys)  # fmt: skip
    doc = json.loads(out)
    assert code == EX_CONFIG and doc["ok"] is False
    assert doc["problems"][0]["key"] == "config"
    assert "cannot read" in doc["problems"][0]["message"]


@pytest.mark.parametrize("command", ["sqop", "no-such-sop-tool"])
def test_sop_adapter_is_checked_for_real(world: World, tmp_path: Path, command: str) -> None:
    """On the demo world: clean when sqop runs and the gateway's key has no passphrase; an
    error naming the key when the command is missing."""
    if command == "sqop":
        require_tool("sqop")
    path = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state",
                              {"legacy": {"adapter": "sop", "sop_command": [command]}})
    legacy = [str(p) for p in check(path) if p.key.startswith("legacy.")]
    if command == "sqop":
        assert legacy == []
    else:
        assert legacy == ["ERROR legacy.sop_command: no-such-sop-tool: not found or not "
                          "executable (Debian package sqop)"]


def test_auto_adapter_is_librnp_on_the_demo_world(world: World, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The default, "auto": librnp when it loads and can use the gateway's key, and the check
    says so."""
    require_library("rnp")
    path = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state",
                              {"legacy": {"adapter": "auto"}})
    assert [str(p) for p in check(path) if p.key.startswith("legacy.")] == []
    code, out = run_cli(["config", "check", "--config", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["legacy_adapter"] == "rnp"


def test_auto_adapter_without_librnp_warns_that_gpg_is_used(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util

    from gateway.crypto import rnp

    monkeypatch.setattr(rnp, "_lib", None)
    monkeypatch.setattr(rnp, "LIBRARY", "librnp-absent.so.0")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    path = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state",
                              {"legacy": {"adapter": "auto"}})
    assert [str(p) for p in check(path) if p.key.startswith("legacy.")] == [
        "WARNING legacy.adapter: auto: librnp is not installed (Debian package librnp0); the "
        "gpg adapter is used (several times librnp's CPU per part)"]
    code, out = run_cli(["config", "check", "--config", str(path)], capsys)
    assert code == 0 and out.endswith("; legacy adapter: openpgp\n")


def test_rnp_adapter_with_a_protected_key_is_an_error_and_auto_falls_back(
        world: World, tmp_path: Path) -> None:
    require_library("rnp")
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", "a passphrase", "--quick-gen-key", "gw@example.org",
                    "ed25519", "default", "never"], check=True, capture_output=True)
    fpr = next(line.split(":")[9] for line in subprocess.run(
        ["gpg", "--homedir", str(home), "--with-colons", "--list-keys"], capture_output=True,
        check=True, text=True).stdout.splitlines() if line.startswith("fpr:"))
    try:
        for adapter, expected in (("rnp", "ERROR legacy.adapter: rnp: "),
                                  ("auto", "WARNING legacy.adapter: auto: ")):
            path = world.write_config(tmp_path / f"{adapter}.toml", tmp_path / "state", {
                "legacy": {"adapter": adapter, "gnupg_home": str(home),
                           "gateway_fingerprint": fpr}})
            legacy = [str(p) for p in check(path) if p.key.startswith("legacy.")]
            assert len(legacy) == 1 and legacy[0].startswith(expected), legacy
            assert "without a passphrase" in legacy[0]
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


LAB_ROW = (
    "labo.TEST@medical69.legacy.example,labo.test@legacy.mssante.example,Laboratoire Test,,"
    f"{FPR},cp850,LABTEST\n"
)


def test_labs_of_the_address_book_without_a_row_are_listed(tmp_path: Path) -> None:
    """A lab (an address-book user without RPPS) with no labs.csv row would have every HPRIM
    report quarantined: `config check` says so; a labs.csv row for an unknown address too."""
    path = write_setup(tmp_path)
    maps = tmp_path / "mappings"
    (maps / "addresses.csv").write_text(ADDRESSES + LAB_ROW, encoding="utf-8")
    shutil.copy(ROOT / "mappings" / "labs.csv", maps / "labs.csv")
    found = [str(p) for p in check(path) if p.key == "mappings.labs"]
    assert any("labo.TEST@medical69.legacy.example: no RPPS" in f and "quarantined" in f
               for f in found), found
    assert not any("dr.test@" in f for f in found)  # a person (RPPS) is not a lab
    assert any("labo.BIOLAB@medical69.legacy.example is not in the address book" in f
               for f in found)
    # with its row, the lab is no longer listed
    row = ("labo.TEST@medical69.legacy.example,LABTEST,699999903,Laboratoire Test,,,,,"
           "10000000003,TEST,,G15_21/G,SA25,AMBULATOIRE,\n")
    (maps / "labs.csv").write_text((ROOT / "mappings" / "labs.csv").read_text("utf-8") + row,
                                   encoding="utf-8")
    codes._load.cache_clear()  # the tables are read once per directory and process
    found = [str(p) for p in check(path) if p.key == "mappings.labs"]
    assert not any("labo.TEST@" in f for f in found), found


def test_a_broken_lab_row_is_a_config_error(tmp_path: Path) -> None:
    path = write_setup(tmp_path)
    text = (ROOT / "mappings" / "labs.csv").read_text("utf-8").replace(",SA25,", ",SA99,", 1)
    (tmp_path / "mappings" / "labs.csv").write_text(text, encoding="utf-8")
    assert any("mappings.dir" in e and "facility_code 'SA99'" in e for e in errors(path))
@needs_gpg
@pytest.mark.parametrize("how", ["column", "default"])
def test_v1_users_without_hub_authentication_are_reported(tmp_path: Path, how: str) -> None:
    """A first-generation user (by their row, or by the gateway default) while the hub cannot
    authenticate: a warning naming the count; configuring the hub clears it."""
    path = write_setup(tmp_path)
    if how == "column":
        (tmp_path / "mappings" / "addresses.csv").write_text(
            ADDRESSES.replace("hprim_code\n", "hprim_code,legacy_mode\n")
            .replace("DRTEST\n", "DRTEST,v1\n"), encoding="utf-8")
    else:
        path.write_text(path.read_text().replace("[legacy]\n", '[legacy]\ndefault_mode = "v1"\n'))
    found = [str(p) for p in check(path)]
    assert any(p.startswith("WARNING legacy.hub:") and "1 first-generation (v1) user" in p
               for p in found), found
    auth = tmp_path / "hub-auth"
    auth.write_text("hub:secret\n")
    auth.chmod(0o644)
    with path.open("a", encoding="utf-8") as f:
        f.write(f'[legacy.hub]\nauth_file = "{auth}"\n')
    found = [str(p) for p in check(path)]
    assert not any("first-generation" in p for p in found)
    assert f"WARNING legacy.hub.auth_file: {auth}: readable by others than its owner " \
           "(chmod 600)" in found
    auth.write_text("no colon here\n")
    assert any(e.startswith("ERROR legacy.hub.auth_file:") for e in errors(path))


@needs_gpg
def test_v2_users_need_no_hub_authentication(tmp_path: Path) -> None:
    path = write_setup(tmp_path)
    assert check(path) == []


def test_the_keyring_and_the_modes_of_what_holds_messages_are_checked(tmp_path: Path) -> None:
    path = write_setup(tmp_path)
    state = tmp_path / "state"
    os.chmod(state, 0o755)
    (state / "spool.db").write_bytes(b"")
    os.chmod(state / "spool.db", 0o644)
    os.chmod(tmp_path / "keyring.json", 0o640)
    found = errors(path)
    assert any("state_dir" in e and "0755" in e for e in found)
    assert any("spool.db readable by others" in e for e in found)
    assert any("keys.file" in e and "0640" in e for e in found)
    (tmp_path / "keyring.json").write_text("{}")
    assert any("not a passerelle keyring" in e for e in errors(path))
    (tmp_path / "other").mkdir()
    no_keys = write_setup(tmp_path / "other", keys="# file = \"\"")
    assert [str(p) for p in check(no_keys) if p.level == "WARNING"] == [
        "WARNING keys.file: no keyring: messages are stored in clear (make one with "
        "`passerelle keys new`, give it as [keys] file or the systemd credential "
        "passerelle-keys)"]
