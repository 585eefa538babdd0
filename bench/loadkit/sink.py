"""The sink: a simulated trust operator and legacy hub in their own process (``bench/load.py
--sink WORLD_JSON``), which print the CLOCK_MONOTONIC arrival time of every message, and
`Sink`, this process's handle on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.crypto.world import World
from gateway.sim import Received, SimLegacyHub, SimTrustOperator
from loadkit import ROOT

_MSGID = re.compile(rb"^message-id:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)


def _announce(side: str, item: Received) -> None:
    head = item.data[:8192].split(b"\r\n\r\n", 1)[0]
    m = _MSGID.search(head)
    msgid = m.group(1).decode("ascii", "replace").strip() if m else "-"
    print(f"R {time.monotonic():.6f} {side} {len(item.data)} {msgid}", flush=True)


class _Operator(SimTrustOperator):
    async def _record(self, item: Received) -> None:  # keep nothing, say when
        _announce("trust", item)


class _Hub(SimLegacyHub):
    async def _record(self, item: Received) -> None:
        _announce("legacy", item)


async def sink_main(world_json: Path) -> None:
    import logging

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # client certificates: on purpose
    world = World.load(world_json)
    op = _Operator(cert=world.cert("hopital-a-server"), key=world.key("hopital-a-server"),
                   anchors=[world.ca_cert])
    hub = _Hub(cert=world.cert("gateway-server"), key=world.key("gateway-server"))
    await op.start()
    await hub.start()
    print(json.dumps({"trust": op.port, "legacy": hub.port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await op.stop()
    await hub.stop()


class Sink:
    def __init__(self, world: World) -> None:
        self.world = world
        self.arrivals: dict[str, list[float]] = {}
        self.sizes: dict[str, int] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "load.py"), "--sink",
            str(self.world.root / "world.json"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        assert self.proc.stdout is not None
        self.ports = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 60))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            parts = line.decode().split(" ", 4)
            if parts[0] == "R":
                msgid = parts[4].strip()
                self.arrivals.setdefault(msgid, []).append(float(parts[1]))
                self.sizes[msgid] = int(parts[3])
                self._changed.set()

    def first_after(self, msgid: str, since: float) -> float | None:
        return next((t for t in self.arrivals.get(msgid, ()) if t >= since), None)

    async def wait(self, msgids: Sequence[str], since: float, timeout: float
                   ) -> dict[str, float]:
        end = time.monotonic() + timeout
        while True:
            got = {m: t for m in msgids if (t := self.first_after(m, since)) is not None}
            if len(got) == len(msgids) or time.monotonic() > end:
                return got
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, end - time.monotonic()))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
        if self._reader is not None:
            self._reader.cancel()
