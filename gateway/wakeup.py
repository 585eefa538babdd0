"""Waking the daemon's worker loops when work arrives: one loop per piece of work, none lost.

Each translate loop leases a message from the spool and, when it finds none, waits for a
notice (or the poll interval).  An ``asyncio.Event`` woke every waiting loop for each message
accepted: all but one then asked the spool for nothing (a write transaction each), and a
notice given while a loop was between its lease and its wait was cleared by that loop and
lost until the next poll.  Here each notice wakes one waiting loop, and a notice given while
no loop waits is kept for the next loop that would wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Wakeup:
    """Notices of work for ``loops`` worker loops."""

    def __init__(self, loops: int) -> None:
        self._loops = max(1, loops)
        self._kept = 0  # notices given while no loop waited (at most one per loop)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def notify(self, n: int = 1) -> None:
        """``n`` pieces of work arrived: wake that many waiting loops; the rest of the
        notices are kept for loops that will wait (a loop busy now leases again anyway once
        done, so more than one per loop would only make it ask the spool for nothing)."""
        while n and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1
        self._kept = min(self._loops, self._kept + n)

    def notify_all(self) -> None:
        """Every loop looks once more (the daemon is stopping, or the spool changed)."""
        self.notify(len(self._waiters) + self._loops)

    async def wait(self, timeout: float) -> bool:
        """Until a notice or ``timeout`` seconds; True when a notice came."""
        if self._kept:
            self._kept -= 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):  # not there when a notice took it
                self._waiters.remove(waiter)
