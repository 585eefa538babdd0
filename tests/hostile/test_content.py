"""Hostile headers and MIME: injection through display names, malformed or absurdly nested
MIME, 8-bit bytes in headers.  Each is delivered intact or bounced as ``message_format`` —
never a crash retried forever, never a header that was not written."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.conftest import legacy_client
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    Session,
    arrived,
    gpg,
    never_delivered,
    parsed,
    reasons,
    run,
    settled,
    still_serving,
    transaction,
)
from tests.hostile.test_fuzz import FOUND

# --- header injection through the address book's display names ------------------------------

TRICKY = 'Dr "Evil" <evil@evil.example>, Bcc: all@evil.example; Cc: x@evil.example'


def _book_with(world: World, user: str, display_name: str) -> str:
    """The world's address book with one user's display name replaced (CSV-quoted)."""
    book = world.addresses.read_text("utf-8")
    spec_name = {"dupont": "Dr Jean Dupont"}[user]
    quoted = '"' + display_name.replace('"', '""') + '"'
    return book.replace(f'"{spec_name}"', quoted)


def test_tricky_mapped_display_name_is_quoted_not_injected(world: World, tmp_path: Path) -> None:
    """A name full of quotes, commas, angle brackets and "Bcc:" stays one quoted name, both
    ways: one From, one To, no Bcc/Cc, and the peers receive for the envelope only."""
    book = world.addresses.read_text("utf-8")

    async def scenario(h: Harness) -> None:
        world.addresses.write_text(_book_with(world, "dupont", TRICKY), "utf-8")
        h.gateway.reload()
        await h.send_legacy("dupont", OP_A, b"Bonjour", msgid="<inj-1@medical33.legacy.example>")
        out = parsed((await arrived(h.op_a, "<inj-1@medical33.legacy.example>")).data)
        assert [a.addr_spec for a in out["From"].addresses] == [TRUST["dupont"]]
        assert out["From"].addresses[0].display_name == TRICKY
        assert out["Bcc"] is None and out["Cc"] is None
        await h.send_trust(OP_A, TRUST["dupont"], "Réponse", msgid="<inj-2@hopital-a.example>")
        got = await arrived(h.hub, None, rcpt=ADDR["dupont"])
        back = parsed(legacy_client(world, "dupont").open(
            got.data, expected_signer=world.fingerprints["gateway"]).message)
        assert [a.addr_spec for a in back["To"].addresses] == [ADDR["dupont"]]
        assert back["Bcc"] is None and back["Cc"] is None
        assert [r.rcpt_tos for r in h.op_a.received] == [(OP_A,)]
    try:
        run(world, tmp_path, scenario)
    finally:
        world.addresses.write_text(book, "utf-8")


@pytest.mark.parametrize("name", [
    "Dr\u2028Bcc: all@evil.example", "Dr\x85Bcc: all@evil.example", "Dr\x0bBcc: x@evil.example",
    "=?utf-8?q?Dr=0D=0ABcc:_all@evil.example?=",
], ids=["line-separator", "next-line", "vertical-tab", "encoded-crlf"])
def test_display_name_that_could_break_a_header_is_refused_at_reload(
        world: World, tmp_path: Path, name: str) -> None:
    """The book is refused when reloaded (the one in force stays): no message ever meets it."""
    book = world.addresses.read_text("utf-8")

    async def scenario(h: Harness) -> None:
        world.addresses.write_text(_book_with(world, "dupont", name), "utf-8")
        h.gateway.reload()
        assert h.gateway.book().by_legacy(ADDR["dupont"]).display_name == "Dr Jean Dupont"
        await h.send_legacy("dupont", OP_A, b"Bonjour", msgid="<inj-3@medical33.legacy.example>")
        out = parsed((await arrived(h.op_a, "<inj-3@medical33.legacy.example>")).data)
        assert str(out["From"]) == f"Dr Jean Dupont <{TRUST['dupont']}>"
    try:
        run(world, tmp_path, scenario)
    finally:
        world.addresses.write_text(book, "utf-8")


# --- header injection through the sender's own headers -------------------------------------

ENCODED = {
    "subject-crlf-cc": b"Subject: =?utf-8?q?Bonjour=0D=0ACc:_evil@evil.example?=\r\n",
    "subject-line-separator": b"Subject: =?utf-8?q?Bonjour=E2=80=A8Cc:_evil@evil.example?=\r\n",
    "cc-name-crlf": b"Cc: =?utf-8?q?Dr=0D=0ACc:_evil@evil.example?= <dr.z@hopital-a.example>\r\n",
    "cc-name-next-line": b"Cc: =?utf-8?q?Dr=C2=85Cc:_evil@evil.example?= <dr.z@hopital-a.example>"
                         b"\r\n",
    "in-reply-to-crlf": b"In-Reply-To: =?utf-8?q?<a@b>=0D=0ACc:_evil@evil.example?=\r\n",
}


def _hostile_message(h: Harness, side: str, extra: bytes, msgid: str) -> tuple[str, bytes]:
    if side == "trust":
        return OP_A, (f"From: {OP_A}\r\nTo: {TRUST['dupont']}\r\nMessage-ID: {msgid}\r\n"
                      ).encode() + extra + "\r\nRésultats\r\n".encode()
    # the outer headers of an inline legacy message, as the sender's software wrote them
    armored = gpg(h.world, "dupont", "--armor", "--sign", "--encrypt", "-r",
                  h.world.fingerprints["gateway"], data="Résultats".encode("mac_roman"))
    return ADDR["dupont"], (f"From: {ADDR['dupont']}\r\nTo: {OP_A}\r\nMessage-ID: {msgid}\r\n"
                            ).encode() + extra + b"Content-Type: text/plain\r\n\r\n" + \
        armored.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("side", ["legacy", "trust"])
@pytest.mark.parametrize("case", list(ENCODED))
def test_encoded_line_break_in_a_header_is_bounced(world: World, tmp_path: Path, case: str,
                                                   side: str) -> None:
    """RFC 2047 words that decode to a line break would become a header of their own once
    written again: the message is bounced (``message_format``), never delivered with it."""
    async def scenario(h: Harness) -> None:
        msgid = f"<enc-{case}@x.example>"
        sender, raw = _hostile_message(h, side, ENCODED[case], msgid)
        rcpt = OP_A if side == "legacy" else TRUST["dupont"]
        s = await transaction(h, side, sender, [rcpt], raw, client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith("message_format:")
        notice = await arrived(h.hub if side == "legacy" else h.op_a, None, rcpt=sender)
        assert notice.mail_from in ("", "<>")
        never_delivered(h, msgid.encode(), to="trust" if side == "legacy" else "legacy")
        for peer in (h.hub, h.op_a, h.op_b):  # notices quote the original's header block
            assert not [r for r in peer.received if b"evil@evil.example" in r.data
                        and r.mail_from not in ("", "<>")]
    run(world, tmp_path, scenario)


# --- 8-bit bytes in headers -----------------------------------------------------------------

@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_non_utf8_header_bytes_are_read_not_replaced(world: World, tmp_path: Path,
                                                     side: str) -> None:
    """Raw Windows-1252 and UTF-8 bytes in Subject and Reply-To (RFC 5322 says ASCII; old
    software does it anyway): delivered, each character read, none turned into U+FFFD."""
    async def scenario(h: Harness) -> None:
        extra = ("Subject: Résultats d'analyse\r\n".encode("cp1252")
                 + "Reply-To: Dr Mé Décin <dr.x@hopital-a.mssante.example>\r\n".encode())
        sender, raw = _hostile_message(h, side, extra, "<8bit@x.example>")
        rcpt = OP_A if side == "legacy" else TRUST["dupont"]
        s = await transaction(h, side, sender, [rcpt], raw, client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.DELIVERED)
        if side == "legacy":
            out = parsed((await arrived(h.op_a, "<8bit@x.example>")).data)
        else:
            got = await arrived(h.hub, None, rcpt=ADDR["dupont"])
            out = parsed(legacy_client(world, "dupont").open(
                got.data, expected_signer=world.fingerprints["gateway"]).message)
        assert str(out["Subject"]) == "Résultats d'analyse"
        assert out["Reply-To"].addresses[0].display_name == "Dr Mé Décin"
    run(world, tmp_path, scenario)


# --- malformed MIME ---------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    head, tail = b"", b""
    for n in range(depth):
        head += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        tail = b"\r\n--b%d--\r\n" % n + tail
    return head + b"Content-Type: text/plain\r\n\r\nfond\r\n" + tail


MALFORMED = {
    "boundary-never-present": b'Content-Type: multipart/mixed; boundary="nowhere"\r\n\r\n'
                              b"--elsewhere\r\nContent-Type: text/plain\r\n\r\nx\r\n",
    "no-boundary-parameter": b"Content-Type: multipart/mixed\r\n\r\n--x\r\n"
                             b"Content-Type: text/plain\r\n\r\nx\r\n--x--\r\n",
    "nested-100-deep": _nested(100),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_mime_from_the_trust_side_is_bounced(world: World, tmp_path: Path,
                                                       case: str) -> None:
    async def scenario(h: Harness) -> None:
        msgid = f"<mime-{case}@hopital-a.mssante.example>"
        raw = (f"From: {OP_A}\r\nTo: {TRUST['dupont']}\r\nMessage-ID: {msgid}\r\n"
               "MIME-Version: 1.0\r\n").encode() + MALFORMED[case]
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], raw,
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith("message_format:")
        dsn = await arrived(h.op_a, None, rcpt=OP_A)
        assert b"Status: 5.6.0" in dsn.data
        assert h.hub.received == []
    run(world, tmp_path, scenario)


async def bounced_to_dupont(h: Harness, s: Session) -> None:
    """Accepted, then bounced as malformed to the legacy sender dupont (a sealed notice);
    nothing reached the operator."""
    assert s.data.startswith("250 2.0.0"), s.data
    await settled(h, s.queue_id, State.BOUNCED)
    assert reasons(h, s.queue_id)[0].startswith("message_format:")
    await arrived(h.hub, None, rcpt=ADDR["dupont"])  # the sealed notice
    assert h.op_a.received == []


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_mime_inside_a_signed_legacy_message_is_bounced(world: World, tmp_path: Path,
                                                                  case: str) -> None:
    """The same structures as the signed and encrypted content of a PGP/MIME message (RFC
    3156) from a genuine user: the decrypted entity is read with the same bounds."""
    async def scenario(h: Harness) -> None:
        msgid = f"<mime-{case}@medical33.legacy.example>"
        entity = MALFORMED[case]
        armored = gpg(world, "dupont", "--armor", "--sign", "--encrypt", "-r",
                      world.fingerprints["gateway"], data=entity)
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
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              outer.as_bytes(policy=email.policy.SMTP))
        await bounced_to_dupont(h, s)
    run(world, tmp_path, scenario)


def test_pgp_mime_without_its_encrypted_part_is_bounced(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        raw = (f"From: {ADDR['dupont']}\r\nTo: {OP_A}\r\nMessage-ID: <pgpmime@x.example>\r\n"
               'MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol="application/'
               'pgp-encrypted"; boundary="e"\r\n\r\n--e\r\nContent-Type: application/pgp-'
               "encrypted\r\n\r\nVersion: 1\r\n--e--\r\n").encode()
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], raw)
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith("message_format:")
        assert h.op_a.received == []
    run(world, tmp_path, scenario)


@pytest.mark.parametrize("case", list(FOUND))
def test_what_crashed_a_translation_is_bounced_to_the_trust_sender(world: World,
                                                                   tmp_path: Path,
                                                                   case: str) -> None:
    """End to end, the inputs the whole-translation fuzz found (`test_fuzz.py`): a malformed
    message is bounced with a DSN the sender can read — even when the offending value (an
    8-bit Message-ID) is one a notice would quote — and text in a charset that cannot exist
    goes to the quarantine, like any text that cannot be read; nothing reaches the hub."""
    async def scenario(h: Harness) -> None:
        raw = FOUND[case].replace(b"dr.x@hopital-a.mssante.example", OP_A.encode())
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], raw,
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        if case == "NUL in a charset":
            await settled(h, s.queue_id, State.QUARANTINED)
        else:
            await settled(h, s.queue_id, State.BOUNCED)
            dsn = await arrived(h.op_a, None, rcpt=OP_A)
            assert b"Status: 5." in dsn.data
        assert h.hub.received == []
        await still_serving(h)
    run(world, tmp_path, scenario)


def test_a_legacy_message_with_two_to_headers_is_bounced_to_its_sender(world: World,
                                                                      tmp_path: Path) -> None:
    """A second To (RFC 5322 allows one) used to crash the legacy open; it is a malformed
    message, bounced to the legacy sender as a sealed notice; nothing reaches the operator."""
    async def scenario(h: Harness) -> None:
        inner = (f"From: {ADDR['dupont']}\r\nTo: {OP_A}\r\nSubject: Deux destinataires\r\n"
                 "Message-ID: <two-to@medical33.legacy.example>\r\n\r\nBonjour\r\n").encode()
        sealed = legacy_client(world, "dupont").seal(inner,
                                                     recipient=world.fingerprints["gateway"])
        twice = f"To: {OP_A}\r\n".encode() + sealed
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], twice)
        await bounced_to_dupont(h, s)
    run(world, tmp_path, scenario)
