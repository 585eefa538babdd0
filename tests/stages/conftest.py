"""The stages' parts, real: the SQLite spool and journal in tmp_path, the translator built
from the test world, a clock the test moves.  Each stage is built here as the daemon builds
it, and only the stage under test is driven."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.atrest import open_sealer
from gateway.config import Settings
from gateway.crypto.world import USERS, World
from gateway.journal import Journal
from gateway.ops.metrics import Metrics
from gateway.spool import (
    Direction,
    RetryPolicy,
    SqliteSpool,
    State,
    open_journal,
    open_spool,
)
from gateway.stages.common import Inflight, run_in
from gateway.stages.notify import Notices
from gateway.stages.workers import WorkerPool
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Translator
from gateway.wakeup import Wakeup
from tests.conftest import legacy_client

ADDR = {u.key: u.legacy_address for u in USERS}
TRUST = {u.key: u.trust_address for u in USERS}
LIFETIME = 600.0


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Parts:
    """What the daemon gives its stages, and the notices stage they share."""

    world: World
    settings: Settings
    spool: SqliteSpool
    journal: Journal
    translator: Translator
    db: ThreadPoolExecutor
    pool: WorkerPool
    clock: Clock
    metrics: Metrics
    wake_translate: Wakeup
    wake_deliver: Wakeup
    inflight: Inflight = field(default_factory=Inflight)
    notices: Notices = field(init=False)

    def __post_init__(self) -> None:
        self.notices = Notices(spool=self.spool, db=self.db, clock=self.clock,
                               book=lambda: self.translator.book, seal=self.seal,
                               metrics=self.metrics, hostname=self.settings.daemon.hostname,
                               gateway_domain=self.settings.domain,
                               wake_deliver=self.wake_deliver)

    async def seal(self, letter: bytes, recipient: str) -> tuple[bytes, tuple[str, ...]]:
        return await self.pool.run(self.translator.legacy.seal_traced, letter,
                                   recipient=recipient)

    def counts(self) -> dict[str, int]:
        return self.spool.counts()

    def notices_queued(self) -> list[tuple[str, bytes]]:
        """(recipient, bytes) of every notice the gateway wrote, oldest first."""
        out = []
        for entry in self.spool.list(limit=1000):
            if entry.direction == str(Direction.NOTICE):
                _, data = self.spool.show(entry.queue_id)
                out.extend((r.rcpt, data) for r in entry.recipients)
        return out

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return float(value or 0.0)

    async def store(self, direction: Direction, mail_from: str, rcpts: tuple[str, ...],
                    data: bytes, message_id: str = "", state: State = State.RECEIVED) -> str:
        queue_id, _ = await run_in(self.db, self.spool.accept, direction=direction,
                                   mail_from=mail_from, rcpts=rcpts, data=data,
                                   message_id=message_id, now=self.clock(), state=state)
        return queue_id


def stage_settings(world: World, tmp_path: Path, **tables: dict[str, object]) -> Settings:
    """The world's configuration with its state in ``tmp_path`` (``tables`` added)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    base: dict[str, dict[str, object]] = {
        "retry": {"initial": 60, "factor": 1, "max": 60, "delay_warning_after": 300,
                  "lifetime": LIFETIME},
        "workers": {"poll_interval": 0.05, "delivery_timeout": 5, "processes": 0},
        "delivery": {"mx_lookup": False},
    }
    for name, values in tables.items():
        base.setdefault(name, {}).update(values)
    return config.load(world.write_config(tmp_path / "passerelle.toml", state, base))


@pytest.fixture
def parts(world: World, tmp_path: Path) -> Iterator[Parts]:
    settings = stage_settings(world, tmp_path)
    yield from make_parts(world, settings)


def make_parts(world: World, settings: Settings) -> Iterator[Parts]:
    d = settings.daemon
    policy = RetryPolicy(d.retry_initial, d.retry_factor, d.retry_max, d.delay_warning_after,
                         d.lifetime)
    db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool")
    pool = WorkerPool(settings)
    p = Parts(world, settings, open_spool(settings.journal_url, policy=policy,
                                          sealer=open_sealer(settings.keys_file)),
              open_journal(settings.journal_url), build_translator(settings), db, pool,
              Clock(), Metrics(), Wakeup(1), Wakeup(1))
    (settings.state_dir / "spill").mkdir(exist_ok=True)
    try:
        yield p
    finally:
        pool.shutdown()
        db.shutdown(wait=True)


def sealed_letter(world: World, sender: str, to: str, body: bytes, *, msgid: str,
                  signer: str | None = None) -> bytes:
    """What a legacy user's software sends through the hub: a letter sealed for the
    gateway, signed by ``signer`` (the sender by default)."""
    m = EmailMessage()
    m["From"] = ADDR[sender]
    m["To"] = to
    m["Subject"] = "Courrier"
    m["Message-ID"] = msgid
    m.set_content(body, maintype="text", subtype="plain")
    return legacy_client(world, signer or sender).seal(
        m.as_bytes(), recipient=world.fingerprints["gateway"])


async def woken(wake: Wakeup) -> bool:
    """Did a stage give ``wake`` a notice (kept for the next loop that waits)?"""
    return await wake.wait(0.01)


def as_time_passes(parts: Parts, done: Callable[[], bool], step: float = 60.0
                   ) -> Callable[[], bool]:
    """``done``, polled while the clock moves on by a retry interval at each poll: the
    retries of the schedule happen as they do when time passes.  (The clock moved at once
    by the lifetime is a clock jump, which ends no lifetime: tests/hostile/test_clock.py.)"""
    def poll() -> bool:
        parts.clock.now += step
        return done()
    return poll


async def drive_stage(loop: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None],
                inflight: Inflight, done: Callable[[], bool], timeout: float = 60) -> None:
    """Run a stage's loop until ``done``; then stop it as a drain does."""
    task = asyncio.create_task(loop())
    try:
        end = asyncio.get_running_loop().time() + timeout
        while not done():
            assert not task.done(), task
            assert asyncio.get_running_loop().time() < end, "the stage did not get there"
            await asyncio.sleep(0.05)
    finally:
        stop()
        await asyncio.wait_for(task, 10)
        await inflight.wait(10)


def run(coro: object) -> None:
    assert asyncio.iscoroutine(coro)
    asyncio.run(coro)
