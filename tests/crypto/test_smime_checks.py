"""What the S/MIME signer and verifier still check now that they keep what holds between
messages: the self-check of our own signatures, and chain validations kept for their time."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import hashlib
import itertools
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from gateway import spill
from gateway.crypto import smime
from gateway.crypto.pki import ChainCache, TrustAnchors
from gateway.crypto.world import World
from gateway.crypto.x509util import load_certificate, load_private_key
from gateway.errors import CertificateRejected, CrlOutOfDate, Fate, SmimeError
from gateway.mail.handover import Handover

MESSAGE = (b"From: a@legacy.mssante.example\r\nTo: b@hopital-a.mssante.example\r\nSubject: x\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHemoglobine 11,8 g/dL.\r\n")


@pytest.fixture(scope="module")
def identity(world: World) -> smime.SigningIdentity:
    return smime.SigningIdentity.load(world.cert("gateway-signing"),
                                      world.key("gateway-signing"))


@pytest.fixture(scope="module")
def anchors(world: World) -> TrustAnchors:
    return TrustAnchors.load([world.ca_cert], [world.crl])


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# -- the self-check of our own signatures --------------------------------------------------

def test_a_key_that_does_not_match_the_certificate_is_caught(
        world: World, identity: smime.SigningIdentity, anchors: TrustAnchors) -> None:
    other = load_private_key(world.key("list-signer"))
    assert isinstance(other, rsa.RSAPrivateKey)
    mismatched = smime.SigningIdentity(identity.cert, other)
    with pytest.raises(SmimeError, match="does not verify"):
        smime.Smime(mismatched, anchors).sign(MESSAGE)
    with pytest.raises(SmimeError, match="does not verify"):
        smime.sign_and_check(MESSAGE, mismatched, anchors=anchors, at=datetime.now(UTC))


def test_content_signed_other_than_sent_is_caught(identity: smime.SigningIdentity,
                                                  anchors: TrustAnchors,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    signer = smime.Smime(identity, anchors)
    signer.sign(MESSAGE)
    real = smime._detached_signature
    monkeypatch.setattr(smime, "_detached_signature",
                        lambda data, ident: real(memoryview(bytes(data) + b" "), ident))
    with pytest.raises(SmimeError, match="digest mismatch"):
        signer.sign(MESSAGE)


def _in_entity(signed: bytes) -> int:
    return signed.index(b"Hemoglobine")


def _in_signature(signed: bytes) -> int:
    return signed.index(b'filename="smime.p7s"\r\n\r\n') + 24 + 300


@pytest.mark.parametrize("where", [_in_entity, _in_signature])
def test_output_altered_after_signing_is_caught(identity: smime.SigningIdentity,
                                                anchors: TrustAnchors,
                                                monkeypatch: pytest.MonkeyPatch,
                                                where: Callable[[bytes], int]) -> None:
    """The bytes checked are the bytes returned: a byte of the entity or of the signature
    changed after signing is seen."""
    real = smime.sign

    def altered(message: bytes | Handover, ident: smime.SigningIdentity) -> bytes:
        out = bytearray(real(message, ident))
        at = where(bytes(out))
        out[at] = ord("B") if out[at] != ord("B") else ord("C")
        return bytes(out)

    monkeypatch.setattr(smime, "sign", altered)
    with pytest.raises(SmimeError):
        smime.Smime(identity, anchors).sign(MESSAGE)


def test_a_signature_by_another_certificate_is_caught(
        world: World, identity: smime.SigningIdentity, anchors: TrustAnchors,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature that verifies, but names another certificate than ours."""
    other = smime.SigningIdentity.load(world.cert("list-signer"), world.key("list-signer"))
    real = smime._detached_signature
    monkeypatch.setattr(smime, "_detached_signature", lambda data, _ident: real(data, other))
    with pytest.raises(SmimeError, match="not the CMS we write"):
        smime.Smime(identity, anchors).sign(MESSAGE)


def test_our_own_expired_certificate_is_refused_after_earlier_signs(
        identity: smime.SigningIdentity, anchors: TrustAnchors) -> None:
    now = datetime.now(UTC)
    clock = Clock(now)
    signer = smime.Smime(identity, anchors, clock=clock)
    signer.sign(MESSAGE)
    signer.sign(Handover.of(MESSAGE))
    clock.at = identity.cert.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(CertificateRejected, match="expired"):
        signer.sign(MESSAGE)
    clock.at = now
    signer.sign(MESSAGE)
    clock.at = identity.cert.not_valid_before_utc - timedelta(seconds=1)
    with pytest.raises(CertificateRejected, match="not yet valid"):
        signer.sign(MESSAGE)


def test_an_out_of_date_crl_is_refused_at_sign_time_after_earlier_signs(
        identity: smime.SigningIdentity, anchors: TrustAnchors) -> None:
    crl_next = anchors.crls[0].next_update_utc
    assert crl_next is not None and crl_next < identity.cert.not_valid_after_utc
    clock = Clock(datetime.now(UTC))
    signer = smime.Smime(identity, anchors, clock=clock)
    signer.sign(MESSAGE)
    clock.at = crl_next + timedelta(seconds=1)
    with pytest.raises(CrlOutOfDate, match="CRL") as refused:  # ours to fix: retried
        signer.sign(MESSAGE)
    assert refused.value.fate is Fate.RETRY


def _issue(world: World, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *,
           subject: str, serial: int | None = None, issuer_key: object = None,
           ) -> x509.Certificate:
    ca = load_certificate(world.ca_cert)
    ca_key = issuer_key or load_private_key(world.ca_key)
    now = datetime.now(UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]


def test_an_ec_signing_key_passes_its_self_check(world: World, anchors: TrustAnchors) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ident = smime.SigningIdentity(_issue(world, key, subject="ec@legacy.mssante.example"), key)
    signed = smime.Smime(ident, anchors).sign(MESSAGE)
    assert smime.verify(signed, anchors=anchors, at=datetime.now(UTC)).signer == (
        "CN=ec@legacy.mssante.example")


# -- incoming signatures: chain validations kept for their time ------------------------------

def test_an_incoming_signer_is_refused_at_a_later_time_after_being_accepted(
        identity: smime.SigningIdentity, anchors: TrustAnchors) -> None:
    signed = smime.sign(MESSAGE, identity)
    receiver = smime.Smime(identity, anchors)
    now = datetime.now(UTC)
    receiver.verify(signed, at=now)
    receiver.verify(signed, at=now + timedelta(minutes=1))
    with pytest.raises(CertificateRejected, match="expired"):
        receiver.verify(signed, at=datetime(2040, 1, 1, tzinfo=UTC))
    with pytest.raises(CertificateRejected, match="not yet valid"):
        receiver.verify(signed, at=identity.cert.not_valid_before_utc - timedelta(seconds=1))
    crl_next = anchors.crls[0].next_update_utc
    assert crl_next is not None
    with pytest.raises(CrlOutOfDate, match="CRL"):  # retried, not bounced
        receiver.verify(signed, at=crl_next + timedelta(seconds=1))
    receiver.verify(signed, at=now)


def test_other_anchors_do_not_share_what_was_validated(world: World,
                                                       identity: smime.SigningIdentity,
                                                       anchors: TrustAnchors) -> None:
    signed = smime.sign(MESSAGE, identity)
    smime.Smime(identity, anchors).verify(signed, at=datetime.now(UTC))
    with pytest.raises(CertificateRejected):
        smime.Smime(identity, TrustAnchors.load([world.evil_ca_cert])).verify(
            signed, at=datetime.now(UTC))


def test_chain_cache_keys_on_the_exact_certificate(world: World,
                                                   identity: smime.SigningIdentity,
                                                   anchors: TrustAnchors) -> None:
    """A look-alike of an accepted certificate (same subject, issuer name and serial number,
    another key, signed by someone else) is validated afresh, and refused."""
    chains = ChainCache(anchors)
    now = datetime.now(UTC)
    chains.validate(identity.cert, at=now)
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = (x509.CertificateBuilder().subject_name(identity.cert.subject)
              .issuer_name(identity.cert.issuer).public_key(forger.public_key())
              .serial_number(identity.cert.serial_number)
              .not_valid_before(identity.cert.not_valid_before_utc)
              .not_valid_after(identity.cert.not_valid_after_utc)
              .sign(forger, hashes.SHA256()))
    with pytest.raises(CertificateRejected, match="signature invalid"):
        chains.validate(forged, at=now)
    revoked = load_certificate(world.cert("revoked-client"))
    for _ in range(2):  # a refusal is not kept as an acceptance, nor the other way round
        with pytest.raises(CertificateRejected, match="revoked"):
            chains.validate(revoked, at=now, purpose="client")
    chains.validate(identity.cert, at=now)


def test_chain_cache_keeps_a_bounded_number(identity: smime.SigningIdentity,
                                            anchors: TrustAnchors) -> None:
    chains = ChainCache(anchors, size=1)
    now = datetime.now(UTC)
    for purpose in ("signing", "signing", "client"):
        with contextlib.suppress(CertificateRejected):
            chains.validate(identity.cert, at=now, purpose=purpose)
    assert len(chains._held) <= 1


# -- reading the signature part and the handed-over message in one pass -----------------------

DER = bytes(range(256)) * 3
B64 = base64.encodebytes(DER).replace(b"\n", b"\r\n").rstrip(b"\r\n")
PARTS = [
    b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + B64,
    b"content-transfer-encoding:  BASE64 \r\ncontent-type: application/x-pkcs7-signature\r\n"
    b"\r\n" + B64 + b"\r\n",
    b"Content-Type: application/pkcs7-signature;\r\n name=x\r\nContent-Transfer-Encoding: "
    b"base64\r\n\r\n" + B64.replace(b"\r\n", b"\n"),
    b"Content-Transfer-Encoding: base64\r\n\r\n" + B64.rstrip(b"="),  # unpadded
    b"Content-Transfer-Encoding: base64\r\n\r\n" + B64[:40] + b"*!" + B64[40:],  # junk
    b"Content-Transfer-Encoding: base64\r\n\r\n" + B64[:40] + b" \t" + B64[40:],
    b"Content-Type: multipart/mixed; boundary=x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + B64,
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + B64,
    b"Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + B64,
    b"not a header\r\nContent-Transfer-Encoding: base64\r\n\r\n" + B64,
    b" folded\r\nContent-Transfer-Encoding: base64\r\n\r\n" + B64,
    b"Content-Transfer-Encoding: base64 \r\n\r\n" + B64,  # the parser does not decode it
    b"Content-Transfer-Encoding:\tbase64\r\n\r\n" + B64,
    b"Content-Transfer-Encoding:\r\n base64\r\n\r\n" + B64,
    b"Content-Transfer-Encoding: base64\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n" + B64,
]


@pytest.mark.parametrize("part", PARTS)
def test_signature_part_reads_as_the_email_parser_reads_it(part: bytes) -> None:
    payload = email.message_from_bytes(part, policy=email.policy.compat32).get_payload(
        decode=True)
    expected = payload if isinstance(payload, bytes) and payload else None
    if expected is None:
        with pytest.raises(SmimeError, match="empty"):
            smime._signature_der(part)
    else:
        assert smime._signature_der(part) == expected


@given(st.text(alphabet="\r\nab", max_size=60).map(str.encode),
       st.lists(st.integers(min_value=0, max_value=200), max_size=4))
def test_a_handed_over_message_signs_as_its_bytes(body: bytes, cuts: list[int]) -> None:
    """CRLF header, any line ends in the body, cut anywhere (a CR and its LF apart too)."""
    message = b"Subject: x\r\nContent-Type: text/plain\r\n\r\n" + body
    at = sorted({min(c, len(message)) for c in cuts} | {0, len(message)})
    pieces = [message[a:b] for a, b in itertools.pairwise(at)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(smime, "_detached_signature",
                   lambda data, _identity: hashlib.sha512(bytes(data)).digest())
        mp.setattr("gateway.crypto.smime.secrets.token_hex", lambda _n: "0" * 24)
        ident = smime.SigningIdentity.__new__(smime.SigningIdentity)
        assert smime.sign(Handover(pieces), ident) == smime.sign(message, ident)


def test_handed_over_message_with_bare_lfs_is_signed_and_checked(
        world: World, identity: smime.SigningIdentity, anchors: TrustAnchors,
        tmp_path: Path) -> None:
    lf = MESSAGE.split(b"\r\n\r\n", 1)
    message = lf[0] + b"\r\n\r\n" + b"line one\nline two\r\nline three\n"
    for handed in (Handover([message[:60], message[60:]]),
                   Handover.of_file(_written(tmp_path / "m.eml", message))):
        signed = smime.Smime(identity, anchors).sign(handed)
        content = smime.verify(signed, anchors=anchors, at=datetime.now(UTC)).content
        assert content.endswith(b"line one\r\nline two\r\nline three\r\n")


def _written(path: Path, data: bytes) -> Path:
    spill.write_bytes(path, data)  # as the daemon spills it: sealed
    return path


def test_der_reader_refuses_what_is_not_plain_der() -> None:
    for data in (b"\x30\x80\x00\x00", b"\x30\x81\x05" + b"\x00" * 5, b"\x30\x05\x00",
                 b"\x1f\x01\x00", b"\x30\x82\x00\x03abc"):
        with pytest.raises(smime._NotOurShape):
            smime._der_items(data, 0, len(data))
    assert smime._der_items(b"\x04\x81\x80" + b"x" * 128, 0, 131) == [(4, 0, 3, 131)]


def test_own_certificate_is_read_as_a_signer_names_it(identity: smime.SigningIdentity) -> None:
    own = smime._OwnCertificate.of(identity.cert)
    assert own.der == identity.cert.public_bytes(serialization.Encoding.DER)
    serial = identity.cert.serial_number.to_bytes(
        identity.cert.serial_number.bit_length() // 8 + 1, "big")
    assert len(serial) < 0x80
    assert own.issuer_serial == (identity.cert.issuer.public_bytes()
                                 + bytes([0x02, len(serial)]) + serial)


@given(st.binary(max_size=700))
def test_signature_base64_is_written_as_encodebytes_writes_it(data: bytes) -> None:
    assert smime._base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")


# -- incoming signatures read in plain DER, else by asn1crypto -------------------------------

def _outcome(read: Callable[[bytes, bytes], tuple[x509.Certificate, bytes]], der: bytes,
             content: bytes) -> tuple[str, str]:
    try:
        return "accepted", read(der, content)[1].hex()
    except Exception as exc:  # the verdict compared, whatever it is
        return type(exc).__name__, str(exc)


def _signature_of(signed: bytes) -> tuple[bytes, bytes]:
    """(the signature's DER, the signed entity) of a multipart/signed message."""
    _, start, end, part = smime._locate(signed)
    return smime._signature_der(part), signed[start:end]


def test_a_plain_signature_is_read_without_asn1crypto(
        identity: smime.SigningIdentity, tmp_path: Path) -> None:
    """What cryptography writes, and what openssl writes, take the direct reading (with the
    signer's certificate as asn1crypto finds it)."""
    der, content = _signature_of(smime.sign(MESSAGE, identity))
    ours = smime._plain_signed_data(der, content)
    assert ours is not None and ours[0] == identity.cert
    assert ours[1] == smime._read_cms(der, content)[1]
    ossl = _openssl_signed(identity, tmp_path, "-binary", "-outform", "DER")
    plain = smime._plain_signed_data(ossl, MESSAGE)
    assert plain is not None and plain[0] == identity.cert


def _openssl_signed(identity: smime.SigningIdentity, tmp: Path, *args: str) -> bytes:
    (tmp / "in").write_bytes(MESSAGE)
    (tmp / "cert.pem").write_bytes(identity.cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    subprocess.run(["openssl", "cms", "-sign", "-in", str(tmp / "in"), "-signer",
                    str(tmp / "cert.pem"), "-inkey", str(tmp / "key.pem"), "-out",
                    str(tmp / "out"), *args], check=True, capture_output=True)
    return (tmp / "out").read_bytes()


@pytest.mark.parametrize("args", [("-stream",), ("-keyid",)], ids=["ber", "subject-key-id"])
def test_a_signature_in_another_encoding_or_shape_is_left_to_asn1crypto(
        world: World, identity: smime.SigningIdentity, tmp_path: Path,
        args: tuple[str, ...]) -> None:
    """Indefinite lengths (openssl's streaming), a signer named by its key identifier: not
    read directly, and asn1crypto's verdict is the one given, as before."""
    if "-keyid" in args:  # a certificate with a key identifier to name it by
        key = identity.key
        cert = (x509.CertificateBuilder(extensions=list(identity.cert.extensions))
                .subject_name(identity.cert.subject).issuer_name(identity.cert.issuer)
                .public_key(key.public_key()).serial_number(identity.cert.serial_number)
                .not_valid_before(identity.cert.not_valid_before_utc)
                .not_valid_after(identity.cert.not_valid_after_utc)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(load_private_key(world.ca_key), hashes.SHA256()))  # type: ignore[arg-type]
        identity = smime.SigningIdentity(cert, key)
    der = _openssl_signed(identity, tmp_path, "-binary", "-outform", "DER", *args)
    assert smime._plain_signed_data(der, MESSAGE) is None
    assert _outcome(smime._check_cms, der, MESSAGE) == _outcome(smime._read_cms, der, MESSAGE)


@pytest.mark.parametrize("flip", [0x01, 0x80, 0xFF])
def test_every_changed_byte_of_a_signature_is_judged_as_asn1crypto_judges_it(
        identity: smime.SigningIdentity, flip: int) -> None:
    """Each byte of the CMS changed in turn (lengths, tags, the serial number, the message
    digest, the signature, the certificate): the direct reading never accepts what asn1crypto
    refuses, and a refusal is asn1crypto's, with its words."""
    der, content = _signature_of(smime.sign(MESSAGE, identity))
    accepted = 0
    for at in range(len(der)):
        changed = der[:at] + bytes([der[at] ^ flip]) + der[at + 1:]
        verdict = _outcome(smime._check_cms, changed, content)
        assert verdict == _outcome(smime._read_cms, changed, content), at
        accepted += verdict[0] == "accepted"
    assert 0 < accepted < len(der) // 2  # bytes no check reads (the algorithm list) do not count
    for at in range(0, len(content), 7):  # the content: its digest is the one signed
        changed = content[:at] + bytes([content[at] ^ flip]) + content[at + 1:]
        verdict = _outcome(smime._check_cms, der, changed)
        assert verdict == _outcome(smime._read_cms, der, changed)
        assert verdict == ("SmimeError", "signed content was altered (digest mismatch)")


def test_a_renewed_certificate_is_the_one_a_signature_gives(
        world: World, identity: smime.SigningIdentity, anchors: TrustAnchors) -> None:
    """Certificates read once and kept (by their exact bytes): a signer's renewed certificate —
    same key, same subject, even the same serial number — is the one its next signatures
    give, and its own dates are the ones judged."""
    key = identity.key
    first = _issue(world, key, subject="renewed@hopital-a.mssante.example", serial=4242)
    receiver = smime.Smime(identity, anchors)
    now = datetime.now(UTC)
    for _ in range(2):
        signed = smime.sign(MESSAGE, smime.SigningIdentity(first, key))
        receiver.verify(signed, at=now)
        assert smime._check_cms(*_signature_of(signed))[0] == first
    renewed = (x509.CertificateBuilder().subject_name(first.subject).issuer_name(first.issuer)
               .public_key(key.public_key()).serial_number(4242)
               .not_valid_before(now - timedelta(days=2)).not_valid_after(now - timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                              critical=False)
               .sign(load_private_key(world.ca_key), hashes.SHA256()))  # type: ignore[arg-type]
    signed = smime.sign(MESSAGE, smime.SigningIdentity(renewed, key))
    der, entity = _signature_of(signed)
    assert smime._check_cms(der, entity)[0] == renewed
    with pytest.raises(CertificateRejected, match="expired"):
        receiver.verify(signed, at=now)


def test_a_signer_revoked_in_a_reloaded_crl_is_refused_though_its_certificate_is_kept(
        world: World, identity: smime.SigningIdentity, tmp_path: Path) -> None:
    """The certificate read once and kept is still judged against the CRLs in force: the
    anchors read again with a CRL that revokes it, its next message is refused."""
    signed = smime.sign(MESSAGE, identity)
    crl = world.write_crl(tmp_path / "crl.pem", ["revoked-client"])
    receiver = smime.Smime(identity, TrustAnchors.load([world.ca_cert], [crl]))
    now = datetime.now(UTC)
    for _ in range(2):
        receiver.verify(signed, at=now)
    world.write_crl(crl, ["revoked-client", "gateway-signing"])
    receiver = receiver.with_anchors(TrustAnchors.load([world.ca_cert], [crl]))
    with pytest.raises(CertificateRejected, match="revoked"):
        receiver.verify(signed, at=now)
