"""``LegacyCrypto.open`` on the shapes legacy software writes (a fake cipher: the shapes,
not the cryptography, are under test here)."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from gateway.crypto.legacy import ARMOR_BEGIN, LegacyCrypto, PartResult, SealedPart
from gateway.mail import mime

SIGNER = "A" * 40
ARMOR_END = b"-----END PGP MESSAGE-----"


class FakeCipher:
    """'Encrypts' by armouring base64; decrypts it back, signed by :data:`SIGNER`."""

    def decrypt_verify(self, data: bytes, *, signer: str = "") -> PartResult:
        start = data.index(ARMOR_BEGIN) + len(ARMOR_BEGIN)
        return PartResult(base64.b64decode(data[start:data.index(ARMOR_END)]), SIGNER)

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart:
        return SealedPart(armour(data))


def armour(data: bytes) -> bytes:
    return ARMOR_BEGIN + b"\n\n" + base64.encodebytes(data) + ARMOR_END + b"\n"


@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_an_8bit_text_within_pgp_mime_is_passed_on_as_its_bytes(cte: str) -> None:
    """The decrypted entity's text is copied as parsed (8-bit bytes kept), not decoded —
    decoded, the writer (ASCII) could not write it: a traceback, not a message."""
    inner = EmailMessage(policy=mime.POLICY)
    inner["Content-Type"] = "multipart/mixed"
    inner.set_boundary("inner")
    text = EmailMessage(policy=mime.POLICY)
    text.set_content("Résultats : glycémie 5,2 mmol/l\n", cte=cte)
    inner.attach(text)
    encrypted = EmailMessage(policy=mime.POLICY)
    encrypted["From"] = "labo@legacy.example"
    encrypted["Content-Type"] = 'multipart/encrypted; protocol="application/pgp-encrypted"'
    encrypted.set_boundary("enc")
    for data, subtype in ((b"Version: 1\n", "pgp-encrypted"),
                          (armour(inner.as_bytes(policy=mime.POLICY)), "octet-stream")):
        part = EmailMessage(policy=mime.POLICY)
        part.set_content(data, maintype="application", subtype=subtype, cte="7bit")
        encrypted.attach(part)
    opened = LegacyCrypto(FakeCipher()).open(encrypted.as_bytes(policy=mime.WIRE),
                                             expected_signer=SIGNER)
    [leaf] = mime.leaves(mime.parse(opened.message))
    assert leaf.data.replace(b"\r\n", b"\n") == "Résultats : glycémie 5,2 mmol/l\n".encode()
    assert leaf.charset == "utf-8"
