"""S/MIME signatures: openssl verifies ours; any changed byte breaks them."""

from __future__ import annotations

import base64
import email.policy
import hashlib
import re
import subprocess
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.crypto import smime
from gateway.crypto.pki import TrustAnchors
from gateway.crypto.world import World
from gateway.errors import CertificateRejected, SmimeError


def message() -> bytes:
    m = EmailMessage()
    m["From"] = "Dr Jean Dupont <jean.dupont@legacy.mssante.example>"
    m["To"] = "dr.x@hopital-a.mssante.example"
    m["Subject"] = "Compte rendu — hémoglobine"
    m.set_content("Hémoglobine à 11,8 g/dL.\nÀ revoir dans trois mois.\n",
                  cte="quoted-printable")
    m.add_attachment(b"%PDF-1.4 rapport", maintype="application", subtype="pdf",
                     filename="CR0001.PDF")
    return m.as_bytes(policy=email.policy.SMTP)


@pytest.fixture(scope="module")
def signed(world: World) -> bytes:
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    return smime.sign_and_check(message(), identity, anchors=anchors, at=datetime.now(UTC))


def openssl_verify(world: World, data: bytes, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "signed.eml"
    path.write_bytes(data)
    return subprocess.run(["openssl", "cms", "-verify", "-in", str(path), "-CAfile",
                           str(world.ca_cert), "-purpose", "smimesign", "-out", "/dev/null"],
                          capture_output=True, check=False)


def test_openssl_verifies_our_signature(world: World, signed: bytes, tmp_path: Path) -> None:
    assert b'multipart/signed; protocol="application/pkcs7-signature"' in signed
    assert b"micalg=sha-256" in signed
    assert signed.isascii()
    proc = openssl_verify(world, signed, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"Verification successful" in proc.stderr


def test_headers_stay_outside_and_readable(signed: bytes) -> None:
    msg = email.message_from_bytes(signed, policy=email.policy.default)
    assert msg["Subject"] == "Compte rendu — hémoglobine"
    assert msg.get_content_type() == "multipart/signed"


def _content_offsets(signed: bytes) -> list[int]:
    start = signed.index(b"Content-Type: multipart/mixed")
    end = signed.index(b"application/pkcs7-signature; name")
    return [start + (end - start) * k // 7 for k in range(1, 7)]


def test_any_changed_byte_fails_both_verifiers(world: World, signed: bytes,
                                               tmp_path: Path) -> None:
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    for offset in _content_offsets(signed):
        tampered = bytearray(signed)
        tampered[offset] = ord("x") if tampered[offset] != ord("x") else ord("y")
        assert openssl_verify(world, bytes(tampered), tmp_path).returncode != 0
        with pytest.raises(SmimeError):
            smime.verify(bytes(tampered), anchors=anchors, at=datetime.now(UTC))


def test_verify_returns_exact_content_and_signer(world: World, signed: bytes) -> None:
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    result = smime.verify(signed, anchors=anchors, at=datetime.now(UTC))
    assert result.signer.startswith("CN=passerelle@legacy.mssante.example")
    assert result.content in signed
    assert b"Content-Type: multipart/mixed" in result.content


def test_signature_from_another_ca_is_refused(world: World, signed: bytes) -> None:
    other = TrustAnchors.load([world.evil_ca_cert])
    with pytest.raises(CertificateRejected):
        smime.verify(signed, anchors=other, at=datetime.now(UTC))


def test_expired_signer_is_refused(world: World, signed: bytes) -> None:
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    with pytest.raises(CertificateRejected, match="expired"):
        smime.verify(signed, anchors=anchors, at=datetime(2040, 1, 1, tzinfo=UTC))


def test_eight_bit_content_is_not_signed(world: World) -> None:
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    raw = "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhé\r\n".encode()
    with pytest.raises(SmimeError, match="7-bit"):
        smime.sign(raw, identity)


def test_encrypt_decrypt_round_trip(world: World) -> None:
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    sealed = smime.encrypt(message(), [identity.cert])
    assert b"CR0001.PDF" not in sealed
    opened = smime.decrypt(sealed, identity)
    assert b"CR0001.PDF" in opened and b"11,8 g/dL" in opened


@given(st.binary(max_size=200) | st.text(alphabet="\r\nab é", max_size=60).map(str.encode))
def test_line_ends_become_crlf_and_nothing_else_changes(data: bytes) -> None:
    from gateway.crypto.smime import _crlf

    out = _crlf(data)
    assert out == re.sub(rb"\r?\n", b"\r\n", data)  # the canonical form of RFC 5751 §3.1.1
    assert b"\n" not in out.replace(b"\r\n", b"")


def _assembled_as_before(message: bytes, identity: smime.SigningIdentity,
                         boundary: bytes) -> bytes:
    """How ``sign`` assembled its output before it wrote the entity in place (the
    reference the in-place writer must equal)."""
    from gateway.crypto.smime import _CONTENT_HEADERS, _header_fields, _split

    head, body = _split(message)
    outer: list[bytes] = []
    inner: list[bytes] = []
    for f in _header_fields(head):
        name = f.split(b":", 1)[0].strip().lower()
        if name == b"mime-version":
            continue
        (inner if name in _CONTENT_HEADERS else outer).append(f)
    if not any(f.lower().startswith(b"content-type") for f in inner):
        inner.append(b"Content-Type: text/plain; charset=us-ascii")
    entity = b"\r\n".join(inner) + b"\r\n\r\n" + body
    entity.decode("ascii")
    signature = smime._detached_signature(memoryview(entity), identity)
    b64 = base64.encodebytes(signature).replace(b"\n", b"\r\n")
    return b"\r\n".join([
        *outer, b"MIME-Version: 1.0",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256;\r\n boundary="' + boundary + b'"',
        b"", b"This is a cryptographically signed message in MIME format.", b"",
        b"--" + boundary, entity, b"--" + boundary,
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="smime.p7s"', b"",
        b64.rstrip(b"\r\n"), b"--" + boundary + b"--", b""])


FIELDS = st.sampled_from([b"Subject: x", b"Content-Type: text/plain", b"MIME-Version: 1.0",
                          b"content-transfer-encoding: base64", b"X-A: b\r\n c", b"From: a@b"])


@given(st.lists(FIELDS, max_size=6), st.sampled_from([b"\r\n", b"\n"]),
       st.text(alphabet="\r\nab=-", max_size=200).map(str.encode), st.booleans())
def test_signed_output_is_assembled_as_before(fields: list[bytes], nl: bytes, body: bytes,
                                              headed: bool) -> None:
    identity = cast(smime.SigningIdentity, object())
    message = nl.join(fields) + (nl + nl if headed else b"") + body
    boundary = b"----=_passerelle_signed_" + b"0" * 24
    with pytest.MonkeyPatch.context() as mp:
        # the signature stands for what was signed, so that both ways can be compared
        mp.setattr(smime, "_detached_signature",
                   lambda data, _identity: hashlib.sha512(bytes(data)).digest() * 3)
        mp.setattr(smime.secrets, "token_hex", lambda _n: "0" * 24)
        assert smime.sign(message, identity) == _assembled_as_before(message, identity,
                                                                     boundary)


def test_verify_reads_what_it_verifies_in_place(world: World, signed: bytes) -> None:
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    lf = signed.replace(b"\r\n", b"\n")  # a relay that wrote bare LFs: read as CRLF
    for data in (signed, lf):
        result = smime.verify(data, anchors=anchors, at=datetime.now(UTC))
        assert result.content in signed and result.content.startswith(b"Content-Type:")
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    handed, signer = smime.Smime(identity, anchors).verify(signed, at=datetime.now(UTC))
    assert signer == result.signer
    # the receiver's view: the outer headers, then the signed entity (read where it is)
    outer = [f for f in smime._header_fields(smime._head(signed)[0])
             if not f.lower().startswith((b"content-", b"mime-version"))]
    again = handed.again()
    content = handed.take()
    assert content == b"\r\n".join(outer) + b"\r\n" + result.content
    assert content.startswith(b"From: Dr Jean Dupont")
    assert again.take() == content  # read once more, e.g. for another recipient
