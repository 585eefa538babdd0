"""The intake stage: an arrival is stored durably before its queue id is given back, the
translation stage is woken, and a null-sender arrival from the hub is a DSN passed back or
refused."""

from __future__ import annotations

import asyncio
import email
import ssl
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import spill as spilled_files
from gateway.crypto.domainlist import DomainListStore
from gateway.errors import ConfigError, RelayDenied
from gateway.smtp.server import Arrival
from gateway.spool import Direction, State
from gateway.stages.intake import Domains, Intake, listeners
from gateway.translate import notices
from gateway.translate.factory import trust_anchors
from tests.stages.conftest import ADDR, TRUST, Parts, run, woken

DR_X = "dr.x@hopital-a.mssante.example"


def intake(p: Parts) -> Intake:
    return Intake(spool=p.spool, db=p.db, clock=p.clock, book=lambda: p.translator.book,
                  metrics=p.metrics, notices=p.notices, hostname="gw.test",
                  wake_translate=p.wake_translate, wake_deliver=p.wake_deliver)


def arrival(side: str, mail_from: str, rcpts: tuple[str, ...], data: bytes | Path
            ) -> Arrival:
    return Arrival(side=side, mail_from=mail_from, rcpt_tos=rcpts, data=data,
                   peer="192.0.2.7", tls="TLSv1.3", client_subject=None)


LETTER = (b"From: jean.DUPONT@medical33.legacy.example\r\nTo: dr.x@hopital-a.mssante.example\r\n"
          b"Message-ID: <in-1@medical33.legacy.example>\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n")


def test_a_legacy_arrival_is_stored_received_and_wakes_translation(parts: Parts) -> None:
    async def main() -> None:
        stage = intake(parts)
        queue_id = await stage.accept(arrival("legacy", ADDR["dupont"], (DR_X,), LETTER))
        assert await woken(parts.wake_translate)
        [entry] = parts.spool.list()
        assert entry.queue_id == queue_id
        assert entry.direction == "to_trust"
        assert entry.message_id == "<in-1@medical33.legacy.example>"
        assert [(r.rcpt, str(r.state)) for r in entry.recipients] == [(DR_X, "received")]
        assert parts.spool.show(queue_id)[1] == LETTER
        assert parts.metric("passerelle_messages_total", event="received",
                            direction="to_trust", reason="ok") == 1
    run(main())


def test_a_trust_arrival_goes_to_legacy_and_a_repeat_is_stored_once(parts: Parts) -> None:
    data = LETTER.replace(b"in-1@medical33", b"in-2@hopital-a")

    async def main() -> None:
        stage = intake(parts)
        await stage.accept(arrival("trust", DR_X, (TRUST["dupont"],), data))
        await stage.accept(arrival("trust", DR_X, (TRUST["dupont"],), data))  # sent again
        assert parts.counts() == {"received": 1}
        assert parts.spool.list()[0].direction == "to_legacy"
        assert parts.metric("passerelle_messages_total", event="received",
                            direction="to_legacy", reason="duplicate") == 1
    run(main())


def test_a_large_arrival_in_a_file_is_stored_whole(parts: Parts, tmp_path: Path) -> None:
    big = tmp_path / "arrival"
    spilled_files.write_bytes(big, LETTER + b"A" * (2 << 20))

    async def main() -> None:
        queue_id = await intake(parts).accept(arrival("legacy", ADDR["dupont"], (DR_X,), big))
        entry, data = parts.spool.show(queue_id)
        assert data == spilled_files.read_bytes(big) and entry.size == len(data)
        assert entry.message_id == "<in-1@medical33.legacy.example>"
    run(main())


def test_a_hub_dsn_about_a_message_we_carried_goes_back_to_its_trust_sender(
        parts: Parts) -> None:
    async def main() -> None:
        # a reply of Dr X's that the gateway carried into the legacy network
        await parts.store(Direction.TO_LEGACY, DR_X, (TRUST["dupont"],), LETTER,
                          message_id="<reply@hopital-a>", state=State.DELIVERED)
        dsn = notices.build_dsn(b"Message-ID: <reply@hopital-a>\r\n\r\n", sender=DR_X,
                                failures=[notices.Failure(ADDR["dupont"], "failed", "5.2.2",
                                                          "mailbox full")],
                                reporting_mta="hub.legacy.example", now=datetime.now(UTC))
        queue_id = await intake(parts).accept(arrival("legacy", "", (DR_X,), dsn))
        assert not await woken(parts.wake_translate)  # nothing to translate
        assert await woken(parts.wake_deliver)
        entry = next(e for e in parts.spool.list() if e.queue_id == queue_id)
        assert entry.direction == "notice"
        assert [(r.rcpt, str(r.state)) for r in entry.recipients] == [(DR_X, "translated")]
        [(rcpt, data)] = parts.notices_queued()
        report = email.message_from_bytes(data)
        assert rcpt == DR_X and report.get_content_type() == "multipart/report"
        text = data.decode()
        # the address Dr X wrote to, not the legacy one behind it
        assert f"Final-Recipient: rfc822; {TRUST['dupont']}" in text
        assert "Status: 5.2.2" in text and ADDR["dupont"] not in text
    run(main())


@pytest.mark.parametrize("data", [
    notices.build_dsn(b"Message-ID: <never-sent@x>\r\n\r\n", sender=DR_X,
                      failures=[notices.Failure(ADDR["dupont"], "failed", "5.1.1", "")],
                      reporting_mta="hub.legacy.example", now=datetime(2026, 1, 1, tzinfo=UTC)),
    b"Subject: hello\r\n\r\nspam\r\n",
], ids=["dsn-about-nothing-we-carried", "not-a-dsn"])
def test_a_null_sender_arrival_that_is_no_dsn_of_ours_is_refused(parts: Parts,
                                                                   data: bytes) -> None:
    async def main() -> None:
        with pytest.raises(RelayDenied):
            await intake(parts).accept(arrival("legacy", "", (DR_X,), data))
        assert parts.counts() == {}
    run(main())


def test_the_listeners_check_tls_as_each_side_needs_and_need_the_server_certificate(
        parts: Parts, tmp_path: Path) -> None:
    anchors = trust_anchors(parts.settings)
    made = listeners(parts.settings, intake(parts), domains=Domains(None), anchors=anchors,
                     directory_alias=None, spill=tmp_path)
    assert [type(m.handler).__name__ for m in made] == ["LegacyHandler", "TrustHandler"]
    assert [m.require_starttls for m in made] == [False, True]  # the trust side: mTLS
    assert made[1].tls is not None and made[1].tls.verify_mode is ssl.CERT_REQUIRED
    bare = replace(parts.settings, trust=replace(parts.settings.trust, server_cert=None))
    with pytest.raises(ConfigError, match="server_cert"):
        listeners(bare, intake(parts), domains=Domains(None), anchors=anchors,
                  directory_alias=None, spill=tmp_path)


def test_a_list_of_domains_that_cannot_be_read_lists_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "liste.xml"
    broken.write_bytes(b"<not a list")
    listing = Domains(DomainListStore(broken)).current()
    assert not listing.entries
    assert listing.generated_at.year == 1970  # as old as can be: readiness fails
    assert not Domains(DomainListStore(tmp_path / "missing.xml")).current().entries


def test_arrivals_meanwhile_share_one_commit_and_each_is_stored_before_its_id(
        parts: Parts) -> None:
    """Group commit: messages arriving while a commit is under way go into the next one
    together; each caller has its queue id only once its own message is in the spool."""
    async def main() -> None:
        stage = intake(parts)
        letters = [LETTER.replace(b"in-1@", f"in-g{i}@".encode()) for i in range(12)]
        ids = await asyncio.gather(*(
            stage.accept(arrival("legacy", ADDR["dupont"], (DR_X,), data)) for data in letters))
        assert len(set(ids)) == 12
        for queue_id, data in zip(ids, letters, strict=True):
            assert parts.spool.show(queue_id)[1] == data
        assert 1 <= stage.commits.commits < 12  # the first alone, the others together
        stored = await stage.accept(arrival("legacy", ADDR["dupont"], (DR_X,), LETTER))
        assert parts.spool.show(stored)[1] == LETTER  # and one alone still goes at once
    run(main())


def test_a_shared_commit_that_fails_is_one_failure_per_message(parts: Parts) -> None:
    """A message the spool cannot take fails alone; those that shared its commit are
    stored."""
    async def main() -> None:
        stage = intake(parts)
        spilled = parts.world.root / "spilled-message"  # received into a file ...
        spilled_files.write_bytes(spilled, LETTER.replace(b"in-1@", b"in-spilled@"))

        async def lose_it() -> None:  # ... gone before the commit reads it
            spilled.unlink()

        good = [LETTER.replace(b"in-1@", f"in-f{i}@".encode()) for i in range(4)]
        results = await asyncio.gather(
            *(stage.accept(arrival("legacy", ADDR["dupont"], (DR_X,), d)) for d in good[:2]),
            stage.accept(arrival("legacy", ADDR["dupont"], (DR_X,), spilled)),
            lose_it(),
            *(stage.accept(arrival("legacy", ADDR["dupont"], (DR_X,), d)) for d in good[2:]),
            return_exceptions=True)
        assert isinstance(results[2], OSError)
        stored = [r for r in results if isinstance(r, str)]
        assert len(stored) == 4
        for queue_id, data in zip(stored, good, strict=True):
            assert parts.spool.show(queue_id)[1] == data
        assert stage.commits.commits == 4  # the shared one failed, then each alone: four
    run(main())
