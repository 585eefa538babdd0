"""S/MIME on the trust side: detached ``multipart/signed`` (SHA-256), verification, encryption.

Signing canonicalises first (RFC 8551 §3.1.1): the signed entity must be 7-bit with CRLF line
ends, so that no relay re-encoding can break the signature; we refuse to sign anything else
(the composer writes quoted-printable or base64 parts).  ``sign_and_check`` verifies our own
output before it is queued (lesson 7 from peers).

Verification reads the CMS SignedData (asn1crypto), checks the content digest, the signature
over the signed attributes with the signer's certificate, and the certificate's chain, expiry,
key usage and revocation (:func:`gateway.crypto.pki.validate_chain`).
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.crypto.pki import TrustAnchors, validate_chain
from gateway.crypto.x509util import dn_string, load_certificate, load_certificates, load_private_key
from gateway.errors import ConfigError, SmimeError
from gateway.translate.handover import Handover

_HEADER_END = re.compile(rb"\r\n\r\n")
_CONTENT_HEADERS = (b"content-type", b"content-transfer-encoding", b"mime-version",
                    b"content-disposition", b"content-id", b"content-description")
_HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512(),
           "sha1": hashes.SHA1()}


@dataclass(frozen=True)
class SigningIdentity:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> str:
        return dn_string(self.cert.subject)

    @classmethod
    def load(cls, cert: Path, key: Path, chain: tuple[Path, ...] = ()) -> SigningIdentity:
        c = load_certificate(cert)
        k = load_private_key(key)
        if not isinstance(k, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{key}: S/MIME signing needs an RSA or EC key")
        if k.public_key().public_numbers() != c.public_key().public_numbers():  # type: ignore[union-attr]
            raise ConfigError(f"{key}: private key does not match {cert}")
        return cls(c, k, tuple(x for p in chain for x in load_certificates(p)))


@dataclass(frozen=True)
class SmimeVerification:
    signer: str  # subject DN of the signer
    content: bytes  # the signed MIME entity, exactly as signed
    certificate: x509.Certificate


def _split(message: bytes) -> tuple[bytes, bytes]:
    message = _crlf(message)
    head, at = _head(message)
    return head, message[at:]


def _head(message: bytes) -> tuple[bytes, int]:
    """The header block (with the CRLF ending its last field) and where the body starts."""
    m = _HEADER_END.search(message)
    if m is None:
        return message, len(message)
    return message[: m.start() + 2], m.end()


def _crlf(data: bytes) -> bytes:
    """Every line end as CRLF (a lone CR stays): two C-level passes, not a regex; ``data``
    itself when it is so already (the composer writes CRLF): no copy of a large message."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _header_fields(head: bytes) -> list[bytes]:
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def _detached_signature(entity: memoryview, identity: SigningIdentity) -> bytes:
    return (pkcs7.PKCS7SignatureBuilder().set_data(entity)
            .add_signer(identity.cert, identity.key, hashes.SHA256())
            .sign(serialization.Encoding.DER,
                  [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))


def sign(message: bytes | Handover, identity: SigningIdentity) -> bytes:
    """The message with its content signed (detached, SHA-256); outer headers kept.

    The signed entity is written where it goes in the output and signed there: no copy of
    the body but the output's own; a message handed over in pieces (already CRLF) is let go
    a piece at a time as it is written."""
    if isinstance(message, Handover):
        if _all_crlf(message):
            return _sign(message.head(), message, identity)
        message = message.take()
    message = _crlf(message)
    return _sign(message, None, identity)


def _all_crlf(message: Handover) -> bool:
    """Whether every line end of ``message`` is CRLF (what :func:`_crlf` leaves as it is)."""
    lf = crlf = 0
    last = b""
    for piece in message.pieces():
        lf += piece.count(b"\n")
        crlf += piece.count(b"\r\n") + (last[-1:] == b"\r" and piece[:1] == b"\n")
        last = piece or last
    return lf == crlf


def _sign(message: bytes, pieces: Handover | None, identity: SigningIdentity) -> bytes:
    """:func:`sign` of ``message`` (CRLF); or, with ``pieces``, of the message they hold,
    ``message`` being its head (see Handover.head)."""
    head, at = _head(message)
    outer: list[bytes] = []
    inner: list[bytes] = []
    for f in _header_fields(head):
        name = f.split(b":", 1)[0].strip().lower()
        if name == b"mime-version":
            continue
        (inner if name in _CONTENT_HEADERS else outer).append(f)
    if not any(f.lower().startswith(b"content-type") for f in inner):
        inner.append(b"Content-Type: text/plain; charset=us-ascii")
    entity_head = b"\r\n".join(inner) + b"\r\n\r\n"
    if not entity_head.isascii() or (pieces is None and not (
            message.isascii() or message[at:].isascii())):
        raise SmimeError(_EIGHT_BIT)
    boundary = f"----=_passerelle_signed_{secrets.token_hex(12)}".encode()
    out = io.BytesIO()
    out.write(b"\r\n".join([
        *outer,
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256;\r\n boundary="' + boundary + b'"',
        b"",
        b"This is a cryptographically signed message in MIME format.",
        b"",
        b"--" + boundary,
        b"",
    ]))
    start = out.tell()
    out.write(entity_head)
    if pieces is None:
        out.write(memoryview(message)[at:])
    else:  # the body: what follows the head, each piece let go once written
        skip = at
        for piece in pieces.pieces(release=True):
            body = memoryview(piece)[skip:]
            skip = max(0, skip - len(piece))
            if not piece.isascii() and not bytes(body).isascii():
                raise SmimeError(_EIGHT_BIT)
            out.write(body)
            del piece, body
    with out.getbuffer() as view:
        signature = _detached_signature(view[start:], identity)
    b64 = base64.encodebytes(signature).replace(b"\n", b"\r\n")
    out.write(b"\r\n".join([
        b"",
        b"--" + boundary,
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="smime.p7s"',
        b"",
        b64.rstrip(b"\r\n"),
        b"--" + boundary + b"--",
        b"",
    ]))
    return out.getvalue()  # the buffer itself, not a copy


_EIGHT_BIT = "refusing to sign 8-bit content: canonicalise to 7-bit first"


def is_signed(message: bytes) -> bool:
    head, _ = _split(message[:65536])
    for f in _header_fields(head):
        if f.lower().startswith(b"content-type:"):
            return b"multipart/signed" in f.lower()
    return False


@dataclass(frozen=True)
class _Verified:
    message: bytes  # with CRLF line ends
    head: bytes
    start: int  # the signed entity is message[start:end]
    end: int
    certificate: x509.Certificate


def verify(message: bytes, *, anchors: TrustAnchors, at: datetime) -> SmimeVerification:
    """Verify a detached S/MIME signature; the content returned is exactly what was signed."""
    v = _verify(message, anchors=anchors, at=at)
    return SmimeVerification(dn_string(v.certificate.subject), v.message[v.start:v.end],
                             v.certificate)


def _verify(message: bytes, *, anchors: TrustAnchors, at: datetime) -> _Verified:
    """:func:`verify`, telling where the signed entity is rather than copying it out."""
    message = _crlf(message)
    head, at_body = _head(message)
    ctype = next((f for f in _header_fields(head) if f.lower().startswith(b"content-type:")),
                 b"")
    if b"multipart/signed" not in ctype.lower():
        raise SmimeError("message is not S/MIME signed")
    m = re.search(rb'boundary="?([^";\r\n]+)"?', ctype, re.IGNORECASE)
    if m is None:
        raise SmimeError("multipart/signed without boundary")
    delim = b"--" + m.group(1)
    begin = message.find(delim + b"\r\n", at_body)
    if begin < 0:
        raise SmimeError("multipart/signed: first part not found")
    start = begin + len(delim) + 2
    end = message.find(b"\r\n" + delim, start)
    if end < 0:
        raise SmimeError("multipart/signed: signature part not found")
    sig_at = end + 2 + len(delim)
    stop = message.find(b"\r\n" + delim, sig_at)
    sig_part = message[sig_at: stop if stop >= 0 else None].lstrip(b"\r\n")
    sig_msg = email.message_from_bytes(sig_part, policy=email.policy.compat32)
    der = sig_msg.get_payload(decode=True)
    if not isinstance(der, bytes) or not der:
        raise SmimeError("signature part is empty")
    cert = _check_cms(der, memoryview(message)[start:end])
    validate_chain(cert, anchors=anchors, at=at, purpose="signing")
    return _Verified(message, head, start, end, cert)


def _check_cms(der: bytes, content: bytes | memoryview) -> x509.Certificate:
    try:
        info = cms.ContentInfo.load(der)
        signed = info["content"]
        signer = signed["signer_infos"][0]
        digest_name = signer["digest_algorithm"]["algorithm"].native
        attrs = signer["signed_attrs"]
        certs = [c.chosen for c in signed["certificates"]]
        sid = signer["sid"].chosen
    except Exception as exc:
        raise SmimeError(f"signature is not readable CMS ({type(exc).__name__})") from None
    algo = _HASHES.get(digest_name)
    if algo is None:
        raise SmimeError(f"unsupported digest {digest_name}")
    if not attrs:
        raise SmimeError("signature without signed attributes")
    digest = next((a["values"][0].native for a in attrs if a["type"].native == "message_digest"),
                  None)
    h = hashlib.new(algo.name, content).digest()
    if digest != h:
        raise SmimeError("signed content was altered (digest mismatch)")
    cert_der = None
    for c in certs:
        tbs = c["tbs_certificate"]
        if (tbs["serial_number"].native == sid["serial_number"].native
                and (tbs["issuer"].dump() == sid["issuer"].dump()  # the usual case, fast
                     or tbs["issuer"] == sid["issuer"])):  # same name, other encoding
            cert_der = c.dump()
    if cert_der is None:
        raise SmimeError("signer certificate not included")
    cert = x509.load_der_x509_certificate(cert_der)
    signed_bytes = attrs.dump()
    signed_bytes = b"\x31" + signed_bytes[1:]
    signature = signer["signature"].native
    public = cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, signed_bytes, padding.PKCS1v15(), algo)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, signed_bytes, ec.ECDSA(algo))
        else:
            raise SmimeError("unsupported signer key type")
    except InvalidSignature:
        raise SmimeError("signature does not verify") from None
    return cert


def sign_and_check(message: bytes | Handover, identity: SigningIdentity, *, anchors: TrustAnchors,
                   at: datetime) -> bytes:
    """Sign, then verify our own output as a receiver would, before it is queued."""
    signed = sign(message, identity)
    _verify(signed, anchors=anchors, at=at)
    return signed


class Smime:
    """The trust-side signer/verifier the translation pipeline uses."""

    def __init__(self, identity: SigningIdentity, anchors: TrustAnchors) -> None:
        self.identity = identity
        self.anchors = anchors

    @property
    def signer_subject(self) -> str:
        return self.identity.subject

    def sign(self, message: bytes | Handover) -> bytes:
        from datetime import UTC

        return sign_and_check(message, self.identity, anchors=self.anchors,
                              at=datetime.now(UTC))

    def verify(self, message: bytes, *, at: datetime) -> tuple[Handover, str]:
        """The content the receiver sees (the outer headers with the signed entity's), handed
        over as a view of ``message``: not copied (a large message would be held twice), to
        be read by each recipient's stage in turn (:meth:`Handover.again`)."""
        v = _verify(message, anchors=self.anchors, at=at)
        outer = [f for f in _header_fields(v.head)
                 if f.split(b":", 1)[0].strip().lower() not in _CONTENT_HEADERS]
        return (Handover.of_views(b"\r\n".join(outer) + b"\r\n",
                                  memoryview(v.message)[v.start:v.end]),
                dn_string(v.certificate.subject))

    def is_signed(self, message: bytes) -> bool:
        return is_signed(message)


def encrypt(message: bytes, recipients: list[x509.Certificate]) -> bytes:
    """Optional S/MIME encryption (AES-256-CBC envelope) of a whole message."""
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(_crlf(message))
    for cert in recipients:
        builder = builder.add_recipient(cert)
    return builder.encrypt(serialization.Encoding.SMIME, [])


def decrypt(message: bytes, identity: SigningIdentity) -> bytes:
    if not isinstance(identity.key, rsa.RSAPrivateKey):
        raise SmimeError("S/MIME decryption needs an RSA key")
    try:
        return pkcs7.pkcs7_decrypt_smime(message, identity.cert, identity.key, [])
    except ValueError as exc:
        raise SmimeError(f"cannot decrypt S/MIME message ({exc})") from None
