"""What every stage shares: running blocking calls off the event loop, the tasks in flight,
and reading a message's Message-ID and header block."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar

from gateway.directory.addresses import AddressBook
from gateway.translate.pipeline import header_message_id

T = TypeVar("T")
Clock = Callable[[], float]  # seconds since the epoch (tests move it)
Book = Callable[[], AddressBook]  # the address book in force (SIGHUP replaces it)

HEAD_MAX = 256 * 1024  # a header block longer than this is not read for its Message-ID


async def run_in(pool: Executor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in ``pool`` (spool threads, translation workers), awaited."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))


def message_id_of(data: bytes | bytearray) -> str:
    """The Message-ID of a message's header block ("" when it has none), read as the
    translator reads it (the id its trace is journaled under)."""
    return header_message_id(bytes(data[:HEAD_MAX]))


class Inflight:
    """The pieces of work being handled now (a translation, a delivery): a drain lets them
    finish before the daemon stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float) -> None:
        """Until every piece of work now in flight is over, or ``timeout`` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


class Batched:
    """Calls of ``commit`` with one item each, made together: while one call runs (its
    transaction and fsync, in ``pool``), the items that come wait and go into the next, all
    of them — one transaction for as many as came meanwhile, and none waits for more than
    the call in progress and its own.  Each caller returns only once the call that holds
    its item is over (committed: what depends on it comes after).  A call of several that
    fails is made again one item at a time, so that one item's failure is its own caller's
    alone.  (The intake's :class:`~gateway.stages.intake.GroupCommit` does the same for
    arrivals, with a result for each.)"""

    def __init__(self, pool: Executor, commit: Callable[[list[Any]], object]) -> None:
        self.pool = pool
        self.commit = commit
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # calls made (the tests read it)

    async def __call__(self, item: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all())
        await future

    async def _commit_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await run_in(self.pool, self.commit, [item for item, _ in batch])
                self.commits += 1
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                for item, future in batch:  # one at a time: each its own outcome
                    try:
                        await run_in(self.pool, self.commit, [item])
                        self.commits += 1
                    except Exception as one:
                        _settle(future, one)
                    else:
                        _settle(future, None)
                continue
            for _, future in batch:
                _settle(future, None)


def _settle(future: asyncio.Future[None], outcome: Exception | None) -> None:
    """A waiter told its outcome (unless it went away: its task was cancelled)."""
    if future.done():
        return
    if outcome is not None:
        future.set_exception(outcome)
    else:
        future.set_result(None)
