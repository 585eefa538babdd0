"""The sop adapter (``legacy.adapter = "sop"``): sqop opens and seals, on the GnuPG home's keys,
with the gateway's policy on keys out of date; gpg names what sqop refuses.

The verdicts shared with the gpg adapter are checked through both in ``test_openpgp.py``."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import structlog

from gateway import errors
from gateway import log as ops_logging
from gateway.crypto.legacy import LegacyCrypto, PartResult, SealedPart
from gateway.crypto.sop import SopCipher, _listing
from gateway.crypto.world import World
from gateway.mail import mime
from tests.conftest import gateway_crypto, legacy_client, require_tool
from tests.crypto.test_openpgp import _encrypt_signed, _inline, letter


@pytest.fixture
def sop_crypto(world: World) -> LegacyCrypto:
    return gateway_crypto(world, "sop")


def _gpg_must_not_run(cipher: SopCipher) -> list[str]:
    called: list[str] = []

    def decrypt_verify(data: bytes, *, signer: str = "") -> PartResult:
        called.append("decrypt_verify")
        raise AssertionError("gpg was asked")

    def encrypt_sign(data: bytes, *, recipient: str) -> SealedPart:
        called.append("encrypt_sign")
        raise AssertionError("gpg was asked")

    cipher.gpg.decrypt_verify = decrypt_verify  # type: ignore[method-assign]
    cipher.gpg.encrypt_sign = encrypt_sign  # type: ignore[method-assign]
    return called


def test_sqop_opens_and_seals_without_gpg(world: World, sop_crypto: LegacyCrypto) -> None:
    assert isinstance(sop_crypto.cipher, SopCipher)
    sealed = legacy_client(world, "dupont").seal(letter().as_bytes(),
                                                 recipient=world.fingerprints["gateway"])
    called = _gpg_must_not_run(sop_crypto.cipher)
    opened = sop_crypto.open(sealed, expected_signer=world.fingerprints["dupont"])
    assert opened.verification.parts == ("body:inline", "attachment:2")
    assert mime.leaves(mime.parse(opened.message))[1].data == b"%PDF-1.4 scan"
    resealed, tools = sop_crypto.seal_traced(letter().as_bytes(),
                                             recipient=world.fingerprints["martin"])
    assert called == []
    assert tools == ("sop", "sop")
    # martin's own software (gpg) opens what sqop sealed, signed by the gateway's key
    back = legacy_client(world, "martin").open(resealed,
                                                expected_signer=world.fingerprints["gateway"])
    assert mime.leaves(mime.parse(back.message))[1].data == b"%PDF-1.4 scan"


def test_sqop_alone_accepts_a_signature_made_before_expiry_the_adapter_does_not(
        world: World, sop_crypto: LegacyCrypto, tmp_path: Path) -> None:
    """The key check is what refuses it: sqop itself finds the old signature good."""
    gw = world.fingerprints["gateway"]
    signed = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["perime"], "--batch",
         "--faked-system-time", "20200101T120000", "--sign"], input=b"x",
        capture_output=True, check=True).stdout
    armored = _encrypt_signed(world, gw, signed)
    cipher = sop_crypto.cipher
    assert isinstance(cipher, SopCipher)
    key, cert = tmp_path / "key", tmp_path / "cert"
    key.write_bytes(cipher._key)
    cert_obj = cipher._cert(world.fingerprints["perime"])
    assert cert_obj is not None and not cert_obj.primary.usable("", 1.9e9)
    cert.write_bytes(cert_obj.data)
    raw = subprocess.run(["sqop", "decrypt", f"--verify-with={cert}",
                          f"--verifications-out={tmp_path / 'v'}", str(key)],
                         input=armored, capture_output=True, check=False)
    assert raw.returncode == 0 and raw.stdout == b"x"
    assert world.fingerprints["perime"] in (tmp_path / "v").read_text()
    with pytest.raises(errors.KeyExpired):
        sop_crypto.open(_inline(armored), expected_signer=world.fingerprints["perime"])


def test_a_sha1_signature_sqop_refuses_is_opened_by_gpg(world: World,
                                                        sop_crypto: LegacyCrypto) -> None:
    """Legacy software that still signs with SHA-1: sqop's policy refuses the signature, gpg
    accepts it, as the default adapter does; the verification says gpg checked it."""
    armored = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--trust-model", "always",
         "--armor", "--digest-algo", "SHA1", "--sign", "--encrypt", "-r",
         world.fingerprints["gateway"]], input=b"signed with SHA-1", capture_output=True,
        check=True).stdout
    opened = sop_crypto.open(_inline(armored), expected_signer=world.fingerprints["dupont"])
    assert opened.verification.tools == ("gpg",)
    assert mime.leaves(mime.parse(opened.message))[0].data == b"signed with SHA-1"


def test_a_key_revoked_while_running_is_refused_at_the_next_message(
        world: World, tmp_path: Path) -> None:
    require_tool("sqop")
    home = tmp_path / "gw"
    shutil.copytree(world.gnupg_gateway, home, ignore=shutil.ignore_patterns("S.*"))
    try:
        crypto = LegacyCrypto(SopCipher(home, gateway_fingerprint=world.fingerprints["gateway"]))
        dupont = world.fingerprints["dupont"]
        client = legacy_client(world, "dupont")
        first = client.seal(letter().as_bytes(), recipient=world.fingerprints["gateway"])
        assert crypto.open(first, expected_signer=dupont).verification.signer == dupont
        rev = (Path(world.gnupg_users["dupont"]) / "openpgp-revocs.d" / f"{dupont}.rev")
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"],
                       input=rev.read_bytes().replace(b":-----BEGIN", b"-----BEGIN"),
                       capture_output=True, check=True)
        second = client.seal(letter().as_bytes(), recipient=world.fingerprints["gateway"])
        with pytest.raises(errors.KeyRevoked):
            crypto.open(second, expected_signer=dupont)
        with pytest.raises(errors.NoRecipientKey):
            crypto.seal(letter().as_bytes(), recipient=dupont)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


def test_a_seal_sqop_refuses_is_made_by_gpg_and_says_so(
        world: World, tmp_path: Path) -> None:
    """A sqop that cannot encrypt (here a wrapper refusing it, as a broken upgrade would):
    gpg seals the parts, the trace's tools say gpg, and the log says why, without the text."""
    require_tool("sqop")
    wrapper = tmp_path / "sqop-no-encrypt"
    wrapper.write_text('#!/bin/sh\n[ "$1" = encrypt ] && exit 69\nexec sqop "$@"\n')
    wrapper.chmod(0o755)
    log = io.StringIO()
    ops_logging.configure("info", stream=log)
    try:
        crypto = LegacyCrypto(SopCipher(world.gnupg_gateway,
                                        gateway_fingerprint=world.fingerprints["gateway"],
                                        command=[str(wrapper)]))
        sealed, tools = crypto.seal_traced(letter().as_bytes(),
                                           recipient=world.fingerprints["martin"])
    finally:
        structlog.reset_defaults()
    assert tools == ("gpg", "gpg")
    back = legacy_client(world, "martin").open(sealed,
                                                expected_signer=world.fingerprints["gateway"])
    assert mime.leaves(mime.parse(back.message))[1].data == b"%PDF-1.4 scan"
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    refused = [e for e in events if e.get("event") == "legacy.sop_not_accepted"]
    assert [(e["stage"], e["exit_code"]) for e in refused] == [("seal", 69), ("seal", 69)]
    assert "moglobine" not in json.dumps(events) and "scan.pdf" not in json.dumps(events)


def test_missing_sop_command_is_a_clear_transient_error(world: World, tmp_path: Path) -> None:
    with pytest.raises(errors.CryptoToolError, match="no-such-sqop' unavailable"):
        SopCipher(world.gnupg_gateway, gateway_fingerprint=world.fingerprints["gateway"],
                  command=[str(tmp_path / "no-such-sqop")])


def test_a_protected_gateway_key_is_refused_at_start(world: World, tmp_path: Path) -> None:
    require_tool("sqop")
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", "a passphrase", "--quick-gen-key", "gw@example.org",
                    "ed25519", "sign", "never"], check=True, capture_output=True)
    listed = _listing(subprocess.run(
        ["gpg", "--homedir", str(home), "--with-colons", "--fixed-list-mode",
         "--with-subkey-fingerprint", "--list-keys"], capture_output=True, check=True,
        text=True).stdout)
    assert listed is not None
    try:
        with pytest.raises(errors.CryptoToolError, match="without a passphrase"):
            SopCipher(home, gateway_fingerprint=listed[0].fingerprint)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)
