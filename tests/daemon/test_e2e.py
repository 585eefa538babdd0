"""End to end over real sockets: listeners, spool, translation, delivery, notices."""

from __future__ import annotations

import asyncio
import email
import email.policy
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from gateway.mail import mime
from tests.conftest import legacy_client, require_tool
from tests.daemon.harness import ADDR, TRUST, Harness, start, until

Scenario = Callable[[Harness], Awaitable[None]]


def run(world: World, tmp_path: Path, scenario: Scenario, adapter: str = "openpgp") -> None:
    async def main() -> None:
        h = await start(world, tmp_path, overrides={"legacy": {"adapter": adapter}})
        try:
            await scenario(h)
        finally:
            await h.stop()
    asyncio.run(main())


def parsed(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_legacy_to_trust_then_reply_back(world: World, tmp_path: Path, adapter: str) -> None:
    """Through each legacy adapter (gpg, sop, rnp): the legacy user's own gpg opens the reply."""
    if adapter == "sop":
        require_tool("sqop")

    async def scenario(h: Harness) -> None:
        await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example",
                            "Hémoglobine à 11,8 g/dL".replace("\n", "\r").encode("mac_roman"),
                            msgid="<e2e-1@medical33.legacy.example>")
        got = await h.op_a.wait_for(1)
        msg = parsed(got[0].data)
        assert msg.get_content_type() == "multipart/signed"
        assert msg["From"] == f"Dr Jean Dupont <{TRUST['dupont']}>"
        assert got[0].client_subject is not None and "mx.legacy.mssante.example" in \
            got[0].client_subject
        body = next(p for p in mime.leaves(mime.parse(got[0].data))
                    if p.content_type == "text/plain")
        assert body.data.decode("utf-8").startswith("Hémoglobine à 11,8 g/dL\r\n-- \r\n")
        opened_by = {"openpgp": "gpg", "sop": "sop", "rnp": "rnp"}[adapter]
        assert h.gateway.metrics.registry.get_sample_value(
            "passerelle_legacy_parts_opened_total", {"tool": opened_by}) == 1

        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["dupont"], "Bien reçu.",
                           msgid="<e2e-2@hopital-a.mssante.example>",
                           extra={"In-Reply-To": "<e2e-1@medical33.legacy.example>"})
        back = await h.hub.wait_for(1)
        assert back[0].rcpt_tos == (ADDR["dupont"],)
        assert h.gateway.metrics.registry.get_sample_value(  # the reply's one part
            "passerelle_legacy_parts_sealed_total", {"tool": opened_by}) == 1
        opened = legacy_client(h.world, "dupont").open(
            back[0].data, expected_signer=h.world.fingerprints["gateway"])
        reply = parsed(opened.message)
        assert reply["In-Reply-To"] == "<e2e-1@medical33.legacy.example>"
        text = mime.leaves(mime.parse(opened.message))[0].data
        assert text == "Bien reçu.\r\n".encode("mac_roman")  # Dr Dupont's Mac reads it
    run(world, tmp_path, scenario, adapter)


def test_peer_answering_4xx_is_retried_and_delivered(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        h.op_a.behaviour.fail_times = 2
        await h.send_legacy("martin", "dr.x@hopital-a.mssante.example", b"Bonjour",
                            msgid="<e2e-3@medical75.legacy.example>")
        await h.op_a.wait_for(1, timeout=20)
        assert h.op_a.behaviour.fail_times == 0
        await until(lambda: h.gateway.spool.counts() == {"delivered": 1})
        entry = h.gateway.spool.list()[0]
        assert entry.recipients[0].attempts == 3  # two 4xx, then accepted
    run(world, tmp_path, scenario)


def test_5xx_bounces_to_the_legacy_sender_in_french(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        h.op_b.behaviour.per_recipient["nobody@clinique-b.mssante.example"] = "permfail"
        await h.send_legacy("petit", "nobody@clinique-b.mssante.example",
                            "Données patient confidentielles".encode("cp1252"),
                            msgid="<e2e-4@medical59.legacy.example>")
        notice = (await h.hub.wait_for(1))[0]
        assert notice.rcpt_tos == (ADDR["petit"],) and notice.mail_from in ("", "<>")
        opened = legacy_client(h.world, "petit").open(
            notice.data, expected_signer=h.world.fingerprints["gateway"])
        body = mime.leaves(mime.parse(opened.message))[0].data
        content = body.decode("cp1252")  # Dr Petit's software reads CP1252
        assert "\r\n" in content and "n'a pas pu être remis" in content
        assert "nobody@clinique-b" in content
        assert "confidentielles" not in content  # the original is never echoed back
        await until(lambda: h.gateway.spool.counts().get("bounced") == 1)
        assert h.gateway.metrics.registry.get_sample_value(  # the notice's one part
            "passerelle_legacy_parts_sealed_total", {"tool": "gpg"}) == 1
    run(world, tmp_path, scenario)


def test_5xx_bounces_to_a_trust_sender_as_a_dsn(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        # the legacy hub refuses the recipient for good
        h.hub.behaviour.per_recipient[ADDR["durand"].lower()] = "permfail"
        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["durand"], "Résultats",
                           msgid="<e2e-5@hopital-a.mssante.example>")
        dsn = (await h.op_a.wait_for(1))[0]
        assert dsn.mail_from in ("", "<>") and dsn.rcpt_tos == ("dr.x@hopital-a.mssante.example",)
        msg = parsed(dsn.data)
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "delivery-status"
        assert b"Status: 5.1." in dsn.data and b"e2e-5@hopital-a" in dsn.data
        assert b"R=C3=A9sultats" not in dsn.data and "Résultats".encode() not in dsn.data
    run(world, tmp_path, scenario)


def test_untranslatable_goes_to_quarantine_and_release_sends_it(world: World,
                                                                  tmp_path: Path) -> None:
    """A legacy user whose key the gateway lacks: quarantined, then released once fixed."""
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                    "--quick-gen-key", "new.USER@medical01.legacy.example", "ed25519",
                    "sign,cert", "never"], check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"],
                             capture_output=True, text=True, check=True).stdout
    fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                    "--quick-add-key", fpr, "cv25519", "encr", "never"], check=True,
                   capture_output=True)
    book = world.addresses.read_text("utf-8")

    async def scenario(h: Harness) -> None:
        world.addresses.write_text(book + (
            f"new.USER@medical01.legacy.example,new.user@legacy.mssante.example,Dr New,,{fpr},"
            "cp1252,NEWU01\n"), "utf-8")
        h.gateway.reload()
        await h.send_trust("dr.x@hopital-a.mssante.example", "new.user@legacy.mssante.example",
                           "Bonjour", msgid="<e2e-6@hopital-a.mssante.example>")
        await until(lambda: h.gateway.spool.counts().get("quarantined") == 1)
        entry = h.gateway.spool.list(state="quarantined")[0]
        assert "no_recipient_key" in entry.recipients[0].reason
        # the operator imports the user's key, then releases the message
        pub = subprocess.run(["gpg", "--homedir", str(home), "--armor", "--export", fpr],
                             capture_output=True, check=True).stdout
        subprocess.run(["gpg", "--homedir", str(h.world.gnupg_gateway), "--batch", "--import"],
                       input=pub, check=True, capture_output=True)
        proc = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "gateway", "quarantine", "release", entry.queue_id, "--config",
            str(h.config_path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        h.gateway.wake_translate.notify()
        got = await h.hub.wait_for(1)
        assert got[0].rcpt_tos == ("new.USER@medical01.legacy.example",)
        await asyncio.sleep(0.3)
        # the trace tells the whole story: quarantined, then delivered once released
        steps = [(e.stage, e.record) for e in
                 h.gateway.journal.entries("<e2e-6@hopital-a.mssante.example>")]
        stages = [stage for stage, _ in steps]
        assert stages[0] == "received" and "quarantined" in stages
        assert stages.index("quarantined") < stages.index("delivery")
        held = next(r for stage, r in steps if stage == "quarantined")
        assert held["kind"] == "no_recipient_key" and held["queue_id"] == entry.queue_id
        assert [r["status"] for stage, r in steps if stage == "delivery"] == ["sent"]
    try:
        run(world, tmp_path, scenario)
    finally:
        world.addresses.write_text(book, "utf-8")
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.mark.parametrize(("side", "sender", "rcpt", "client", "code"), [
    ("legacy", "stranger@gmail.example", "dr.x@hopital-a.mssante.example", None, 550),
    ("legacy", ADDR["dupont"], "someone@gmail.example", None, 550),
    ("legacy", ADDR["dupont"], ADDR["martin"], None, 554),
    ("trust", "dr.x@hopital-a.mssante.example", "nobody@legacy.mssante.example",
     "hopital-a-client", 550),
    ("trust", "dr.x@hopital-a.mssante.example", "dr.y@clinique-b.mssante.example",
     "hopital-a-client", 554),
    ("trust", "dr.x@hopital-a.mssante.example", TRUST["dupont"], "rogue-client", 550),
    ("trust", "dr.x@hopital-a.mssante.example", TRUST["dupont"], "clinique-b-client", 550),
])
def test_no_open_relay_and_no_stranger(world: World, tmp_path: Path, side: str, sender: str,
                                       rcpt: str, client: str | None, code: int) -> None:
    async def scenario(h: Harness) -> None:
        port = h.legacy_port if side == "legacy" else h.trust_port
        with pytest.raises((aiosmtplib.SMTPRecipientsRefused,
                            aiosmtplib.SMTPSenderRefused)) as exc:
            await aiosmtplib.send(b"Subject: x\r\n\r\nx\r\n", sender=sender, recipients=[rcpt],
                                  hostname="127.0.0.1", port=port, start_tls=True,
                                  tls_context=h.tls(client), timeout=10)
        err = exc.value
        got = err.recipients[0].code if isinstance(err, aiosmtplib.SMTPRecipientsRefused) \
            else err.code
        assert got == code
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)


def test_trust_listener_requires_a_client_certificate(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        with pytest.raises((aiosmtplib.SMTPException, OSError)):
            await aiosmtplib.send(b"Subject: x\r\n\r\nx\r\n",
                                  sender="dr.x@hopital-a.mssante.example",
                                  recipients=[TRUST["dupont"]], hostname="127.0.0.1",
                                  port=h.trust_port, start_tls=True, tls_context=h.tls(None),
                                  timeout=10)
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)


def test_mdn_requested_by_a_trust_sender_is_answered_after_the_hub_accepted(
        world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["martin"], "Résultats",
                           msgid="<e2e-7@hopital-a.mssante.example>",
                           extra={"Disposition-Notification-To":
                                  "dr.x@hopital-a.mssante.example"})
        await h.hub.wait_for(1)
        mdn = (await h.op_a.wait_for(1))[0]
        msg = parsed(mdn.data)
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "disposition-notification"
        assert b"Original-Message-ID: <e2e-7@hopital-a.mssante.example>" in mdn.data
        assert b"Disposition: automatic-action/MDN-sent-automatically; processed" in mdn.data
        assert "Résultats".encode() not in mdn.data  # headers only, never the body
    run(world, tmp_path, scenario)


def test_no_mdn_when_the_request_is_not_the_return_path(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["martin"], "Bonjour",
                           msgid="<e2e-8@hopital-a.mssante.example>",
                           extra={"Disposition-Notification-To":
                                  "tiers@clinique-b.mssante.example"})
        await h.hub.wait_for(1)
        await until(lambda: h.gateway.spool.counts() == {"delivered": 1})
        assert h.op_a.received == [] and h.op_b.received == []
    run(world, tmp_path, scenario)


def test_an_mdn_for_a_legacy_user_becomes_a_legacy_notice(world: World,
                                                          tmp_path: Path) -> None:
    from gateway.translate import notices

    async def scenario(h: Harness) -> None:
        from datetime import UTC, datetime

        original = (f"From: {TRUST['durand']}\r\nTo: dr.x@hopital-a.mssante.example\r\n"
                    "Message-ID: <orig-9@legacy.mssante.example>\r\nSubject: x\r\n\r\nx").encode()
        mdn = notices.build_mdn(original, notify=TRUST["durand"],
                                final_recipient="dr.x@hopital-a.mssante.example",
                                reporting_ua="mx.hopital-a.mssante.example",
                                now=datetime.now(UTC))
        import aiosmtplib

        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=h.trust_port, start_tls=True,
                                 tls_context=h.tls("hopital-a-client"), timeout=10)
        await client.connect()
        await client.mail("")  # an MDN travels with the null reverse-path
        await client.rcpt(TRUST["durand"])
        await client.data(mdn)
        await client.quit()
        got = (await h.hub.wait_for(1))[0]
        opened = legacy_client(h.world, "durand").open(
            got.data, expected_signer=h.world.fingerprints["gateway"])
        text = mime.leaves(mime.parse(opened.message))[0].data.decode("utf-8")
        assert "Accusé de réception" in text and "<orig-9@legacy.mssante.example>" in text
    run(world, tmp_path, scenario)


def test_translation_failing_for_the_whole_lifetime_goes_to_quarantine(world: World,
                                                                        tmp_path: Path) -> None:
    """A translation that keeps failing transiently (here a crash standing for a bug) is not
    retried for ever: after the retry lifetime an operator gets it in quarantine."""
    class Broken:
        def open(self, raw: bytes, *, expected_signer: str) -> object:
            raise RuntimeError("simulated bug")

        def seal(self, message: bytes, *, recipient: str) -> bytes:
            raise RuntimeError("simulated bug")

    async def main() -> None:
        h = await start(world, tmp_path, overrides={"retry": {"lifetime": 2}})
        try:
            h.gateway.translator.legacy = Broken()
            await h.send_legacy("martin", "dr.x@hopital-a.mssante.example", b"Bonjour",
                                msgid="<e2e-life@medical75.legacy.example>")
            await until(lambda: h.gateway.spool.counts().get("quarantined") == 1, timeout=30)
            entry = h.gateway.spool.list(state="quarantined")[0]
            assert "retried for the whole lifetime" in entry.recipients[0].reason
            assert h.op_a.received == []
        finally:
            await h.stop()
    asyncio.run(main())


def test_a_bounce_from_the_hub_goes_back_to_the_trust_sender_as_a_dsn(world: World,
                                                                      tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from gateway.translate import notices

    async def scenario(h: Harness) -> None:
        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["dupont"], "Bonjour",
                           msgid="<e2e-hub@hopital-a.mssante.example>")
        delivered = (await h.hub.wait_for(1))[0]
        # the hub cannot deliver it after all, and says so to the envelope sender
        dsn = notices.build_dsn(delivered.data, sender=delivered.mail_from, failures=[
            notices.Failure(ADDR["dupont"], "failed", "5.2.2", "mailbox full")],
            reporting_mta="hub.legacy.example", now=datetime.now(UTC))

        async def hub_says(data: bytes, rcpt: str) -> None:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=h.legacy_port, start_tls=True,
                                   tls_context=h.tls(), timeout=30)
            await smtp.connect()
            try:
                await smtp.mail("")  # MAIL FROM:<>
                await smtp.rcpt(rcpt)
                await smtp.data(data)
            finally:
                smtp.close()

        await hub_says(dsn, delivered.mail_from)
        back = (await h.op_a.wait_for(1))[0]
        assert back.mail_from in ("", "<>") and back.rcpt_tos == (delivered.mail_from,)
        report = parsed(back.data)
        assert report.get_content_type() == "multipart/report"
        status = next(p for p in report.walk()
                      if p.get_content_type() == "message/delivery-status")
        text = status.as_string()
        # the address the hospital wrote to, not the legacy one behind it
        assert f"Final-Recipient: rfc822; {TRUST['dupont']}" in text
        assert "Status: 5.2.2" in text and ADDR["dupont"] not in text
        assert report["In-Reply-To"] == "<e2e-hub@hopital-a.mssante.example>"
        # the message's trace names the report passed back, whose trace names the message
        await asyncio.sleep(0.2)
        trace = h.gateway.journal.entries("<e2e-hub@hopital-a.mssante.example>")
        linked = trace[-1].record
        assert trace[-1].stage == "notice" and linked["kind"] == "hub_dsn"
        assert linked["queue_id"] == trace[0].record["queue_id"]
        passed_back = h.gateway.journal.entries(linked["notice"])
        assert [e.stage for e in passed_back] == ["written", "delivery"]
        assert passed_back[0].record["about"] == "<e2e-hub@hopital-a.mssante.example>"
        assert passed_back[0].record["about_queue_id"] == linked["queue_id"]
        assert passed_back[0].record["queue_id"] == linked["notice_queue_id"]
        # a null-sender message that reports on nothing we carried, or is no report: refused
        forged = notices.build_dsn(b"Message-ID: <never-sent@x>\r\n\r\n",
                                   sender="dr.x@hopital-a.mssante.example",
                                   failures=[notices.Failure(ADDR["dupont"], "failed", "5.1.1",
                                                             "")],
                                   reporting_mta="hub.legacy.example", now=datetime.now(UTC))
        for data in (forged, b"Subject: hello\r\n\r\nspam\r\n"):
            with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
                await hub_says(data, "dr.x@hopital-a.mssante.example")
            assert exc.value.code == 554
        await asyncio.sleep(0.5)
        assert len(h.op_a.received) == 1
    run(world, tmp_path, scenario)
