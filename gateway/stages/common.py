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
