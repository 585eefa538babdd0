#!/usr/bin/env python3
"""Load benchmark: a real `passerelle serve` under load, against its floors, in one run.

Three processes: this one (world, messages, load generator, report), the gateway
(`python -m gateway serve`: SQLite spool, real TLS, real gpg) and a sink (this file with
``--sink``: a simulated trust operator and a simulated legacy hub, real SMTP + TLS, which
print the arrival time of every message).  Times are CLOCK_MONOTONIC, shared by processes.

Phases, in order (the gateway's once its translation worker processes are ready):
  1. transport floor: the same messages from the load generator straight to the sink;
  2. legacy → trust at full load: N sealed legacy messages (20 KB letters and HPRIM reports,
     signed and encrypted with real gpg by mapped users) over K STARTTLS connections;
  3. trust → legacy at full load: S/MIME-signed messages (letters, CR-BIO in IHE_XDM.ZIP) from
     the simulated operator, with its client certificate, into the trust listener;
  4. legacy → trust at half the rate measured in 2 (paced), for latency at half load;
  5. crypto floor: the gateway's own classes in a tight loop, as many threads as the gateway
     has translation workers: open (gpg decrypt+verify) + S/MIME sign (and self-check) per
     legacy message; S/MIME verify + seal (gpg sign+encrypt) per trust message;
     physical floor: the crypto one message needs, in this process with `cryptography`; the
     gateway's CPU per message is given as a multiple of it;
  6. memory: a fresh gateway, one message of --big-mb MB (attachments): peak RSS growth.

With ``--spool-url postgresql://…`` the gateway uses a PostgreSQL spool (a fresh schema of
that database, dropped at the end) and ``--instances N`` starts N gateways on it, the K
connections spread round-robin; ``--scaleout`` runs only legacy → trust at full load, for
1 instance on SQLite, 1 on PostgreSQL and N on PostgreSQL.

The parts are in `bench/loadkit/` (world, messages, sink, gateway under test, load generator,
floors, memory check, measurements, report), each readable on its own; this file runs them in
order and prints the table.

Usage: python bench/load.py [--n 1000] [--concurrency 8] [--workers 4] [--json out.json]
       python bench/load.py --scaleout --spool-url postgresql://… [--n 600] [--instances 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadkit.floors import against_physical_floor, crypto_floor, physical_floor  # noqa: E402
from loadkit.generator import run_phase  # noqa: E402
from loadkit.measure import machine  # noqa: E402
from loadkit.memcheck import memory_check  # noqa: E402
from loadkit.messages import (  # noqa: E402
    hprim_texts,
    legacy_plain,
    mix,
    seal_legacy,
    trust_messages,
    xdm_packages,
)
from loadkit.report import table, table_scaleout  # noqa: E402
from loadkit.serve import Fleet, PgSchemas, Spy  # noqa: E402
from loadkit.sink import Sink, sink_main  # noqa: E402
from loadkit.world import client_tls, operator_identity, stop_agents  # noqa: E402

from gateway import config  # noqa: E402
from gateway.crypto.world import build_world  # noqa: E402
from gateway.translate.factory import resolve_adapter  # noqa: E402

# -- the run -------------------------------------------------------------------------------

async def run(args: argparse.Namespace, work: Path, log: Callable[[str], None]
              ) -> dict[str, Any]:
    if args.scaleout:
        return await run_scaleout(args, work, log)
    t_start = time.monotonic()
    schemas = PgSchemas(args.spool_url) if args.spool_url else None
    several = schemas is not None or args.instances > 1
    world = build_world(work / "world")
    log(f"world built in {time.monotonic() - t_start:.1f} s")
    hprims = hprim_texts()
    n, n_rev, n_half = args.n, args.n_reverse, max(1, args.n // 2)
    t0 = time.monotonic()
    legacy = seal_legacy(world, [legacy_plain(i, "l2t", hprims) for i in range(n)])
    half = seal_legacy(world, [legacy_plain(i, "half", hprims) for i in range(n_half)])
    identity = operator_identity(world, work / "op")
    packages = xdm_packages(world, hprims)
    trust = trust_messages(world, n_rev, "t2l", identity, packages)
    log(f"{n + n_half} legacy messages sealed, {n_rev} trust messages signed "
        f"in {time.monotonic() - t0:.1f} s")
    sink = Sink(world)
    await sink.start()
    report: dict[str, Any] = {
        "machine": machine(), "n": n, "n_reverse": n_rev, "concurrency": args.concurrency,
        "gateway_workers": args.workers, "legacy_adapter": args.legacy_adapter,
        "message_mix": {"legacy": mix(legacy), "trust": mix(trust)},
    }
    if schemas is not None:
        report["machine"]["postgresql"] = schemas.server_version()
        report["spool"] = "postgresql"
        report["instances"] = args.instances
    try:
        gw_client = client_tls(world, "gateway-client")
        report["transport_floor"] = {
            "legacy_to_trust": await run_phase(
                "transport legacy→trust", legacy, sink=sink, port=sink.ports["trust"],
                tls=gw_client, concurrency=args.concurrency),
            "trust_to_legacy": await run_phase(
                "transport trust→legacy", trust, sink=sink, port=sink.ports["legacy"],
                tls=client_tls(world, None), concurrency=args.concurrency),
        }
        log("transport floor done")
        gateway = Fleet(world, work / "state", sink.ports, workers=args.workers,
                        instances=args.instances, processes=args.processes,
                        adapter=args.legacy_adapter,
                        spool_url=schemas.new("main") if schemas is not None else "")
        await gateway.start()
        report["gateway_start"] = gateway.startup()
        # "auto" (the gateway's default) as the gateway resolves it: rnp where librnp loads
        report["legacy_adapter_resolved"] = resolve_adapter(
            config.load(gateway.members[0].cfg).legacy)[0]
        log(_started(report["gateway_start"]))
        try:
            spy = Spy(gateway.pid, work / "profile-l2t.txt") if args.profile else None
            l2t = await run_phase("gateway legacy→trust", legacy, sink=sink,
                                  port=gateway.legacy_ports, tls=client_tls(world, None),
                                  concurrency=args.concurrency, gateway=gateway,
                                  machine_cpu=several)
            if spy is not None:
                report["profile_legacy_to_trust"] = spy.stop()
            log(f"legacy→trust: {l2t['forwarded_per_s']} msg/s")
            t2l = await run_phase("gateway trust→legacy", trust, sink=sink,
                                  port=gateway.trust_ports,
                                  tls=client_tls(world, "hopital-a-client"),
                                  concurrency=args.concurrency, gateway=gateway,
                                  machine_cpu=several)
            log(f"trust→legacy: {t2l['forwarded_per_s']} msg/s")
            rate = max(1.0, l2t["forwarded_per_s"] / 2)
            halfload = await run_phase("gateway legacy→trust, half load", half, sink=sink,
                                       port=gateway.legacy_ports, tls=client_tls(world, None),
                                       concurrency=args.concurrency, rate=rate,
                                       gateway=gateway, machine_cpu=several)
            log(f"half load: p99 accept→forwarded {halfload['forward_ms']['p99']} ms")
        finally:
            gateway.stop()
        report["gateway"] = {"legacy_to_trust": l2t, "trust_to_legacy": t2l,
                             "legacy_to_trust_half_load": halfload,
                             "spool_mb_end": round(gateway.spool_bytes() / 2**20, 2)}
        report["crypto_floor"] = await asyncio.get_running_loop().run_in_executor(
            None, crypto_floor, world, legacy, trust, args.workers, gateway.members[0].cfg)
        log("crypto floor done")
        report["physical_floor"] = floor = physical_floor(world)
        log("physical floor done")
        for phase, d in ((l2t, "legacy_to_trust"), (t2l, "trust_to_legacy"),
                         (halfload, "legacy_to_trust")):
            against_physical_floor(phase, floor[d]["ms_per_msg"])
        report["ratios"] = {
            d: {"of_crypto_floor": round(report["gateway"][d]["forwarded_per_s"]
                                         / report["crypto_floor"][d]["per_s"], 3),
                "of_transport_floor": round(report["gateway"][d]["forwarded_per_s"]
                                            / report["transport_floor"][d]["forwarded_per_s"],
                                            3),
                "cpu_x_physical_floor": report["gateway"][d]["cpu_x_physical_floor"]["total"]}
            for d in ("legacy_to_trust", "trust_to_legacy")}
        if args.big_mb > 0:
            report["memory"] = await memory_check(
                world, work, sink, big_bytes=int(args.big_mb * 2**20), workers=args.workers,
                spool_url=schemas.new("mem") if schemas is not None else "",
                processes=args.processes)
            log("memory check done")
    finally:
        await sink.stop()
        stop_agents(world)
        if schemas is not None:
            schemas.drop_all()
    report["bench_seconds"] = round(time.monotonic() - t_start, 1)
    return report



SCALEOUT = (("sqlite_1", "1 × SQLite", 1, False), ("postgresql_1", "1 × PostgreSQL", 1, True))


async def run_scaleout(args: argparse.Namespace, work: Path, log: Callable[[str], None]
                       ) -> dict[str, Any]:
    """Legacy → trust at full load, the same N messages, on fresh spools: one instance on
    SQLite, one on PostgreSQL, ``--instances`` on one PostgreSQL database (K connections
    spread round-robin); the transport floor first; no other phase."""
    t_start = time.monotonic()
    schemas = PgSchemas(args.spool_url)
    world = build_world(work / "world")
    log(f"world built in {time.monotonic() - t_start:.1f} s")
    t0 = time.monotonic()
    legacy = seal_legacy(world, [legacy_plain(i, "l2t", hprim_texts()) for i in range(args.n)])
    log(f"{args.n} legacy messages sealed in {time.monotonic() - t0:.1f} s")
    sink = Sink(world)
    await sink.start()
    report: dict[str, Any] = {
        "machine": {**machine(), "postgresql": schemas.server_version(),
                    "loadavg_before": os.getloadavg()[0]},
        "mode": "scaleout", "schema_tag": schemas.tag, "n": args.n, "concurrency": args.concurrency,
        "gateway_workers": args.workers, "message_mix": {"legacy": mix(legacy)},
    }
    configs = [*SCALEOUT, (f"postgresql_{args.instances}",
                           f"{args.instances} × PostgreSQL", args.instances, True)]
    try:
        report["transport_floor"] = {"legacy_to_trust": await run_phase(
            "transport legacy→trust", legacy, sink=sink, port=sink.ports["trust"],
            tls=client_tls(world, "gateway-client"), concurrency=args.concurrency)}
        log("transport floor done")
        report["scaleout"] = {}
        for key, label, instances, pg in configs:
            gateway = Fleet(world, work / f"state-{key}", sink.ports, workers=args.workers,
                            instances=instances, processes=args.processes,
                            adapter=args.legacy_adapter,
                            spool_url=schemas.new(key) if pg else "")
            await gateway.start()
            report.setdefault("gateway_start", {})[key] = gateway.startup()
            try:
                phase = await run_phase(f"legacy→trust {label}", legacy, sink=sink,
                                        port=gateway.legacy_ports, tls=client_tls(world, None),
                                        concurrency=args.concurrency, gateway=gateway,
                                        machine_cpu=True)
            finally:
                gateway.stop()
            phase["spool"] = "postgresql" if pg else "sqlite"
            report["scaleout"][key] = phase
            log(f"{label}: {phase['forwarded_per_s']} msg/s, "
                f"p99 accept→forwarded {phase['forward_ms']['p99']} ms, "
                f"cores busy {phase['cores_busy']}")
        report["physical_floor"] = floor = physical_floor(world)
        for phase in report["scaleout"].values():
            against_physical_floor(phase, floor["legacy_to_trust"]["ms_per_msg"])
    finally:
        await sink.stop()
        stop_agents(world)
        schemas.drop_all()
    one, two = report["scaleout"][configs[1][0]], report["scaleout"][configs[2][0]]
    report["scaleout_gain"] = round(two["forwarded_per_s"] / max(1e-9, one["forwarded_per_s"]),
                                    3)
    report["bench_seconds"] = round(time.monotonic() - t_start, 1)
    return report


def _started(startup: list[dict[str, float]]) -> str:
    return "; ".join(f"gateway serving after {s['serving_s']} s, its {s['worker_processes']:.0f} "
                     f"translation worker processes ready after {s['workers_ready_s']} s"
                     for s in startup)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        asyncio.run(sink_main(Path(sys.argv[2])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None,
                    help="legacy → trust messages (default 1000; 600 with --scaleout)")
    ap.add_argument("--n-reverse", type=int, default=None, help="trust → legacy (default N)")
    ap.add_argument("--concurrency", type=int, default=8, help="SMTP connections (K)")
    ap.add_argument("--workers", type=int, default=4, help="gateway translate workers")
    ap.add_argument("--processes", type=int, default=0,
                    help="gateway translation worker processes (0: the gateway's default)")
    ap.add_argument("--big-mb", type=float, default=25, help="memory check size (0: skip)")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--workdir", type=Path, help="keep the world, logs and spools here")
    ap.add_argument("--profile", action="store_true",
                    help="sample the gateway (all threads) with py-spy during the "
                         "legacy → trust phase (perturbs the figures: profile apart)")
    ap.add_argument("--spool-url", default="",
                    help="PostgreSQL spool (postgresql://…): the gateways use fresh schemas "
                         "of that database, made and dropped by this script")
    ap.add_argument("--instances", type=int, default=None,
                    help="passerelle serve processes on that one spool, each with its own "
                         "ports and state directory; the K connections are spread over them "
                         "round-robin (default 1; 2 with --scaleout)")
    ap.add_argument("--scaleout", action="store_true",
                    help="only legacy → trust at full load: 1 instance on SQLite, 1 on "
                         "PostgreSQL, --instances on PostgreSQL (needs --spool-url)")
    ap.add_argument("--legacy-adapter", choices=("auto", "openpgp", "sop", "rnp"), default="auto",
                    help="the gateway's legacy.adapter, also used by the crypto floor "
                         "(sop: needs sqop; rnp: needs librnp0)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    args.n = (600 if args.scaleout else 1000) if args.n is None else args.n
    args.n_reverse = args.n if args.n_reverse is None else args.n_reverse
    args.instances = (2 if args.scaleout else 1) if args.instances is None else args.instances
    if args.spool_url and not args.spool_url.startswith(("postgresql://", "postgres://")):
        ap.error("--spool-url must be a postgresql:// URL")
    if args.instances < 1 or (args.instances > 1 and not args.spool_url):
        ap.error("--instances N > 1 needs --spool-url (several instances share PostgreSQL)")
    if args.scaleout and (not args.spool_url or args.instances < 2):
        ap.error("--scaleout needs --spool-url and --instances ≥ 2")

    def log(text: str) -> None:
        if not args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run(args, args.workdir, log))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="pload"))
        try:
            report = asyncio.run(run(args, tmp, log))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(table_scaleout(report) if args.scaleout else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
