"""The translation stage with the real translator: a sealed letter becomes a signed
trust-space message stored per recipient with its trace journaled; each kind of failure moves
the message where it belongs (bounce with a notice, retry, quarantine after the lifetime);
and the worker processes translate what threads would."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

from gateway.crypto.world import USERS, World
from gateway.mail import mime
from gateway.spool import Direction
from gateway.stages.translation import Translation
from tests.conftest import legacy_client
from tests.stages.conftest import (
    ADDR,
    LIFETIME,
    TRUST,
    Parts,
    as_time_passes,
    drive_stage,
    make_parts,
    run,
    sealed_letter,
    stage_settings,
    woken,
)

DR_X = "dr.x@hopital-a.mssante.example"


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def translation(p: Parts) -> Translation:
    d = p.settings.daemon
    return Translation(spool=p.spool, journal=p.journal, db=p.db, pool=p.pool,
                       translator=p.translator, clock=p.clock, policy=p.spool.policy,
                       metrics=p.metrics, notices=p.notices, settings=d, name="test",
                       spill=p.settings.state_dir / "spill", wake_translate=p.wake_translate,
                       wake_deliver=p.wake_deliver, inflight=p.inflight)


async def drive(stage: Translation, done: Callable[[], bool], timeout: float = 60) -> None:
    """Run one translation loop until ``done``; then stop it as a drain does."""
    await drive_stage(lambda: stage.loop(0), stage.stop, stage.inflight, done, timeout)


def test_a_sealed_letter_is_translated_stored_and_journaled(parts: Parts) -> None:
    letter = sealed_letter(parts.world, "dupont", DR_X, "Créatinine 12 µmol/L".encode(
        "mac_roman"), msgid="<tr-1@medical33.legacy.example>")

    async def main() -> None:
        stage = translation(parts)
        await parts.store(Direction.TO_TRUST, ADDR["dupont"], (DR_X,), letter,
                          message_id="<tr-1@medical33.legacy.example>")
        await drive(stage, lambda: parts.counts() == {"translated": 1})
        assert await woken(parts.wake_deliver)
        [work] = parts.spool.lease_deliver("check", now=parts.clock(), duration=60)
        assert work.rcpts == (DR_X,) and work.direction is Direction.TO_TRUST
        assert b"application/pkcs7-signature" in work.data  # signed S/MIME, not the letter
        texts = [part.get_content() for part in parsed(work.data).walk()
                 if part.get_content_type() == "text/plain"]
        assert "Créatinine 12 µmol/L" in texts[0]  # the text as the author wrote it (Mac)
        stages = {e.stage for e in parts.journal.entries("<tr-1@medical33.legacy.example>")}
        assert {"open", "repair"} <= stages
        assert parts.metric("passerelle_messages_total", event="translated",
                            direction="to_trust", reason="ok") == 1
        assert sum(parts.metric("passerelle_legacy_parts_opened_total", tool=tool)
                   for tool in ("gpg", "rnp")) >= 1  # the world's adapter: rnp where it loads
        assert list((parts.settings.state_dir / "spill").iterdir()) == []
    run(main())


def test_a_forgery_is_bounced_and_its_sender_gets_a_sealed_notice(parts: Parts) -> None:
    # Dr Martin's signature inside a message sent with Dr Dupont's envelope
    forged = sealed_letter(parts.world, "dupont", DR_X, b"Ordonnance",
                           msgid="<tr-2@medical33.legacy.example>", signer="martin")

    async def main() -> None:
        await parts.store(Direction.TO_TRUST, ADDR["dupont"], (DR_X,), forged)
        await drive(translation(parts), lambda: parts.counts().get("bounced") == 1)
        [entry] = [e for e in parts.spool.list() if e.direction == "to_trust"]
        assert "wrong_signer" in entry.recipients[0].reason
        [(rcpt, notice)] = parts.notices_queued()
        assert rcpt == ADDR["dupont"]
        opened = legacy_client(parts.world, "dupont").open(
            notice, expected_signer=parts.world.fingerprints["gateway"])
        letter = mime.leaves(mime.parse(opened.message))[0].data.decode("mac_roman")
        # its sender unverified: named by the gateway's reference, nothing of it quoted
        assert "n'a pas été transmis" in letter and entry.queue_id in letter
        assert "avant que son expéditeur ait pu être vérifié" in letter  # said as such
        assert DR_X not in letter and "<tr-2@" not in letter
        assert parts.metric("passerelle_crypto_failures_total", kind="wrong_signer") == 1
    run(main())


class Broken:
    """The legacy crypto failing as a bug would (not a typed error)."""

    def open(self, raw: bytes, *, expected_signer: str) -> object:
        raise RuntimeError("simulated bug")

    def seal_traced(self, message: bytes, *, recipient: str) -> object:
        raise RuntimeError("simulated bug")


def test_a_crash_is_retried_later_then_quarantined_after_the_lifetime(parts: Parts) -> None:
    letter = sealed_letter(parts.world, "martin", DR_X, b"Bonjour",
                           msgid="<tr-3@medical75.legacy.example>")

    async def main() -> None:
        stage = translation(parts)
        parts.translator.legacy = Broken()
        queue_id = await parts.store(Direction.TO_TRUST, ADDR["martin"], (DR_X,), letter)

        def reason() -> str:
            return parts.spool.list()[0].recipients[0].reason

        await drive(stage, lambda: "internal" in reason())
        assert parts.counts() == {"received": 1}  # kept, to be tried again
        assert parts.spool.lease_translate("x", now=parts.clock(), duration=1) == []  # later
        assert parts.metric("passerelle_retries_total", direction="to_trust") == 1
        stage.stopping = False  # failing for the whole lifetime, retried all along
        await drive(stage, as_time_passes(parts, lambda: parts.counts() == {"quarantined": 1}))
        assert parts.clock.now >= LIFETIME
        assert "retried for the whole lifetime" in reason()
        assert parts.spool.list()[0].queue_id == queue_id
        assert parts.notices_queued() == []  # an operator looks, the sender is not told
    run(main())


def test_a_reply_to_a_legacy_user_is_sealed_for_them(parts: Parts) -> None:
    reply = (f"From: {DR_X}\r\nTo: {TRUST['durand']}\r\nMessage-ID: <tr-4@hopital-a>\r\n"
             "Subject: Re\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBien reçu.\r\n"
             ).encode()

    async def main() -> None:
        await parts.store(Direction.TO_LEGACY, DR_X, (TRUST["durand"],), reply)
        await drive(translation(parts), lambda: parts.counts() == {"translated": 1})
        [work] = parts.spool.lease_deliver("check", now=parts.clock(), duration=60)
        opened = legacy_client(parts.world, "durand").open(
            work.data, expected_signer=parts.world.fingerprints["gateway"])
        charset = next(u.charset for u in USERS if u.key == "durand")
        text = mime.leaves(mime.parse(opened.message))[0].data
        assert text == "Bien reçu.\r\n".encode(charset)  # in Dr Durand's software's charset
    run(main())


def test_worker_processes_translate_as_threads_do(world: World, tmp_path: Path) -> None:
    settings = stage_settings(world, tmp_path, workers={"processes": 1})
    letter = sealed_letter(world, "dupont", DR_X, b"Bonjour", msgid="<tr-5@medical33>")

    async def main(p: Parts) -> None:
        assert p.pool.processes
        p.pool.warm()
        await p.store(Direction.TO_TRUST, ADDR["dupont"], (DR_X,), letter)
        # the daemon's own translator is unusable: only a worker process can do it
        p.translator = replace(p.translator, legacy=Broken())
        await drive(translation(p), lambda: p.counts() == {"translated": 1}, timeout=120)
        [work] = p.spool.lease_deliver("check", now=p.clock(), duration=60)
        assert b"Bonjour" in work.data

    for p in make_parts(world, settings):
        run(main(p))
