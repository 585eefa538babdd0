"""Two `passerelle serve` processes on one PostgreSQL spool; one is killed half-way."""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
import subprocess
import sys
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from gateway.sim import SimTrustOperator
from tests.conftest import QUIET
from tests.daemon.harness import ADDR
from tests.daemon.test_crash import Serve, free_port, sealed, serve_tables

N = 400


def config(world: World, state: Path, url: str, op_port: int) -> tuple[Path, int]:
    state.mkdir()
    port = free_port()
    tables = serve_tables(port, {"hopital-a.mssante.example": f"127.0.0.1:{op_port}"},
                          delivery_timeout=2, lease=3)
    tables["spool"] = {"url": url}
    return world.write_config(state / "passerelle.toml", state, tables), port


@QUIET
@pytest.mark.slow
def test_two_instances_one_killed_deliver_everything_once(world: World, tmp_path: Path,
                                                         pg_url: str) -> None:
    messages = [sealed(world, n) for n in range(N)]

    async def main() -> None:
        op = SimTrustOperator(cert=world.cert("hopital-a-server"),
                              key=world.key("hopital-a-server"), anchors=[world.ca_cert])
        await op.start()
        cfg_a, port_a = config(world, tmp_path / "a", pg_url, op.port)
        cfg_b, port_b = config(world, tmp_path / "b", pg_url, op.port)
        a, b = Serve(cfg_a), Serve(cfg_b)
        await a.start()
        await b.start()
        tls = ssl.create_default_context(cafile=str(world.ca_cert))
        accepted: set[int] = set()
        ports = {port_a: True, port_b: True}  # what a load balancer knows: who is up

        async def sender(indices: list[int], first: int) -> None:
            for n in indices:
                port = first
                while True:
                    if not ports[port]:
                        port = port_b
                    try:
                        await aiosmtplib.send(messages[n], sender=ADDR["durand"],
                                              recipients=["dr.x@hopital-a.mssante.example"],
                                              hostname="127.0.0.1", port=port, start_tls=True,
                                              tls_context=tls, timeout=10)
                        accepted.add(n)
                        break
                    except (aiosmtplib.SMTPException, OSError):
                        await asyncio.sleep(0.1)  # down: the balancer sends to the other one

        senders = [asyncio.create_task(sender(list(range(k, N, 8)), (port_a, port_b)[k % 2]))
                   for k in range(8)]
        while len(accepted) < N // 2:
            await asyncio.sleep(0.01)
        a.kill9()
        ports[port_a] = False
        await asyncio.gather(*senders)
        assert accepted == set(range(N))
        try:
            await op.wait_for(N, timeout=180)
            await asyncio.sleep(1.0)  # any late duplicate would show up here
        finally:
            b.stop()
            await op.stop()
        ids = collections.Counter(op.message_ids())
        assert set(ids) == {f"<crash-{n}@medical13.legacy.example>" for n in range(N)}
        twice = [mid for mid, c in ids.items() if c > 1]
        assert len(twice) <= 2  # only what SMTP cannot rule out, and flagged
        for mid in twice:
            copies = [r.data for r in op.received if mid.encode() in r.data]
            assert any(c.startswith(b"X-Passerelle-Possible-Duplicate: ") for c in copies[1:])
        verify = subprocess.run([sys.executable, "-m", "gateway", "trace", "verify",
                                 "--config", str(cfg_b)], capture_output=True, text=True,
                                check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        queue = subprocess.run([sys.executable, "-m", "gateway", "queue", "summary", "--json",
                                "--all", "--config", str(cfg_a)], capture_output=True,
                               text=True, check=False)
        assert queue.returncode == 0, queue.stderr
        # either box sees the shared queue: every recipient delivered
        assert json.loads(queue.stdout)["by_state"] == {"delivered": N}

    asyncio.run(main())
