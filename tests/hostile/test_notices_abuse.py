"""Notices as a weapon (issue 21, class 7): a report from the legacy hub that would tell a
trust-space sender their delivered message failed is believed only from the hub's own
authenticated session, when the hub can authenticate (``[legacy.hub]``)."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

from gateway.crypto.world import World
from gateway.translate import notices
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import run

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
