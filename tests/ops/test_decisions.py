"""Every decision the daemon takes is one structured log line (and a count): SMTP refusals on
both listeners, inbound TLS failures (one line, no traceback), each delivery attempt with its
status, relay, delay, DSN code and the peer's reply."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from gateway import log as ops_logging
from gateway.crypto.world import World
from gateway.log import clean_reply
from tests.conftest import FIXTURES
from tests.daemon.harness import ADDR, Harness, start, until
from tests.ops.logscan import assert_clean, forbidden_terms_from_fixtures


def events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    out = []
    for line in buffer.getvalue().splitlines():
        record = json.loads(line)  # every line is one JSON object
        if record.get("event") == name:
            out.append(record)
    return out


def rejections(h: Harness) -> dict[tuple[str, str, str], float]:
    counter = h.gateway.metrics.smtp_rejections
    return {tuple(s.labels.values()): s.value  # type: ignore[misc]
            for f in counter.collect() for s in f.samples if s.name.endswith("_total")}


async def refused(coro: Any) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await coro
        raise AssertionError("the gateway accepted what it should refuse")


async def refusals(h: Harness) -> None:
    send = aiosmtplib.send
    mail = b"Subject: x\r\n\r\nBonjour\r\n"
    # legacy listener: a sender the address book does not know; a domain not on the list
    await refused(send(mail, sender="inconnu.patient@medical33.legacy.example",
                       recipients=["dr.x@hopital-a.mssante.example"], hostname="127.0.0.1",
                       port=h.legacy_port, start_tls=True, tls_context=h.tls(), timeout=10))
    await refused(send(mail, sender=ADDR["dupont"], recipients=["someone@unlisted.example"],
                       hostname="127.0.0.1", port=h.legacy_port, start_tls=True,
                       tls_context=h.tls(), timeout=10))
    # trust listener: MAIL before STARTTLS; a certificate whose DN the list does not publish
    await refused(send(mail, sender="dr.x@hopital-a.mssante.example",
                       recipients=[ADDR["dupont"]], hostname="127.0.0.1", port=h.trust_port,
                       start_tls=False, timeout=10))
    await refused(send(mail, sender="dr.x@hopital-a.mssante.example",
                       recipients=["dupont@gw.example"], hostname="127.0.0.1",
                       port=h.trust_port, start_tls=True, tls_context=h.tls("rogue-client"),
                       timeout=10))
    # inbound TLS failures: no client certificate; one from a CA we do not trust
    for client in (None, "evil-client"):
        await refused(send(mail, sender="dr.x@hopital-a.mssante.example",
                           recipients=["dupont@gw.example"], hostname="127.0.0.1",
                           port=h.trust_port, start_tls=True, tls_context=h.tls(client),
                           timeout=10))


def test_each_refusal_and_inbound_tls_failure_is_one_line_and_one_count(
        world: World, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    ops_logging.configure("info", stream=buffer)
    counts: dict[tuple[str, str, str], float] = {}
    tls: dict[tuple[str, ...], float] = {}

    async def main() -> None:
        h = await start(world, tmp_path)
        try:
            before = rejections(h)
            assert before[("trust", "550", "certificate_rejected")] == 0  # exists at zero
            await refusals(h)
            await until(lambda: len(events(buffer, "tls.handshake_failed")) >= 2)
            counts.update({k: v - before.get(k, 0) for k, v in rejections(h).items()})
            tls.update({tuple(s.labels.values()): s.value
                        for f in h.gateway.metrics.tls_failures.collect()
                        for s in f.samples if s.name.endswith("_total")})
        finally:
            await h.stop()

    try:
        asyncio.run(main())
    finally:
        ops_logging.configure("info")
    lines = events(buffer, "smtp.rejected")
    seen = {(r["listener"], r["code"], r["reason"]) for r in lines}
    assert ("legacy", "550", "unknown_sender") in seen
    assert ("legacy", "550", "domain_not_listed") in seen
    assert ("trust", "530", "starttls_required") in seen
    assert ("trust", "550", "certificate_rejected") in seen
    for record in lines:
        assert record["peer"] == "127.0.0.1" and record["level"] in ("info", "warning")
        assert record.get("enhanced", "x.").count(".") == 2
    sender = next(r for r in lines if r["reason"] == "unknown_sender")
    assert sender["sender"] == "***@medical33.legacy.example"  # the person's name cut off
    unlisted = next(r for r in lines if r["reason"] == "domain_not_listed")
    assert unlisted["recipient"] == "***@unlisted.example"
    for key in seen:
        assert counts[key] >= 1, key
    failures = events(buffer, "tls.handshake_failed")
    reasons = {r["reason"] for r in failures}
    assert {"no_client_certificate", "certificate_unknown"} <= reasons
    assert all(r["direction"] == "inbound" and r["peer"] == "127.0.0.1" for r in failures)
    for reason in ("no_client_certificate", "certificate_unknown"):
        assert tls[("inbound", "other", reason)] >= 1
    # no traceback printed outside the JSON log
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "TLSSetupException" not in out + err
    assert_clean(buffer.getvalue().splitlines(), forbidden_terms_from_fixtures(FIXTURES)
                 | {"inconnu.patient"})


def test_each_delivery_attempt_is_one_line_with_status_relay_delay_dsn_and_reply(
        world: World, tmp_path: Path) -> None:
    buffer = io.StringIO()
    ops_logging.configure("info", stream=buffer)
    steps: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    async def main() -> None:
        h = await start(world, tmp_path)
        try:
            h.op_a.behaviour.fail_times = 1  # deferred once, then sent
            await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example", b"Bonjour",
                                msgid="<d1@m33>")
            await h.op_a.wait_for(1)
            h.op_b.behaviour.mode = "permfail"  # bounced
            await h.send_legacy("dupont", "dr.y@clinique-b.mssante.example", b"Bonjour",
                                msgid="<d2@m33>")
            await until(lambda: any(r["status"] == "bounced"
                                    for r in events(buffer, "delivery.attempt")))
            await asyncio.sleep(0.3)
            for mid in ("<d1@m33>", "<d2@m33>"):
                steps[mid] = [(e.stage, e.record) for e in h.gateway.journal.entries(mid)]
            assert h.gateway.journal.verify().ok
        finally:
            await h.stop()

    try:
        asyncio.run(main())
    finally:
        ops_logging.configure("info")
    attempts = events(buffer, "delivery.attempt")
    assert {"sent", "deferred", "bounced"} <= {r["status"] for r in attempts}
    deferred = next(r for r in attempts if r["status"] == "deferred")
    bounced = next(r for r in attempts if r["status"] == "bounced")
    sent = next(r for r in attempts
                if r["status"] == "sent" and r["queue_id"] == deferred["queue_id"])
    assert sent["reply"].startswith("250 ") and sent["dsn"].startswith("2.")
    assert deferred["reply"][:1] == "4" and deferred["dsn"].startswith("4.")
    assert bounced["reply"][:1] == "5" and bounced["dsn"].startswith("5.")
    assert sent["attempt"] == 2
    for record in (sent, deferred, bounced):
        assert record["relay"].startswith("127.0.0.1:") and record["delay_seconds"] >= 0
        assert record["recipient"].startswith("***@")
    assert sent["delay_seconds"] >= deferred["delay_seconds"]
    # the trace has each attempt too, after the translation's steps
    delivered = [r for stage, r in steps["<d1@m33>"] if stage == "delivery"]
    assert [r["status"] for r in delivered] == ["deferred", "sent"]
    assert steps["<d1@m33>"][0][0] == "received" and steps["<d1@m33>"][-1][0] == "delivery"
    assert delivered[-1]["reply"].startswith("250 ") and delivered[-1]["relay"] != "none"
    assert delivered[-1]["recipient_domain"] == "hopital-a.mssante.example"
    assert [r["status"] for stage, r in steps["<d2@m33>"] if stage == "delivery"] == ["bounced"]


def test_a_peer_reply_keeps_its_smtp_words_and_masks_the_rest() -> None:
    reply = "550 5.1.1 <jean.dupont@clinique-b.mssante.example>: Recipient address rejected: " \
            "User unknown (Mme LEFÈVRE Jeanne, née 02/11/1948)"
    got = clean_reply(reply)
    assert isinstance(got, str)
    assert got.startswith("550 5.1.1 <***@clinique-b.mssante.example>: Recipient address")
    assert "User unknown" in got
    for leak in ("jean", "dupont", "LEFÈVRE", "Jeanne", "1948"):
        assert leak not in got
