"""Formats that wrap other formats: opaque S/MIME signed-data from the trust side, and another
sender's OpenPGP armour nested inside a legacy part.

An opaque ``application/pkcs7-mime; smime-type=signed-data`` message is verified and
unwrapped as a ``multipart/signed`` one is — never read as unsigned text and forwarded.  A
legacy part that, once decrypted, holds another OpenPGP message (someone else's ciphertext or
signed text) is refused: it would otherwise reach the trust space under the outer sender's
name, checked by nobody.
"""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.crypto import smime
from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    gpg,
    letter,
    never_delivered,
    opened_notice,
    reasons,
    run,
    sealed,
    settled,
    transaction,
)

PHRASE = "Bien reçu, le bilan est normal."


def _entity(text: str = PHRASE) -> bytes:
    return (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            b"\r\n" + text.encode() + b"\r\n")


def _opaque(world: World, from_field: str, msgid: str, *, der: bytes | None = None,
            smime_type: str = "signed-data") -> bytes:
    """A trust-space letter as opaque S/MIME: the entity inside the CMS signed-data."""
    if der is None:
        identity = smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                              world.key("hopital-a-signing"))
        der = (pkcs7.PKCS7SignatureBuilder().set_data(_entity())
               .add_signer(identity.cert, identity.key, hashes.SHA256())  # type: ignore[arg-type]
               .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    encoded = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return (f"From: {from_field}\r\nTo: {TRUST['durand']}\r\nSubject: Reponse\r\n"
            f"Message-ID: {msgid}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"'
            "\r\nContent-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n').encode() + encoded


def test_opaque_signed_data_is_verified_and_unwrapped(world: World, tmp_path: Path) -> None:
    """Signed by the From's own certificate: the clinician reads the letter, not a blob."""
    msgid = "<opaque@hopital-a.mssante.example>"

    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", OP_A, [TRUST["durand"]],
                              _opaque(world, f"Dr X <{OP_A}>", msgid),
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        got = await arrived(h.hub, None, rcpt=ADDR["durand"])
        assert PHRASE in opened_notice(h, "durand", got)
        await settled(h, s.queue_id, State.DELIVERED)
    run(world, tmp_path, scenario)


def _tampered(world: World) -> bytes:
    identity = smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                          world.key("hopital-a-signing"))
    der = (pkcs7.PKCS7SignatureBuilder().set_data(_entity())
           .add_signer(identity.cert, identity.key, hashes.SHA256())  # type: ignore[arg-type]
           .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    assert b"normal" in der
    return der.replace(b"normal", b"grave!")  # the content changed, the signature kept


def _enveloped(world: World) -> bytes:
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(world.cert("gateway-signing").read_bytes())
    return (pkcs7.PKCS7EnvelopeBuilder().set_data(_entity()).add_recipient(cert)
            .encrypt(serialization.Encoding.DER, []))


def _unsigned_data(world: World) -> bytes:
    from asn1crypto import cms
    return cms.ContentInfo({"content_type": "data", "content": _entity()}).dump()


@pytest.mark.parametrize(("case", "kind"), [
    ("tampered", "smime"),
    ("another-mailbox", "sender_mismatch"),
    ("enveloped-data", "smime"),
    ("enveloped-labelled-signed", "smime"),
    ("plain-data-labelled-signed", "smime"),
])
def test_opaque_smime_that_does_not_verify_is_never_forwarded(world: World, tmp_path: Path,
                                                              case: str, kind: str) -> None:
    """Altered content, a signer that is not the From, or a pkcs7-mime that holds no
    signed-data (whatever its label says): bounced to the operator, nothing for the
    clinician — never passed on as an unsigned letter."""
    msgid = f"<opaque-{case}@hopital-a.mssante.example>"
    from_field = f"Dr X <{OP_A}>"
    der = None
    label = "signed-data"
    if case == "tampered":
        der = _tampered(world)
    elif case == "another-mailbox":
        from_field = "Dr Y <dr.y@hopital-a.mssante.example>"
    elif case == "enveloped-data":
        der, label = _enveloped(world), "enveloped-data"
    elif case == "enveloped-labelled-signed":
        der = _enveloped(world)
    else:
        der = _unsigned_data(world)

    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", OP_A, [TRUST["durand"]],
                              _opaque(world, from_field, msgid, der=der, smime_type=label),
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith(f"{kind}:"), reasons(h, s.queue_id)
        assert not [r for r in h.hub.received if ADDR["durand"] in r.rcpt_tos]
        dsn = await arrived(h.op_a, None, rcpt=OP_A)
        assert b"multipart/report" in dsn.data
    run(world, tmp_path, scenario)


def _foreign(world: World) -> bytes:
    """Dr Martin's own OpenPGP message (signed, encrypted to the gateway)."""
    return gpg(world, "martin", "--armor", "--sign", "--encrypt", "-r",
               world.fingerprints["gateway"], data=b"Ordonnance du Dr Martin.")


def _clearsigned(world: World) -> bytes:
    return gpg(world, "martin", "--clearsign", data=b"Ordonnance du Dr Martin.\n")


def _nested_inline(world: World, msgid: str) -> bytes:
    text = b"Voir ci-dessous.\r\n\r\n" + _foreign(world)
    return sealed(world, "dupont", letter(ADDR["dupont"], OP_A, text, msgid=msgid).as_bytes())


def _nested_clearsigned(world: World, msgid: str) -> bytes:
    text = b"Transmis :\r\n" + _clearsigned(world)
    return sealed(world, "dupont", letter(ADDR["dupont"], OP_A, text, msgid=msgid).as_bytes())


def _nested_attachment(world: World, msgid: str) -> bytes:
    m = letter(ADDR["dupont"], OP_A, b"Piece jointe.", msgid=msgid)
    m.add_attachment(_foreign(world), maintype="text", subtype="plain", filename="note.txt")
    return sealed(world, "dupont", m.as_bytes())


def _nested_pgp_mime(world: World, msgid: str, *, binary: bool = False) -> bytes:
    """PGP/MIME from Dr Dupont whose decrypted entity holds, in base64, Dr Martin's block
    (armoured, or ``binary``: packets no marker shows, in a file named ``.pgp``)."""
    inner = EmailMessage()
    inner.set_content("Piece jointe.")
    if binary:
        block = gpg(world, "martin", "--sign", "--encrypt", "-r",
                    world.fingerprints["gateway"], data=b"Ordonnance du Dr Martin.")
        inner.add_attachment(block, maintype="application", subtype="octet-stream",
                             filename="ordonnance.pgp")
    else:
        inner.add_attachment(_foreign(world), maintype="application", subtype="octet-stream",
                             filename="ordonnance.bin")
    armored = gpg(world, "dupont", "--armor", "--sign", "--encrypt", "-r",
                  world.fingerprints["gateway"], data=inner.as_bytes())
    outer = EmailMessage()
    outer["From"] = ADDR["dupont"]
    outer["To"] = OP_A
    outer["Message-ID"] = msgid
    outer.set_type("multipart/encrypted")
    outer.set_param("protocol", "application/pgp-encrypted")
    control = EmailMessage()
    control.set_content(b"Version: 1\n", maintype="application", subtype="pgp-encrypted")
    data = EmailMessage()
    data.set_content(armored, maintype="application", subtype="octet-stream",
                     filename="encrypted.asc")
    outer.set_payload([control, data])
    return outer.as_bytes(policy=email.policy.SMTP)


def _nested_in_parts(world: World, msgid: str) -> bytes:
    """Dr Martin's block re-armoured as a message in parts (``PART 1/1``)."""
    block = _foreign(world).replace(b"-----BEGIN PGP MESSAGE-----",
                                    b"-----BEGIN PGP MESSAGE, PART 1/1-----")
    return sealed(world, "dupont", letter(ADDR["dupont"], OP_A, b"Voir :\r\n" + block,
                                          msgid=msgid).as_bytes())


def _nested_pgp_mime_binary(world: World, msgid: str) -> bytes:
    return _nested_pgp_mime(world, msgid, binary=True)


NESTED = {"inline": _nested_inline, "clearsigned": _nested_clearsigned,
          "attachment": _nested_attachment, "pgp-mime-base64": _nested_pgp_mime,
          "armour-in-parts": _nested_in_parts, "pgp-mime-binary-file": _nested_pgp_mime_binary}


@pytest.mark.parametrize("case", list(NESTED))
def test_foreign_armour_nested_in_a_legacy_part_is_refused(world: World, tmp_path: Path,
                                                           case: str) -> None:
    """Dr Dupont's genuine, signed message carrying Dr Martin's OpenPGP block (in the text,
    in an attachment, base64 inside PGP/MIME, or clear-signed): bounced `nested_armour` to
    Dr Dupont; nothing reaches the operator under his name."""
    msgid = f"<nested-{case}@medical33.legacy.example>"

    async def scenario(h: Harness) -> None:
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], NESTED[case](world, msgid))
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith("nested_armour:"), reasons(h, s.queue_id)
        never_delivered(h, msgid.encode(), to="trust")
        assert h.op_a.received == []
        notice = await arrived(h.hub, None, rcpt=ADDR["dupont"])
        # refused inside the open stage, before the signer was compared: named by our
        # reference, nothing of it quoted
        assert s.queue_id in opened_notice(h, "dupont", notice)
    run(world, tmp_path, scenario)
