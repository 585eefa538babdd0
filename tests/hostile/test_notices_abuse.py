"""Notices as a weapon (issue 21, class 7): a report from the legacy hub that would tell a
trust-space sender their delivered message failed is believed only from the hub's own
authenticated session, when the hub can authenticate (``[legacy.hub]``), and only about a
recipient the gateway handed that message to; a legacy message whose sender was never
verified makes the gateway write a sealed letter that quotes nothing of it."""

from __future__ import annotations

import asyncio
import email.policy
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from gateway.spool import State
from gateway.translate import notices
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import arrived, gpg, opened_notice, run, settled, transaction

OP_A = "dr.x@hopital-a.mssante.example"


async def _hub_says(h: Harness, data: bytes, rcpt: str, tls: ssl.SSLContext) -> str:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=h.legacy_port, start_tls=True,
                           tls_context=tls, timeout=30)
    await smtp.connect()
    try:
        await smtp.mail("")
        await smtp.rcpt(rcpt)
        try:
            r = await smtp.data(data)
            return f"{r.code} {r.message}"
        except aiosmtplib.SMTPResponseException as exc:
            return f"{exc.code} {exc.message}"
    finally:
        smtp.close()


def test_a_hub_report_off_the_hubs_session_is_refused(world: World, tmp_path: Path) -> None:
    """A report on a message we really delivered, sent by someone who is not the hub (no
    client certificate, or another operator's): refused at DATA, the sender is told nothing;
    the same report over the hub's own certificate is passed back as a DSN."""
    async def scenario(h: Harness) -> None:
        await h.send_trust(OP_A, TRUST["dupont"], "Bonjour",
                           msgid="<hub-report@hopital-a.mssante.example>")
        delivered = (await h.hub.wait_for(1))[0]
        dsn = notices.build_dsn(delivered.data, sender=delivered.mail_from, failures=[
            notices.Failure(ADDR["dupont"], "failed", "5.2.2", "mailbox full")],
            reporting_mta="hub.legacy.example", now=datetime.now(UTC))
        for client in (None, "hopital-a-client"):
            got = await _hub_says(h, dsn, delivered.mail_from, h.tls(client))
            assert got.startswith("554 5.7.1"), got
        await asyncio.sleep(0.5)
        assert not h.op_a.received, "a forged report reached the sender"
        got = await _hub_says(h, dsn, delivered.mail_from, h.tls("legacy-hub-client"))
        assert got.startswith("250"), got
        back = (await h.op_a.wait_for(1))[0]
        assert back.rcpt_tos == (delivered.mail_from,)
    run(world, tmp_path, scenario,
        overrides={"legacy.hub": {"client_subject": world.dn("legacy-hub-client")}})


HOSTILE_ID = "<Rappelez-le-0800-123-456-pour-vos-resultats@medical33.legacy.example>"
HOSTILE_RCPT = "urgent.rappelez.le.0800123456@hopital-a.mssante.example"


def _forgery(world: World, kind: str) -> bytes:
    """Under Dr Dupont's address, words an attacker wants a sealed letter to repeat: in the
    Message-ID, the Date, the Subject, a recipient's name, an attachment's name."""
    m = EmailMessage()
    m["From"] = ADDR["dupont"]
    m["To"] = HOSTILE_RCPT
    m["Subject"] = "Votre compte sera suspendu, appelez le 0800 123 456"
    m["Date"] = "Appelez le 0800 123 456"
    m["Message-ID"] = HOSTILE_ID
    if kind == "forged-signer":  # Dr Martin's key, Dr Dupont's envelope
        m.set_content(gpg(world, "martin", "--armor", "--sign", "--encrypt", "-r",
                          world.fingerprints["gateway"], data=b"x"),
                      maintype="text", subtype="plain", cte="7bit")
    else:  # plaintext, an attachment named to be read out
        m.set_content("x")
        m.add_attachment(b"x", maintype="application", subtype="octet-stream",
                         filename="appelez-le-0800-123-456.txt")
    return m.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize("kind", ["forged-signer", "plaintext-attachment"])
def test_an_unverified_legacy_message_gets_a_notice_quoting_nothing_of_it(
        world: World, tmp_path: Path, kind: str) -> None:
    """Anyone may reach the legacy listener under a clinician's address.  Refused before its
    sender was verified, such a message makes the gateway write the clinician a sealed
    letter that names it by the gateway's own reference and quotes none of its words; the
    same refusal on a message the hub vouched for (its authenticated session) quotes the
    Message-ID, as the hub's word is that the clinician wrote it."""
    async def scenario(h: Harness) -> None:
        raw = _forgery(world, kind)
        s = await transaction(h, "legacy", ADDR["dupont"], [HOSTILE_RCPT], raw)
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        notice = await arrived(h.hub, None, rcpt=ADDR["dupont"])
        text = opened_notice(h, "dupont", notice)
        assert s.queue_id in text
        for words in ("0800", "Rappelez", "rappelez", "suspendu", HOSTILE_ID):
            assert words not in text, words
        assert "0800" not in notice.data.decode("latin-1")  # nor in the sealed letter's head
        h.hub.received.clear()
        vouched = await transaction(h, "legacy", ADDR["dupont"], [HOSTILE_RCPT],
                                    raw.replace(b"Rappelez-le", b"Vouched"),
                                    client="legacy-hub-client")
        await settled(h, vouched.queue_id, State.BOUNCED)
        text = opened_notice(h, "dupont", await arrived(h.hub, None, rcpt=ADDR["dupont"]))
        assert HOSTILE_ID.replace("Rappelez-le", "Vouched") in text
    run(world, tmp_path, scenario,
        overrides={"legacy.hub": {"client_subject": world.dn("legacy-hub-client")}})


def _rejections(h: Harness, reason: str) -> float:
    return sum(s.value for f in h.gateway.metrics.smtp_rejections.collect() for s in f.samples
               if s.name.endswith("_total") and s.labels.get("reason") == reason)


def test_a_hub_report_on_a_recipient_we_did_not_hand_the_message_to_is_refused(
        world: World, tmp_path: Path) -> None:
    """Over the hub's own session, a report naming another clinician than the one we
    delivered to, or naming nobody: refused at DATA, logged and counted; the sender is told
    nothing.  The report on the real recipient goes back as a DSN."""
    msgid = "<handed@hopital-a.mssante.example>"

    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]],
                              _letter_to_dupont(msgid), client="hopital-a-client")
        await settled(h, s.queue_id, State.DELIVERED)
        delivered = (await h.hub.wait_for(1))[0]
        hub = h.tls("legacy-hub-client")

        def report(*who: str) -> bytes:
            return notices.build_dsn(delivered.data, sender=OP_A, failures=[
                notices.Failure(w, "failed", "5.2.2", "mailbox full") for w in who],
                reporting_mta="hub.legacy.example", now=datetime.now(UTC))
        before = _rejections(h, "report_unmatched")
        for forged in (report(ADDR["martin"]), report(ADDR["dupont"], ADDR["martin"]),
                       report()):
            got = await _hub_says(h, forged, OP_A, hub)
            assert got.startswith("554 5.7.1"), got
        assert _rejections(h, "report_unmatched") - before == 3
        await asyncio.sleep(0.5)
        assert not h.op_a.received, "a forged report reached the sender"
        got = await _hub_says(h, report(ADDR["dupont"]), OP_A, hub)
        assert got.startswith("250"), got
        back = (await h.op_a.wait_for(1))[0]
        assert back.rcpt_tos == (OP_A,) and b"Status: 5.2.2" in back.data
    run(world, tmp_path, scenario,
        overrides={"legacy.hub": {"client_subject": world.dn("legacy-hub-client")}})


def _letter_to_dupont(msgid: str) -> bytes:
    m = EmailMessage()
    m["From"] = OP_A
    m["To"] = TRUST["dupont"]
    m["Subject"] = "Compte rendu"
    m["Message-ID"] = msgid
    m.set_content("Bien reçu.")
    return m.as_bytes(policy=email.policy.SMTP)
