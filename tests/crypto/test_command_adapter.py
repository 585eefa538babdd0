"""The external-command adapter, driven against a small fake of the licensed tools."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway import errors
from gateway.crypto.command import CommandCipher
from gateway.crypto.legacy import LegacyCrypto
from gateway.mail import mime

TOOL = str(Path(__file__).with_name("fake_legacy_tool.py"))


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    for name in ("GATEWAY", "DUPONT", "MARTIN"):
        (tmp_path / f"{name}.key").write_bytes(name.encode() * 4)
    return tmp_path


def cipher(keydir: Path, *, signer: str = "GATEWAY", timeout: float = 10) -> CommandCipher:
    return CommandCipher(
        open_argv=(sys.executable, TOOL, "open", "{in}", "{out}", "{keydir}"),
        seal_argv=(sys.executable, TOOL, "seal", "{in}", "{out}", "{keydir}", "{recipient}",
                   "{signer}"),
        key_dir=keydir, timeout=timeout, gateway_key=signer)


def message(body: bytes) -> bytes:
    m = EmailMessage()
    m["From"] = "jean.DUPONT@medical33.legacy.example"
    m.set_content(body, maintype="text", subtype="plain")
    return m.as_bytes()


def apicrypt_message(body: bytes) -> bytes:
    m = EmailMessage()
    m["From"] = "jean.DUPONT@medical33.legacy.example"
    m.add_attachment(body, maintype="application", subtype="octet-stream",
                     filename="lettre.txt.apz")
    return m.as_bytes()


def test_seal_then_open_through_the_tool(keydir: Path) -> None:
    dupont = LegacyCrypto(cipher(keydir, signer="DUPONT"))
    sealed_part = dupont.cipher.encrypt_sign(b"Compte rendu", recipient="GATEWAY")
    assert sealed_part.tool == "command"
    opened = LegacyCrypto(cipher(keydir)).open(apicrypt_message(sealed_part.data),
                                               expected_signer="DUPONT")
    part = mime.leaves(mime.parse(opened.message))[0]
    assert (part.filename, part.data) == ("lettre.txt", b"Compte rendu")
    assert opened.verification.signer == "DUPONT"


@pytest.mark.parametrize(("payload", "error"), [
    (b"plain text", errors.CannotDecrypt),
    (b"$APICRYPT GATEWAY DUPONT\n", errors.Unsigned),
    (b"$APICRYPT GATEWAY NOBODY 00\n", errors.UnknownKey),
    (b"$APICRYPT GATEWAY DUPONT 00\nxx", errors.BadSignature),
])
def test_tool_verdicts_become_typed_errors(keydir: Path, payload: bytes,
                                           error: type[Exception]) -> None:
    with pytest.raises(error):
        LegacyCrypto(cipher(keydir)).open(apicrypt_message(payload), expected_signer="DUPONT")


def test_wrong_signer(keydir: Path) -> None:
    part = cipher(keydir, signer="MARTIN").encrypt_sign(b"x", recipient="GATEWAY").data
    with pytest.raises(errors.WrongSigner):
        LegacyCrypto(cipher(keydir)).open(apicrypt_message(part), expected_signer="DUPONT")


def test_timeout_is_transient(keydir: Path) -> None:
    with pytest.raises(errors.CryptoToolError, match="timed out"):
        LegacyCrypto(cipher(keydir, timeout=0.5)).open(apicrypt_message(b"$HANG"),
                                                       expected_signer="DUPONT")


def test_missing_tool_is_transient(keydir: Path) -> None:
    broken = CommandCipher(open_argv=("/nonexistent/apiuncrypt", "{in}"), seal_argv=(),
                           key_dir=keydir, timeout=5, gateway_key="GATEWAY")
    with pytest.raises(errors.CryptoToolError, match="cannot run"):
        LegacyCrypto(broken).open(apicrypt_message(b"$APICRYPT x"), expected_signer="DUPONT")


def test_seal_without_recipient_key_never_falls_back(keydir: Path) -> None:
    with pytest.raises(errors.NoRecipientKey):
        LegacyCrypto(cipher(keydir)).seal(message(b"x"), recipient="UNKNOWN")
