"""The worker loops' wake-up: one loop per notice, no notice lost, no waiter left behind."""

from __future__ import annotations

import asyncio

from gateway.wakeup import Wakeup


def test_a_notice_wakes_one_waiting_loop_not_all() -> None:
    async def main() -> list[bool]:
        wake = Wakeup(4)
        waits = [asyncio.create_task(wake.wait(5)) for _ in range(3)]
        await asyncio.sleep(0)  # all three wait
        wake.notify()
        for _ in range(5):  # the woken loop runs; the others would have by now too
            await asyncio.sleep(0)
        assert sum(w.done() for w in waits) == 1
        wake.notify(2)
        return [await w for w in waits]

    assert asyncio.run(main()) == [True, True, True]


def test_a_notice_given_while_no_loop_waits_is_kept_for_the_next() -> None:
    """A loop between its lease (nothing found) and its wait must not miss the work that
    arrived meanwhile: it would sit until the poll interval."""
    async def main() -> tuple[bool, bool]:
        wake = Wakeup(2)
        wake.notify()  # the work arrives while the loop is still leasing
        first = await asyncio.wait_for(wake.wait(30), 1)
        second = await wake.wait(0.01)  # nothing more kept
        return first, second

    assert asyncio.run(main()) == (True, False)


def test_kept_notices_are_at_most_one_per_loop() -> None:
    async def main() -> list[bool]:
        wake = Wakeup(2)
        wake.notify(50)  # a burst while every loop was busy
        return [await wake.wait(0.01) for _ in range(3)]

    assert asyncio.run(main()) == [True, True, False]


def test_waits_that_time_out_leave_nothing_behind() -> None:
    async def main() -> int:
        wake = Wakeup(1)
        for _ in range(20):
            assert await wake.wait(0.001) is False
        return len(wake._waiters)

    assert asyncio.run(main()) == 0


def test_notify_all_wakes_every_waiting_loop() -> None:
    async def main() -> list[bool]:
        wake = Wakeup(3)
        waits = [asyncio.create_task(wake.wait(30)) for _ in range(3)]
        await asyncio.sleep(0)
        wake.notify_all()
        return list(await asyncio.wait_for(asyncio.gather(*waits), 1))

    assert asyncio.run(main()) == [True, True, True]
