"""The printed tables of a load bench report (the JSON report is the dict itself)."""

from __future__ import annotations

from typing import Any


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"machine: {m['nproc']} × {m['cpu']}, Python {m['python']}, gpg {m['gpg']} "
             f"(libgcrypt {m['libgcrypt']}); N = {r['n']} / {r['n_reverse']}, "
             f"K = {r['concurrency']} connections, {r['gateway_workers']} translate workers",
             "",
             f"{'phase':34} {'msg/s':>7} {'CPU÷floor':>9} {'accept p50/p95/p99 ms':>22} "
             f"{'fwd p50/p95/p99 ms':>22} {'CPU ms/msg':>10} {'RSS MB':>7} {'spool MB':>8}"]
    rows = [*r["transport_floor"].values(), *r["gateway"].values()]
    for p in rows:
        if not isinstance(p, dict):
            continue
        a = p["accept_ms"]
        f = p.get("forward_ms")
        x = p.get("cpu_x_physical_floor")
        lines.append(
            f"{p['phase']:34} {p['forwarded_per_s']:>7} "
            + (f"{x['total']:>8}×" if x else f"{'-':>9}")
            + f" {a['p50']:>6}/{a['p95']}/{a['p99']:<8}"
            + (f"{f['p50']:>8}/{f['p95']}/{f['p99']:<8}" if f else f"{'-':>22}")
            + (f" {p['cpu_ms_per_msg']['total']:>10} {p['rss_peak_mb']:>7} {p['spool_mb']:>8}"
               if f else ""))
    cf = r["crypto_floor"]
    lines += ["", f"crypto floor ({cf['threads']} threads): "
              + ", ".join(f"{d} {cf[d]['per_s']} msg/s ({cf[d]['cpu_ms_per_msg']} ms CPU)"
                          for d in ("legacy_to_trust", "trust_to_legacy"))]
    if "physical_floor" in r:
        lines.append(physical_floor_line(r["physical_floor"]))
    for d, ratio in r["ratios"].items():
        lines.append(f"gateway {d}: {ratio['of_crypto_floor']:.0%} of the crypto floor, "
                     f"{ratio['of_transport_floor']:.0%} of the transport floor"
                     + (f", its CPU {ratio['cpu_x_physical_floor']}× the physical floor"
                        if "cpu_x_physical_floor" in ratio else ""))
    for s in r.get("gateway_start", []):
        lines.append(f"gateway start: serving after {s['serving_s']} s, its "
                     f"{s['worker_processes']:.0f} translation worker processes ready after "
                     f"{s['workers_ready_s']} s (the phases began then)")
    if "memory" in r:
        mem = r["memory"]
        lines.append(f"memory: {mem['message_bytes'] / 2**20:.1f} MB message "
                     f"{'forwarded' if mem['forwarded'] else 'NOT forwarded'} in "
                     f"{mem['seconds']} s; RSS {mem['rss_before_mb']} → peak "
                     f"{mem['hwm_after_mb']} MB (growth {mem['growth_mb']} MB = "
                     f"{mem['growth_x_message']}× the message)")
    return "\n".join(lines)


def table_scaleout(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"machine: {m['nproc']} × {m['cpu']}, Python {m['python']}, gpg {m['gpg']} "
             f"(libgcrypt {m['libgcrypt']}), PostgreSQL {m['postgresql']}; "
             f"load average before {m['loadavg_before']:.2f}; N = {r['n']} legacy → trust, "
             f"K = {r['concurrency']} connections, {r['gateway_workers']} translate workers "
             "per instance", "",
             f"{'legacy → trust':24} {'msg/s':>7} {'CPU÷floor':>9} {'accepts/s':>9} "
             f"{'fwd p50/p95/p99 ms':>24} {'CPU ms/msg':>10} {'PG ms/msg':>9} "
             f"{'gen+sink':>8} {'cores busy (others)':>19}"]
    floor = r["transport_floor"]["legacy_to_trust"]
    lines.append(f"{'transport floor':24} {floor['forwarded_per_s']:>7} {'-':>9} "
                 f"{floor['accepted_per_s']:>9}")
    for p in r["scaleout"].values():
        f = p["forward_ms"]
        lines.append(
            f"{p['phase'].removeprefix('legacy→trust '):24} {p['forwarded_per_s']:>7} "
            + (f"{x['total']:>8}×" if (x := p.get("cpu_x_physical_floor")) else f"{'-':>9}")
            + f" {p['accepted_per_s']:>9} {f['p50']:>9}/{f['p95']}/{f['p99']:<8} "
            f"{p['cpu_ms_per_msg']['total']:>10.1f} {p['postgres_cpu_ms_per_msg']:>9.1f} "
            f"{p['loadgen_sink_cpu_ms_per_msg']:>8.1f} "
            f"{p['cores_busy']:>11} ({p['other_cores']})")
    lines += ["", f"{list(r['scaleout'].values())[-1]['instances']} instances ÷ 1 (PostgreSQL):"
              f" {r['scaleout_gain']:.2f} ×"]
    if "physical_floor" in r:
        lines.append(physical_floor_line(r["physical_floor"]))
    return "\n".join(lines)


def physical_floor_line(pf: dict[str, Any]) -> str:
    """The physical floor: in-process crypto per message, each way."""
    return (f"physical floor (in-process crypto, 1 thread; {pf['keys']} keys, RSA-2048 in "
            "brackets): "
            + ", ".join(f"{d} {pf[d]['ms_per_msg']} ms CPU/msg ({pf[d]['ms_per_msg_rsa2048']})"
                        for d in ("legacy_to_trust", "trust_to_legacy")))
