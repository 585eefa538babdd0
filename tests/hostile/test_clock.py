"""Clock jumps: a wall clock stepped forward or back neither bounces fresh mail nor stalls it.

The gateway runs on an injected wall clock (``Gateway(clock=…)``, the real time plus an
offset the case moves by a day); the monotonic clock is the machine's.  A peer answers 4xx,
so the message is deferred with its next attempt scheduled; then the clock jumps:

* forward a day — past the lifetime (600 s here) and the delay warning (1 h): the message
  must still be deferred, no failure notice or delay warning sent, and delivered once the
  peer accepts;
* back a day — the next attempt, written on the old clock, lies a day ahead on the new one:
  it must still come after the wait it was given (seconds), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import ADDR, TRUST, Harness, until
from tests.hostile.support import OP_A, arrived, letter, run, sealed, states, transaction

DAY = 86400.0


class SteppedClock:
    """The real time, plus an offset the case moves (as `date -s` or NTP would)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def deferred_letter(h: Harness, direction: str, n: str) -> tuple[str, str]:
    """A letter the next hop answers 4xx: (queue id, Message-ID), once it is deferred."""
    if direction == "to_trust":
        h.op_a.behaviour.mode = "tempfail"
        msgid = f"<clock-{n}@medical75.legacy.example>"
        body = letter(ADDR["martin"], OP_A, b"Bonjour", msgid=msgid)
        s = await transaction(h, "legacy", ADDR["martin"], [OP_A],
                              sealed(h.world, "martin", body.as_bytes()))
    else:
        h.hub.behaviour.mode = "tempfail"
        msgid = f"<clock-{n}@hopital-a.mssante.example>"
        raw = letter(OP_A, TRUST["dupont"], "Bonjour", msgid=msgid)
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], raw.as_bytes(),
                              client="hopital-a-client")
    queue_id = s.queue_id
    await until(lambda: states(h, queue_id) == [State.DEFERRED], 20)
    return queue_id, msgid


def attempts(h: Harness, queue_id: str) -> int:
    entry, _ = h.gateway.spool.show(queue_id)
    return max(r.attempts for r in entry.recipients)


@pytest.mark.parametrize("direction", ["to_trust", "to_legacy"])
def test_a_clock_set_forward_a_day_bounces_no_fresh_mail(world: World, tmp_path: Path,
                                                         direction: str) -> None:
    clock = SteppedClock()

    async def scenario(h: Harness) -> None:
        queue_id, msgid = await deferred_letter(h, direction, f"fwd-{direction}")
        sender_side = h.hub if direction == "to_trust" else h.op_a
        before = attempts(h, queue_id)
        clock.offset += DAY  # a day past the lifetime and the delay warning
        await until(lambda: attempts(h, queue_id) >= before + 5, 20)  # retried meanwhile
        assert states(h, queue_id) == [State.DEFERRED]
        entry, _ = h.gateway.spool.show(queue_id)
        assert not any("lifetime" in r.reason for r in entry.recipients)
        assert sender_side.received == [], "a failure notice or a delay warning was sent"
        peer = h.op_a if direction == "to_trust" else h.hub
        peer.behaviour.mode = "accept"
        await arrived(peer, msgid if direction == "to_trust" else None,
                      rcpt=None if direction == "to_trust" else ADDR["dupont"])
        await until(lambda: states(h, queue_id) == [State.DELIVERED], 20)
        assert sender_side.received == []

    run(world, tmp_path, scenario, clock=clock)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_clock_set_back_a_day_stalls_no_mail(world: World, tmp_path: Path, backend: str,
                                               request: pytest.FixtureRequest) -> None:
    clock = SteppedClock()
    overrides = {}
    if backend == "postgresql":
        overrides = {"spool": {"url": request.getfixturevalue("pg_url")}}

    async def scenario(h: Harness) -> None:
        queue_id, msgid = await deferred_letter(h, "to_trust", f"back-{backend}")
        entry, _ = h.gateway.spool.show(queue_id)
        due_in = entry.recipients[0].next_attempt - clock()
        assert 0 < due_in <= 3.5  # the wait it was given: 3 s
        clock.offset -= DAY
        h.op_a.behaviour.mode = "accept"
        started = time.monotonic()
        await arrived(h.op_a, msgid, timeout=20)  # not in a day
        assert time.monotonic() - started < 15
        await until(lambda: states(h, queue_id) == [State.DELIVERED], 10)

    run(world, tmp_path, scenario, clock=clock, retry_initial=3.0, overrides=overrides)


def test_a_clock_set_back_while_the_daemon_was_stopped_stalls_no_mail(
        world: World, tmp_path: Path) -> None:
    """The step happened while no daemon watched: a wait further ahead than any schedule
    sets is due at the next start."""
    async def scenario(h: Harness) -> None:
        queue_id, msgid = await deferred_letter(h, "to_trust", "down")
        gateway = h.gateway
        await gateway.drain(grace=5)
        with gateway.spool._tx() as db:  # what a clock a day ahead wrote
            db.execute("UPDATE recipients SET next_attempt = next_attempt + ? WHERE "
                       "queue_id = ?", (DAY, queue_id))
        from gateway import config
        from gateway.daemon import Gateway

        h.gateway = Gateway(config.load(h.config_path))
        h.op_a.behaviour.mode = "accept"
        await h.gateway.start()
        await arrived(h.op_a, msgid, timeout=20)
        await until(lambda: states(h, queue_id) == [State.DELIVERED], 10)

    run(world, tmp_path, scenario, retry_initial=3.0)
