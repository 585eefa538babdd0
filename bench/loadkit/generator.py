"""The load generator: K persistent STARTTLS connections pushing messages (`push`), and one
measured phase of the benchmark (`run_phase`): throughput, latencies, CPU, memory, spool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from loadkit.measure import busy_cpu, dist, postgres_cpu, proc_cpu
from loadkit.messages import Msg
from loadkit.serve import Fleet, Serve
from loadkit.sink import Sink


@dataclass
class Sent:
    msgid: str
    started: float
    accepted: float | None
    error: str = ""
    via: int = 0  # which of the ports (instances)


@dataclass
class PushResult:
    sent: list[Sent] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0


async def push(msgs: Sequence[Msg], *, port: int | Sequence[int], tls: ssl.SSLContext,
               concurrency: int, rate: float | None = None) -> PushResult:
    """K persistent STARTTLS connections; each takes the next message (at its scheduled time
    when ``rate`` is given: open loop, up to K in flight).  With several ports (instances)
    connection k goes to port k mod len(ports), as a round-robin TCP balancer would."""
    ports = [port] if isinstance(port, int) else list(port)
    result = PushResult(began=time.monotonic())
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(msgs)):
        queue.put_nowait(i)

    async def connect(port: int) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, tls_context=tls,
                                 start_tls=True, timeout=120, local_hostname="bench.example")
        await client.connect()
        return client

    async def worker(k: int) -> None:
        via = k % len(ports)
        client: aiosmtplib.SMTP | None = None
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if rate is not None:
                delay = result.began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            m = msgs[i]
            started = time.monotonic()
            try:
                if client is None:
                    client = await connect(ports[via])
                    started = time.monotonic()
                await client.sendmail(m.sender, [m.rcpt], m.data)
                result.sent.append(Sent(m.msgid, started, time.monotonic(), via=via))
            except (aiosmtplib.SMTPException, OSError) as exc:
                result.sent.append(Sent(m.msgid, started, None, f"{type(exc).__name__}: {exc}",
                                        via))
                if client is not None:
                    client.close()
                client = None
        if client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    result.ended = time.monotonic()
    return result



async def run_phase(name: str, msgs: Sequence[Msg], *, sink: Sink, port: int | Sequence[int],
                    tls: ssl.SSLContext, concurrency: int, rate: float | None = None,
                    gateway: Serve | Fleet | None = None, timeout: float = 600,
                    machine_cpu: bool = False) -> dict[str, Any]:
    """One phase.  ``machine_cpu`` (the several-instances modes) adds, per phase: accepts
    and CPU per instance, PostgreSQL's CPU, the load generator's and sink's, and how many
    cores the whole machine was busy on average."""
    before = gateway.cpu() if gateway is not None else None
    daemon0 = gateway.daemon_cpu() if gateway is not None else 0.0
    # the load generator's and the sink's CPU: on the same cores as the gateway
    own0, sink0 = os.times(), sum(proc_cpu(sink.proc.pid)) if sink.proc is not None else 0.0
    busy0 = busy_cpu()
    if machine_cpu:
        assert isinstance(gateway, Fleet) and sink.proc is not None
        each0 = gateway.cpu_each()
        pg0 = postgres_cpu()
    pushed = await push(msgs, port=port, tls=tls, concurrency=concurrency, rate=rate)
    ok = [s for s in pushed.sent if s.accepted is not None]
    arrived = await sink.wait([s.msgid for s in ok], pushed.began, timeout)
    last = max(arrived.values(), default=pushed.ended)
    span = max(1e-9, last - pushed.began)
    out: dict[str, Any] = {
        "phase": name, "n": len(msgs), "concurrency": concurrency,
        "offered_per_s": round(rate, 1) if rate else None,
        "accepted": len(ok), "refused": len(pushed.sent) - len(ok),
        "errors": sorted({s.error for s in pushed.sent if s.error})[:5],
        "forwarded": len(arrived),
        "seconds": round(span, 2),
        "accepted_per_s": round(len(ok) / max(1e-9, pushed.ended - pushed.began), 1),
        "forwarded_per_s": round(len(arrived) / span, 1),
        "accept_ms": dist([s.accepted - s.started for s in ok if s.accepted]),
        "mean_bytes": round(sum(len(m.data) for m in msgs) / max(1, len(msgs))),
    }
    if gateway is not None:
        await asyncio.sleep(0.2)  # the gateway records the last deliveries
        after = gateway.cpu()
        assert before is not None
        cpu = {k: (after[k] - before[k]) / max(1, len(arrived)) for k in after}
        cpu["total"] = sum(cpu.values())
        out["forward_ms"] = dist([arrived[s.msgid] - s.accepted for s in ok
                                  if s.msgid in arrived and s.accepted])
        out["end_to_end_ms"] = dist([arrived[s.msgid] - s.started for s in ok
                                     if s.msgid in arrived])
        out["cpu_ms_per_msg"] = {k: round(v * 1000, 2) for k, v in cpu.items()}
        daemon = (gateway.daemon_cpu() - daemon0) / max(1, len(arrived))
        out["gateway_cpu_ms_per_msg"] = {"daemon": round(daemon * 1000, 2),
                                         "workers": round((cpu["gateway"] - daemon) * 1000, 2)}
        own1, wall = os.times(), time.monotonic() - pushed.began
        if sink.proc is not None:
            out["loadgen_sink_cpu_ms_per_msg"] = round(
                (own1.user + own1.system - own0.user - own0.system
                 + sum(proc_cpu(sink.proc.pid)) - sink0) / max(1, len(arrived)) * 1000, 2)
        out["cores_busy"] = round((busy_cpu() - busy0) / wall, 2)
        out["rss_peak_mb"] = round(gateway.rss_peak() / 2**20, 1)
        out["spool_mb"] = round(gateway.spool_bytes() / 2**20, 2)
        if machine_cpu:
            assert isinstance(gateway, Fleet) and sink.proc is not None
            busy1 = busy_cpu()
            per = max(1, len(arrived))
            out["instances"] = len(gateway.members)
            out["accepted_by_instance"] = [sum(1 for s in ok if s.via == k)
                                           for k in range(len(gateway.members))]
            out["cpu_ms_per_msg_by_instance"] = [
                round((b - a) / per * 1000, 2) for a, b in zip(each0, gateway.cpu_each(),
                                                               strict=True)]
            out["postgres_cpu_ms_per_msg"] = round((postgres_cpu() - pg0) / per * 1000, 2)
            # what else ran meanwhile (other users of the machine, the kernel): busy minus
            # the gateways, their gpg, PostgreSQL, the load generator and the sink
            ours = (out["cpu_ms_per_msg"]["total"] + out["postgres_cpu_ms_per_msg"]
                    + out["loadgen_sink_cpu_ms_per_msg"]) * per / 1000
            out["other_cores"] = round((busy1 - busy0 - ours) / wall, 2)
    return out
