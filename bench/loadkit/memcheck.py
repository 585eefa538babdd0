"""The memory check: a fresh gateway, one warm-up message, then one large legacy message:
the peak RSS growth of the daemon and its translation workers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from gateway.crypto.world import World
from loadkit.generator import run_phase
from loadkit.measure import proc_mem, tree_mem
from loadkit.messages import hprim_texts, legacy_plain, seal_legacy
from loadkit.serve import Serve
from loadkit.sink import Sink
from loadkit.world import client_tls


async def memory_check(world: World, work: Path, sink: Sink, *, big_bytes: int,
                       workers: int, spool_url: str = "", processes: int = 0
                       ) -> dict[str, Any]:
    hprims = hprim_texts()
    per = max(1, int(big_bytes / 1.37 / 3))
    attachments = [(f"radio-{k}.jpg.bin", os.urandom(per)) for k in range(3)]
    warm = seal_legacy(world, [legacy_plain(0, "memwarm", hprims)], threads=1)
    big = seal_legacy(world, [legacy_plain(0, "membig", hprims, attachments)], threads=1)
    gateway = Serve(world, work / "state-mem", sink.ports, workers=workers,
                    spool_url=spool_url, processes=processes)
    await gateway.start()
    try:
        tls = client_tls(world, None)
        await run_phase("warm", warm, sink=sink, port=gateway.legacy_port, tls=tls,
                        concurrency=1, timeout=60)
        await asyncio.sleep(0.5)
        before = tree_mem(gateway.pid)  # the daemon and its translation workers
        daemon_before = proc_mem(gateway.pid)
        t0 = time.monotonic()
        phase = await run_phase("big", big, sink=sink, port=gateway.legacy_port, tls=tls,
                                concurrency=1, timeout=300, gateway=gateway)
        after = tree_mem(gateway.pid)
        daemon_after = proc_mem(gateway.pid)
    finally:
        gateway.stop()
    growth = after["VmHWM"] - before["VmRSS"]
    return {"message_bytes": len(big[0].data),
            "forwarded_bytes": sink.sizes.get(big[0].msgid, 0),
            "forwarded": phase["forwarded"] == 1,
            "seconds": round(time.monotonic() - t0, 2),
            "rss_before_mb": round(before["VmRSS"] / 2**20, 1),
            "hwm_before_mb": round(before["VmHWM"] / 2**20, 1),
            "hwm_after_mb": round(after["VmHWM"] / 2**20, 1),
            "growth_mb": round(growth / 2**20, 1),
            "daemon_growth_mb": round(
                (daemon_after["VmHWM"] - daemon_before["VmRSS"]) / 2**20, 1),
            "workers_growth_mb": round(
                (after["VmHWM"] - daemon_after["VmHWM"]
                 - before["VmRSS"] + daemon_before["VmRSS"]) / 2**20, 1),
            "growth_x_message": round(growth / len(big[0].data), 2)}
