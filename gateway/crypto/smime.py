"""S/MIME on the trust side: detached ``multipart/signed`` (SHA-256), verification, encryption.

Signing canonicalises first (RFC 8551 §3.1.1): the signed entity must be 7-bit with CRLF line
ends, so that no relay re-encoding can break the signature; we refuse to sign anything else
(the composer writes quoted-printable or base64 parts).  ``sign_and_check`` checks our own
output before it is queued (lesson 7 from peers): the signature it carries verifies over
exactly the entity it carries, with our certificate, valid at the time of signing.

Verification reads the CMS SignedData (directly when it is plain DER, else with asn1crypto,
which then decides), checks the content digest, the signature over the signed attributes with
the signer's certificate, and the certificate's chain, expiry,
key usage and revocation (:func:`gateway.crypto.pki.validate_chain`).  :class:`Smime` keeps
what holds from one message to the next (our certificate as read, chain validations for as
long as they hold); the time is checked for every message.

The module stays whole (some 600 lines): signing, verifying and the self-check of our own
signatures share the reading of a ``multipart/signed`` entity and of its CMS (the header
block, the signature part, the DER items), each half using the other's; cut apart, each
would import the other's internals, and the code a security review must read as one would
sit in two places.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import functools
import hashlib
import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.crypto.pki import ChainCache, TrustAnchors, validate_chain
from gateway.crypto.x509util import dn_string, load_certificate, load_certificates, load_private_key
from gateway.errors import ConfigError, SmimeError
from gateway.mail.handover import Handover

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
    the body but the output's own; a message handed over in pieces is let go a piece at a
    time as it is written, its line ends checked in the same pass (see :func:`_sign`)."""
    if isinstance(message, Handover):
        head = message.head()
        if _is_crlf(head):
            return _sign(head, message, identity)
        message = message.take()
    message = _crlf(message)
    return _sign(message, None, identity)


def _is_crlf(data: bytes) -> bool:
    """Whether every line end of ``data`` is CRLF (what :func:`_crlf` leaves as it is)."""
    return data.count(b"\n") == data.count(b"\r\n")


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
        body_at = out.tell()
        skip = at
        lf = crlf = 0
        cr_before = False  # the head ends with LF
        for piece in pieces.pieces(release=True):
            body = memoryview(piece)[skip:]
            if body:
                if not piece.isascii() and not bytes(body).isascii():
                    raise SmimeError(_EIGHT_BIT)
                # the line ends of exactly what is written, counted as it is written: the
                # one pass that makes the entity canonical (RFC 8551 §3.1.1)
                lf += piece.count(b"\n", skip)
                crlf += piece.count(b"\r\n", skip) + (cr_before and body[0] == 0x0A)
                cr_before = body[-1] == 0x0D
                out.write(body)
            skip = max(0, skip - len(piece))
            del piece, body
        if lf != crlf:  # bare LFs after all: the body as :func:`_crlf` makes it, in place
            out.seek(body_at)
            canonical = _crlf(out.read())
            out.seek(body_at)
            out.truncate()
            out.write(canonical)
            del canonical
    with out.getbuffer() as view:
        signature = _detached_signature(view[start:], identity)
    b64 = _base64_lines(signature)
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


def _base64_lines(data: bytes) -> bytes:
    """``base64.encodebytes`` with CRLF line ends: lines of 76 characters, each ended; one
    encoding call rather than one per line."""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"".join(encoded[i:i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


_OPAQUE_TYPES = (b"application/pkcs7-mime", b"application/x-pkcs7-mime")


def _media_type(field: bytes) -> bytes:
    """The type/subtype of a ``Content-Type`` field, lower-cased, parameters left out."""
    return field.split(b":", 1)[-1].split(b";", 1)[0].strip().lower()


def is_signed(message: bytes) -> bool:
    """Whether the message says it is S/MIME: ``multipart/signed`` (detached signature) or
    ``application/pkcs7-mime`` (opaque signed-data — anything else it may hold is refused
    when verified, never read as unsigned text)."""
    head, _ = _split(message[:65536])
    for f in _header_fields(head):
        if f.lower().startswith(b"content-type:"):
            return b"multipart/signed" in f.lower() or _media_type(f) in _OPAQUE_TYPES
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


def _verify(message: bytes, *, anchors: TrustAnchors, at: datetime,
            chains: ChainCache | None = None) -> _Verified:
    """:func:`verify`, telling where the signed entity is rather than copying it out;
    ``chains``: chain validations kept for the time they hold (see ChainCache)."""
    message = _crlf(message)
    head, _ = _head(message)
    ctype = next((f for f in _header_fields(head) if f.lower().startswith(b"content-type:")),
                 b"")
    if _media_type(ctype) in _OPAQUE_TYPES:
        return _verify_opaque(message, head, anchors=anchors, at=at, chains=chains)
    head, start, end, sig_part = _locate(message)
    cert, der = _check_cms(_signature_der(sig_part), memoryview(message)[start:end])
    if chains is not None and chains.anchors is anchors:
        chains.validate(cert, at=at, purpose="signing", der=der)
    else:
        validate_chain(cert, anchors=anchors, at=at, purpose="signing")
    return _Verified(message, head, start, end, cert)


def _verify_opaque(message: bytes, head: bytes, *, anchors: TrustAnchors, at: datetime,
                   chains: ChainCache | None) -> _Verified:
    """An opaque S/MIME message (``application/pkcs7-mime; smime-type=signed-data``): the
    signed entity is inside the CMS structure.  It is verified exactly as a detached
    signature is (digest over the entity as signed, signature, chain) and returned unwrapped;
    a pkcs7-mime holding anything but signed-data with its content (enveloped, compressed,
    certificates only, a detached signature) is refused."""
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    der = None if parsed.is_multipart() else parsed.get_payload(decode=True)
    del parsed
    if not isinstance(der, bytes) or not der:
        raise SmimeError("application/pkcs7-mime without a CMS structure")
    try:
        info = cms.ContentInfo.load(der)
        kind = info["content_type"].native
        entity = (info["content"]["encap_content_info"]["content"].native
                  if kind == "signed_data" else None)
    except Exception as exc:
        raise SmimeError(f"application/pkcs7-mime is not readable CMS "
                         f"({type(exc).__name__})") from None
    if kind != "signed_data":
        raise SmimeError(f"application/pkcs7-mime holds {kind}, not signed-data: refused")
    if not isinstance(entity, bytes) or not entity:
        raise SmimeError("opaque signed-data without its content")
    cert, cert_der = _check_cms(der, entity)
    if chains is not None and chains.anchors is anchors:
        chains.validate(cert, at=at, purpose="signing", der=cert_der)
    else:
        validate_chain(cert, anchors=anchors, at=at, purpose="signing")
    entity = _crlf(entity)
    return _Verified(entity, head, 0, len(entity), cert)


def _locate(message: bytes) -> tuple[bytes, int, int, bytes]:
    """In a ``multipart/signed`` message (CRLF): its header block, where its signed entity
    starts and ends, and its signature part."""
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
    return head, start, end, message[sig_at: stop if stop >= 0 else None].lstrip(b"\r\n")


_FIELD_NAME = re.compile(rb"[!-9;-~]+:")


def _signature_der(part: bytes) -> bytes:
    """The signature (DER) a signature part holds in base64.  A plain part (header fields,
    one saying base64, an ``application/`` type; a body that is strict base64 in lines) is
    read directly, with what the email parser would give; any other goes to the parser."""
    head, at = _head(part)
    der: bytes | None = None
    if at < len(part) or part.endswith(b"\r\n\r\n"):
        fields = _header_fields(head)
        cte = [f for f in fields if f[:26].lower() == b"content-transfer-encoding:"]
        ctype = [f for f in fields if f[:13].lower() == b"content-type:"]
        encoded = b"".join(part[at:].splitlines())
        if (all(_FIELD_NAME.match(f) for f in fields) and len(cte) == 1
                # the value as the parser gives it: leading blanks dropped, not trailing ones
                and cte[0][26:].lstrip(b" \t").lower() == b"base64" and len(ctype) <= 1
                and all(c[13:].lstrip(b" \t").lower().startswith(b"application/")
                        for c in ctype)
                and len(encoded) % 4 == 0):
            try:
                der = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                der = None
    if der is None:
        payload = email.message_from_bytes(part, policy=email.policy.compat32).get_payload(
            decode=True)
        der = payload if isinstance(payload, bytes) else None
    if not der:
        raise SmimeError("signature part is empty")
    return der


def _check_cms(der: bytes, content: bytes | memoryview) -> tuple[x509.Certificate, bytes]:
    """The signer's certificate (and its DER) of a CMS SignedData over ``content``, once its
    digest and its signature are checked (not its chain).

    A SignedData in plain DER whose signature holds is read by :func:`_plain_signed_data`
    (~40 µs; asn1crypto takes ~0.35 ms); anything else — another shape, another encoding, a
    check that fails — by asn1crypto below, which decides and names what is wrong."""
    plain = _plain_signed_data(der, content)
    return plain if plain is not None else _read_cms(der, content)


def _read_cms(der: bytes, content: bytes | memoryview) -> tuple[x509.Certificate, bytes]:
    """:func:`_check_cms` through asn1crypto, whatever the SignedData's shape or encoding."""
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
    try:  # the type compared as encoded: its name (.native) costs a parse per attribute
        digest = next((a["values"][0].native for a in attrs
                       if a["type"].contents == _OID_MESSAGE_DIGEST), None)
    except Exception as exc:
        raise SmimeError(f"signature is not readable CMS ({type(exc).__name__})") from None
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
    return cert, cert_der


# -- the self-check of our own signatures ---------------------------------------------------
#
# What it must know before a signed message is queued: the signature in the signature part
# verifies over exactly the entity a receiver finds between the boundaries, with the
# certificate it names, which is ours, valid (chain, expiry, revocation) at the time of
# signing.  Our signatures are DER that the cryptography library wrote in one shape, so the
# CMS is read by the few lines below (~25 µs; asn1crypto takes ~8× that), and compared
# with our certificate as parsed once; anything not in that shape is refused.

class _NotOurShape(Exception):
    pass


_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")
_OID_DATA = bytes.fromhex("2a864886f70d010701")
_OID_SHA256 = bytes.fromhex("608648016503040201")
_OID_CONTENT_TYPE = bytes.fromhex("2a864886f70d010903")
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")
_OID_RSA = (bytes.fromhex("2a864886f70d010101"), bytes.fromhex("2a864886f70d01010b"))
_OID_ECDSA_SHA256 = (bytes.fromhex("2a8648ce3d040302"),)
_SEQ, _SET, _INT, _OCTETS, _OID, _NULL, _CTX0 = 0x30, 0x31, 0x02, 0x04, 0x06, 0x05, 0xA0


def _der_items(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The DER elements from ``start`` to ``end``: (tag, where it starts, where its value
    starts, where it ends); definite lengths in their shortest form only."""
    items = []
    at = start
    while at < end:
        if at + 2 > end or data[at] & 0x1F == 0x1F:
            raise _NotOurShape
        tag, n, value = data[at], data[at + 1], at + 2
        if n & 0x80:
            k = n & 0x7F
            if not 1 <= k <= 3 or value + k > end or data[value] == 0:
                raise _NotOurShape
            n = int.from_bytes(data[value:value + k], "big")
            value += k
            if n < 0x80:
                raise _NotOurShape
        if value + n > end:
            raise _NotOurShape
        items.append((tag, at, value, value + n))
        at = value + n
    return items


def _der_shape(items: list[tuple[int, int, int, int]], *tags: int) -> None:
    if [i[0] for i in items] != list(tags):
        raise _NotOurShape


def _der_value(data: bytes, item: tuple[int, int, int, int]) -> bytes:
    return data[item[2]:item[3]]


def _issuer_serial(der: bytes, cert: tuple[int, int, int, int]) -> bytes:
    """A certificate's issuer Name and serial number, as a SignerInfo names it (the DER of
    both), from the certificate's DER."""
    tbs = _der_items(der, cert[2], cert[3])
    if not tbs or tbs[0][0] != _SEQ:
        raise _NotOurShape
    fields = _der_items(der, tbs[0][2], tbs[0][3])
    if fields and fields[0][0] == _CTX0:  # the version
        fields = fields[1:]
    if len(fields) < 3 or fields[0][0] != _INT or fields[2][0] != _SEQ:
        raise _NotOurShape
    return der[fields[2][1]:fields[2][3]] + der[fields[0][1]:fields[0][3]]


@dataclass(frozen=True)
class _OwnCertificate:
    """Our signing certificate as the self-check compares signatures with it, worked out once."""

    der: bytes
    issuer_serial: bytes
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    @classmethod
    def of(cls, cert: x509.Certificate) -> _OwnCertificate:
        der = cert.public_bytes(serialization.Encoding.DER)
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ConfigError("S/MIME signing needs an RSA or EC certificate")
        try:
            items = _der_items(der, 0, len(der))
            _der_shape(items, _SEQ)
            issuer_serial = _issuer_serial(der, items[0])
        except _NotOurShape:
            raise ConfigError("S/MIME signing certificate is not plain DER") from None
        return cls(der, issuer_serial, public)


def _check_own(signed: bytes, own: _OwnCertificate) -> None:
    """Raise SmimeError unless ``signed`` (our output) carries a signature that verifies over
    exactly its signed entity, by ``own`` (see above; the chain is checked by the caller)."""
    _, start, end, sig_part = _locate(signed)
    der = _signature_der(sig_part)
    try:
        digest, attrs, signature = _our_signer_info(der, own)
    except _NotOurShape:
        raise SmimeError("our own signature is not the CMS we write (self-check)") from None
    if hashlib.sha256(memoryview(signed)[start:end]).digest() != digest:
        raise SmimeError("signed content was altered (digest mismatch; self-check)")
    try:
        if isinstance(own.public, rsa.RSAPublicKey):
            own.public.verify(signature, attrs, padding.PKCS1v15(), hashes.SHA256())
        else:
            own.public.verify(signature, attrs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SmimeError("our own signature does not verify with our certificate "
                         "(self-check)") from None


def _signed_data(der: bytes) -> list[tuple[int, int, int, int]]:
    """The elements of the SignedData a ContentInfo in plain DER wraps;
    :class:`_NotOurShape` when it wraps anything else."""
    top = _der_items(der, 0, len(der))
    _der_shape(top, _SEQ)
    info = _der_items(der, top[0][2], top[0][3])
    _der_shape(info, _OID, _CTX0)
    if _der_value(der, info[0]) != _OID_SIGNED_DATA:
        raise _NotOurShape
    wrapped = _der_items(der, info[1][2], info[1][3])
    _der_shape(wrapped, _SEQ)
    sd = _der_items(der, wrapped[0][2], wrapped[0][3])
    return sd


def _our_signer_info(der: bytes, own: _OwnCertificate) -> tuple[bytes, bytes, bytes]:
    """From a SignedData as we write it (detached, our certificate, one SignerInfo naming
    it, SHA-256, signed attributes): the message digest it signs, the signed attributes as
    signed (a SET), the signature."""
    sd = _signed_data(der)
    _der_shape(sd, _INT, _SET, _SEQ, _CTX0, _SET)
    encap = _der_items(der, sd[2][2], sd[2][3])  # detached: the content type, no content
    _der_shape(encap, _OID)
    if _der_value(der, encap[0]) != _OID_DATA:
        raise _NotOurShape
    if _der_value(der, sd[3]) != own.der:  # our certificate, and no other
        raise _NotOurShape
    signers = _der_items(der, sd[4][2], sd[4][3])
    _der_shape(signers, _SEQ)
    si = _der_items(der, signers[0][2], signers[0][3])
    _der_shape(si, _INT, _SEQ, _SEQ, _CTX0, _SEQ, _OCTETS)
    if _der_value(der, si[1]) != own.issuer_serial:
        raise _NotOurShape
    digest_algorithm = _der_items(der, si[2][2], si[2][3])
    if (not digest_algorithm or digest_algorithm[0][0] != _OID
            or _der_value(der, digest_algorithm[0]) != _OID_SHA256
            or [(i[0], i[2] == i[3]) for i in digest_algorithm[1:]] not in ([], [(_NULL, True)])):
        raise _NotOurShape
    signature_algorithm = _der_items(der, si[4][2], si[4][3])
    allowed = _OID_RSA if isinstance(own.public, rsa.RSAPublicKey) else _OID_ECDSA_SHA256
    if (not signature_algorithm or signature_algorithm[0][0] != _OID
            or _der_value(der, signature_algorithm[0]) not in allowed):
        raise _NotOurShape
    found: dict[bytes, bytes] = {}
    for attr in _der_items(der, si[3][2], si[3][3]):
        if attr[0] != _SEQ:
            raise _NotOurShape
        parts = _der_items(der, attr[2], attr[3])
        _der_shape(parts, _OID, _SET)
        kind, values = parts
        if _der_value(der, kind) in found:
            raise _NotOurShape
        found[_der_value(der, kind)] = der[values[2]:values[3]]
    if found.get(_OID_CONTENT_TYPE) != bytes([_OID, len(_OID_DATA)]) + _OID_DATA:
        raise _NotOurShape
    md = found.get(_OID_MESSAGE_DIGEST, b"")
    digest = _der_items(md, 0, len(md))
    _der_shape(digest, _OCTETS)
    attrs = b"\x31" + der[si[3][1] + 1:si[3][3]]  # signed as a SET (RFC 5652 §5.4)
    return _der_value(md, digest[0]), attrs, _der_value(der, si[5])


# -- incoming signatures in plain DER ---------------------------------------------------------
#
# What _check_cms reads with asn1crypto, read directly when the SignedData is plain DER (what
# every S/MIME library writes): the first SignerInfo, naming its signer by issuer and serial
# number, its digest algorithm, its signed attributes and their message digest, its signature;
# the certificate it names among those included.  The same reading as asn1crypto's — the DER
# walk above accepts only definite, shortest lengths, so what it reads asn1crypto reads the
# same — and it only ever accepts: a shape it does not expect, or a check that fails, and it
# answers None, for asn1crypto to decide and to name the failure as it always has.

_DIGEST_OIDS = {bytes.fromhex("608648016503040201"): "sha256",
                bytes.fromhex("608648016503040202"): "sha384",
                bytes.fromhex("608648016503040203"): "sha512",
                bytes.fromhex("2b0e03021a"): "sha1"}
_CTX1 = 0xA1


def _plain_signed_data(der: bytes, content: bytes | memoryview
                       ) -> tuple[x509.Certificate, bytes] | None:
    """:func:`_check_cms` of a SignedData in plain DER whose digest and signature hold; None
    for anything else (asn1crypto then reads it)."""
    digest: bytes | None = None
    try:
        (si, digest_name), certs = _plain_signer_info(der)
        issuer_serial = _der_items(der, si[1][2], si[1][3])
        _der_shape(issuer_serial, _SEQ, _INT)
        issuer = der[issuer_serial[0][1]:issuer_serial[0][3]]
        serial = int.from_bytes(_der_value(der, issuer_serial[1]), "big", signed=True)
        for attr in _der_items(der, si[3][2], si[3][3]):
            parts = _der_items(der, attr[2], attr[3]) if attr[0] == _SEQ else []
            _der_shape(parts, _OID, _SET)
            if _der_value(der, parts[0]) == _OID_MESSAGE_DIGEST:
                values = _der_items(der, parts[1][2], parts[1][3])
                if not values or values[0][0] != _OCTETS:
                    return None
                digest = _der_value(der, values[0])
                break
        found = [c for c in _included(der[certs[1]:certs[3]]) if c[0] == serial]
    except _NotOurShape:
        return None
    if any(c[1] != issuer for c in found):
        return None  # the same name in another encoding, perhaps: asn1crypto's
    algo = _HASHES[digest_name]
    if digest is None or not found or hashlib.new(algo.name, content).digest() != digest:
        return None
    cert_der = found[-1][2]
    try:
        cert, public = _certificate(cert_der)
        attrs = b"\x31" + der[si[3][1] + 1:si[3][3]]  # signed as a SET (RFC 5652 §5.4)
        signature = _der_value(der, si[5])
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, attrs, padding.PKCS1v15(), algo)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, attrs, ec.ECDSA(algo))
        else:
            return None
    except (InvalidSignature, ValueError, TypeError):
        return None
    return cert, cert_der


def _plain_signer_info(der: bytes) -> tuple[tuple[list[tuple[int, int, int, int]], str],
                                           tuple[int, int, int, int]]:
    """A SignedData's first SignerInfo (its elements: version, issuer and serial number,
    digest algorithm, signed attributes, signature algorithm, signature) with its digest's
    name, and its certificates (the element); :class:`_NotOurShape` unless plain DER of that
    shape, with a digest :data:`_HASHES` knows."""
    sd = _signed_data(der)
    tags = [i[0] for i in sd]
    if tags not in ([_INT, _SET, _SEQ, _CTX0, _SET], [_INT, _SET, _SEQ, _CTX0, _CTX1, _SET]):
        raise _NotOurShape
    signers = _der_items(der, sd[-1][2], sd[-1][3])
    if not signers or signers[0][0] != _SEQ:
        raise _NotOurShape
    si = _der_items(der, signers[0][2], signers[0][3])
    tags = [i[0] for i in si]
    if tags not in ([_INT, _SEQ, _SEQ, _CTX0, _SEQ, _OCTETS],
                    [_INT, _SEQ, _SEQ, _CTX0, _SEQ, _OCTETS, _CTX1]):
        raise _NotOurShape
    digest_algorithm = _der_items(der, si[2][2], si[2][3])
    if not digest_algorithm or digest_algorithm[0][0] != _OID:
        raise _NotOurShape
    name = _DIGEST_OIDS.get(_der_value(der, digest_algorithm[0]))
    if name is None:
        raise _NotOurShape
    return (si, name), sd[3]


@functools.lru_cache(maxsize=256)
def _included(certificates: bytes) -> tuple[tuple[int, bytes, bytes], ...]:
    """The serial number, issuer (DER) and DER of each certificate of a SignedData's
    ``certificates`` (the element, DER), read once for all the messages that carry the same
    ones; :class:`_NotOurShape` for another choice than a plain certificate, or not DER."""
    out = []
    top = _der_items(certificates, 0, len(certificates))
    _der_shape(top, _CTX0)
    for item in _der_items(certificates, top[0][2], top[0][3]):
        if item[0] != _SEQ:
            raise _NotOurShape
        tbs = _der_items(certificates, item[2], item[3])
        if not tbs or tbs[0][0] != _SEQ:
            raise _NotOurShape
        fields = _der_items(certificates, tbs[0][2], tbs[0][3])
        if fields and fields[0][0] == _CTX0:  # the version
            fields = fields[1:]
        if len(fields) < 3 or fields[0][0] != _INT or fields[2][0] != _SEQ:
            raise _NotOurShape
        out.append((int.from_bytes(_der_value(certificates, fields[0]), "big", signed=True),
                    certificates[fields[2][1]:fields[2][3]], certificates[item[1]:item[3]]))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _certificate(der: bytes) -> tuple[x509.Certificate, object]:
    """A certificate read from its DER, and its public key, once for all the messages it
    signs (:class:`ValueError` when it is not one)."""
    cert = x509.load_der_x509_certificate(der)
    return cert, cert.public_key()


def sign_and_check(message: bytes | Handover, identity: SigningIdentity, *, anchors: TrustAnchors,
                   at: datetime) -> bytes:
    """Sign, then check our own output before it is queued: its signature verifies over
    exactly the entity it carries, with our certificate, which is valid at ``at``."""
    validate_chain(identity.cert, anchors=anchors, at=at, purpose="signing")
    return _signed_and_checked(message, identity, _OwnCertificate.of(identity.cert))


def _signed_and_checked(message: bytes | Handover, identity: SigningIdentity,
                        own: _OwnCertificate) -> bytes:
    signed = sign(message, identity)
    _check_own(signed, own)
    return signed


def _utc_now() -> datetime:
    return datetime.now(UTC)


def certificate_addresses(cert: x509.Certificate) -> tuple[str, ...]:
    """The e-mail addresses a certificate is for: its rfc822Name alternative names, else
    the emailAddress attributes of its subject."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n) for n in san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        names = ()
    if names:
        return names
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(
        x509.NameOID.EMAIL_ADDRESS))


class Smime:
    """The trust-side signer/verifier the translation pipeline uses.

    What does not change from one message to the next is worked out once: our certificate
    as the self-check reads it; the validation of its chain and of the chains of incoming
    signers, each kept for as long as it holds (:class:`gateway.crypto.pki.ChainCache`),
    the time being checked for every message.  ``clock``: the time of signing."""

    def __init__(self, identity: SigningIdentity, anchors: TrustAnchors, *,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self._identity = identity
        self._anchors = anchors
        self._clock = clock
        self._own = _OwnCertificate.of(identity.cert)
        self._chains = ChainCache(anchors)

    @property
    def identity(self) -> SigningIdentity:
        return self._identity

    def with_anchors(self, anchors: TrustAnchors) -> Smime:
        """The same signer judging chains by ``anchors`` (the CRLs read again): nothing
        validated under the previous ones is kept."""
        return Smime(self._identity, anchors, clock=self._clock)

    @property
    def anchors(self) -> TrustAnchors:
        return self._anchors

    @property
    def signer_subject(self) -> str:
        return self.identity.subject

    def sign(self, message: bytes | Handover) -> bytes:
        """:func:`sign_and_check` at the clock's time."""
        self._chains.validate(self._identity.cert, at=self._clock(), purpose="signing",
                              der=self._own.der)
        return _signed_and_checked(message, self._identity, self._own)

    def verify(self, message: bytes, *, at: datetime) -> tuple[Handover, str]:
        """The content the receiver sees (the outer headers with the signed entity's), handed
        over as a view of ``message``: not copied (a large message would be held twice), to
        be read by each recipient's stage in turn (:meth:`Handover.again`)."""
        content, cert = self._content(message, at=at)
        return content, dn_string(cert.subject)

    def _content(self, message: bytes, *, at: datetime) -> tuple[Handover, x509.Certificate]:
        v = _verify(message, anchors=self._anchors, at=at, chains=self._chains)
        outer = [f for f in _header_fields(v.head)
                 if f.split(b":", 1)[0].strip().lower() not in _CONTENT_HEADERS]
        return (Handover.of_views(b"\r\n".join(outer) + b"\r\n",
                                  memoryview(v.message)[v.start:v.end]), v.certificate)

    def verify_signer(self, message: bytes, *, at: datetime
                      ) -> tuple[Handover, str, tuple[str, ...]]:
        """:meth:`verify`, and the e-mail addresses the signer's certificate names (its
        rfc822Name alternative names, else its subject's emailAddress), for the check that
        the signer is the ``From``."""
        content, cert = self._content(message, at=at)
        return content, dn_string(cert.subject), certificate_addresses(cert)

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
