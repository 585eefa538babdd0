"""The notices stage: bounces and delay notices reach the sender in their own network and
format, MDNs go only where asked, and nothing is ever written about a notice."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from gateway.mail import mime
from gateway.spool import Direction
from gateway.translate import notices
from tests.conftest import legacy_client
from tests.stages.conftest import ADDR, TRUST, Parts, run, woken

DR_X = "dr.x@hopital-a.mssante.example"
ORIGINAL = (b"From: dr.x@hopital-a.mssante.example\r\nMessage-ID: <orig-1@hopital-a>\r\n"
            b"Date: Mon, 07 Dec 2026 08:00:00 +0100\r\nSubject: Mme P\xc3\xa9lissier\r\n\r\n")


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_a_trust_senders_bounce_is_a_dsn_queued_for_delivery(parts: Parts) -> None:
    async def main() -> None:
        await parts.notices.notify(Direction.TO_LEGACY, DR_X, ORIGINAL,
                                   [notices.Failure(TRUST["dupont"], "failed", "5.1.1",
                                                    "no such user")])
        assert await woken(parts.wake_deliver)
        [(rcpt, data)] = parts.notices_queued()
        assert rcpt == DR_X
        [entry] = parts.spool.list()
        assert entry.direction == "notice" and entry.mail_from_domain == ""
        assert [str(r.state) for r in entry.recipients] == ["translated"]  # sent as it is
        report = parsed(data)
        assert report.get_content_type() == "multipart/report"
        assert report["In-Reply-To"] == "<orig-1@hopital-a>"
        text = data.decode("utf-8", "replace")
        assert f"Final-Recipient: rfc822; {TRUST['dupont']}" in text and "5.1.1" in text
    run(main())


def test_a_legacy_senders_bounce_is_a_french_letter_sealed_for_them(parts: Parts) -> None:
    async def main() -> None:
        await parts.notices.notify(Direction.TO_TRUST, ADDR["petit"], ORIGINAL,
                                   [notices.Failure("nobody@clinique-b.mssante.example",
                                                    "failed", "5.1.1", "no such user")])
        [(rcpt, data)] = parts.notices_queued()
        assert rcpt == ADDR["petit"]
        assert b"pas pu" not in data  # sealed: nothing readable on the way
        opened = legacy_client(parts.world, "petit").open(
            data, expected_signer=parts.world.fingerprints["gateway"])
        content = mime.leaves(mime.parse(opened.message))[0].data.decode("cp1252")
        assert "n'a pas pu être remis" in content and "nobody@clinique-b" in content
        assert sum(parts.metric("passerelle_legacy_parts_sealed_total", tool=tool)
                   for tool in ("gpg", "rnp")) == 1  # the world's adapter: rnp where it loads
    run(main())


def test_a_delay_notice_says_the_message_is_still_on_its_way(parts: Parts) -> None:
    async def main() -> None:
        await parts.notices.notify(Direction.TO_LEGACY, DR_X, ORIGINAL,
                                   [notices.Failure(TRUST["dupont"], "delayed", "4.4.1",
                                                    "no answer")], delayed=True)
        [(_, data)] = parts.notices_queued()
        assert "Action: delayed" in data.decode("utf-8", "replace")
    run(main())


def test_no_notice_about_a_notice_nor_to_a_null_or_unknown_sender(parts: Parts) -> None:
    failure = [notices.Failure(DR_X, "failed", "5.1.1", "no such user")]

    async def main() -> None:
        await parts.notices.notify(Direction.NOTICE, DR_X, ORIGINAL, failure)
        await parts.notices.notify(Direction.TO_LEGACY, "", ORIGINAL, failure)
        # a legacy sender the address book no longer knows: logged, the original untouched
        await parts.notices.notify(Direction.TO_TRUST, "gone@medical00.legacy.example",
                                   ORIGINAL, failure)
        assert parts.notices_queued() == []
        assert not await woken(parts.wake_deliver)
    run(main())


def test_an_mdn_goes_to_the_return_path_only_when_asked(parts: Parts) -> None:
    asked = ORIGINAL.replace(b"\r\n\r\n", b"\r\nDisposition-Notification-To: " +
                             DR_X.encode() + b"\r\n\r\n")

    async def main() -> None:
        plain = await parts.store(Direction.TO_LEGACY, DR_X, (TRUST["dupont"],), ORIGINAL)
        await parts.notices.mdn(plain, DR_X, [TRUST["dupont"]])
        assert parts.notices_queued() == []  # not asked for
        wants = await parts.store(Direction.TO_LEGACY, DR_X, (TRUST["durand"],), asked)
        await parts.notices.mdn(wants, "someone.else@hopital-a.mssante.example",
                                [TRUST["durand"]])
        assert parts.notices_queued() == []  # asked, but not by the Return-Path
        await parts.notices.mdn(wants, DR_X, [TRUST["durand"]], error="900")
        [(rcpt, data)] = parts.notices_queued()
        assert rcpt == DR_X
        report = parsed(data)
        assert report.get_param("report-type") == "disposition-notification"
        assert "<orig-1@hopital-a>" in data.decode("utf-8", "replace")
        assert await woken(parts.wake_deliver)
    run(main())


def test_the_original_a_notice_quotes_comes_from_the_spool_or_is_empty(parts: Parts) -> None:
    async def main() -> None:
        queue_id = await parts.store(Direction.TO_LEGACY, DR_X, (TRUST["dupont"],),
                                     ORIGINAL + b"Le corps du message.\r\n")
        head = await parts.notices.original(queue_id)
        assert head.startswith(ORIGINAL[:40])
        assert await parts.notices.original("NOSUCHQUEUEID") == b""
    run(main())
