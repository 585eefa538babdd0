#!/usr/bin/env python3
"""Where a message's time goes inside the gateway, and what the alternatives would give.

Runs the daemon's own translation pipeline (gateway.translate.factory.build_translator on the
world's configuration) in this process, on the same messages as bench/load.py:

  * per-stage time (the trace's timings: open, repair, documents, compose, sign) for letters
    and HPRIM reports, serial;
  * throughput of ``to_trust`` on T threads (what the daemon does) and on P processes (a
    process pool: what the GIL costs);
  * the legacy open alone: gpg through python-gnupg (the adapter), gpg through a bare
    subprocess, and pysequoia in-process (if installed) — on gpg's default output
    (compressed) and on uncompressed messages;
  * with --profile, a pyinstrument profile of ``to_trust`` (serial).

Usage: python bench/pipeline.py [--n 200] [--threads 4] [--processes 2] [--profile] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import Msg, hprim_texts, legacy_plain, machine, seal_legacy  # noqa: E402

from gateway import config  # noqa: E402
from gateway.crypto.openpgp import OpenPgpCipher, _status  # noqa: E402
from gateway.crypto.world import USERS, World, build_world  # noqa: E402
from gateway.translate.factory import build_translator  # noqa: E402
from gateway.translate.pipeline import Envelope, Translator  # noqa: E402

_TRANSLATOR: Translator | None = None


def _translator(cfg: Path) -> Translator:
    global _TRANSLATOR
    if _TRANSLATOR is None:
        _TRANSLATOR = build_translator(config.load(cfg))
    return _TRANSLATOR


def _to_trust(cfg: Path, m: Msg) -> dict[str, float]:
    t = _translator(cfg).to_trust(m.data, Envelope(m.sender, (m.rcpt,)), now=datetime.now(UTC))
    return dict(t.trace.timings)


def throughput(pool: Executor, cfg: Path, msgs: Sequence[Msg]) -> float:
    list(pool.map(_to_trust, [cfg] * min(8, len(msgs)), msgs[:8]))  # warm every worker
    t0 = time.monotonic()
    list(pool.map(_to_trust, [cfg] * len(msgs), msgs))
    return round(len(msgs) / (time.monotonic() - t0), 1)


def med_ms(fn: Callable[[], object], n: int) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return round(statistics.median(out) * 1000, 2)


def open_alternatives(world: World, n: int) -> dict[str, Any]:
    """One 20 KB letter part: decrypt + verify, by each means available."""
    from load import letter_text

    body = letter_text(1).encode("cp1252", "replace")
    user = OpenPgpCipher(Path(world.gnupg_users["dupont"]),
                         gateway_fingerprint=world.fingerprints["dupont"])
    compressed = user.encrypt_sign(body, recipient=world.fingerprints["gateway"])
    home = world.gnupg_users["dupont"]
    uncompressed = subprocess.run(
        ["gpg", "--homedir", home, "--batch", "--trust-model", "always", "--armor",
         "--compress-algo", "none", "--sign", "--encrypt", "-r", world.fingerprints["gateway"]],
        input=body, capture_output=True, check=True).stdout
    gw = OpenPgpCipher(world.gnupg_gateway, gateway_fingerprint=world.fingerprints["gateway"])

    def bare() -> None:
        proc = subprocess.run(["gpg", "--homedir", str(world.gnupg_gateway), "--batch",
                               "--trust-model", "always", "--status-fd", "2", "--decrypt"],
                              input=compressed, capture_output=True, check=False)
        assert "VALIDSIG" in _status(proc.stderr.decode("latin-1"))

    out: dict[str, Any] = {"part_bytes": len(compressed), "ms_median": {
        "gpg via python-gnupg (adapter)": med_ms(lambda: gw.decrypt_verify(compressed), n),
        "gpg via bare subprocess": med_ms(bare, n),
    }}
    for threads in (2, 4, 8):
        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: gw.decrypt_verify(compressed), range(n * 2)))
        out[f"gpg adapter, {threads} threads, per_s"] = round(n * 2 / (time.monotonic() - t0), 1)
    try:
        import pysequoia
    except ImportError:
        out["pysequoia"] = "not installed"
        return out
    secret = subprocess.run(["gpg", "--homedir", str(world.gnupg_gateway), "--batch",
                             "--export-secret-keys", world.fingerprints["gateway"]],
                            capture_output=True, check=True).stdout
    public = subprocess.run(["gpg", "--homedir", str(world.gnupg_gateway), "--batch",
                             "--export"], capture_output=True, check=True).stdout
    decryptor = pysequoia.Tsk.from_bytes(secret).decryptor()
    certs = pysequoia.Cert.split_bytes(public)

    def store(_ids: list[str]) -> list[Any]:
        return certs

    seq: dict[str, Any] = {"version": getattr(pysequoia, "__version__", "?")}
    for label, data in (("gpg default (compressed)", compressed),
                        ("uncompressed", uncompressed)):
        try:
            got = pysequoia.decrypt(data, decryptor=decryptor, store=store)
            ok = got.bytes == body and bool(got.valid_sigs)
            seq[label] = {"decrypt+verify": "ok" if ok else "wrong result",
                          "ms_median": med_ms(lambda d=data: pysequoia.decrypt(  # type: ignore
                              d, decryptor=decryptor, store=store), n)}
        except Exception as exc:
            seq[label] = {"decrypt+verify": f"fails: {str(exc).splitlines()[0]}",
                          "decrypt_only_ms_median": med_ms(
                              lambda d=data: pysequoia.decrypt(d, decryptor=decryptor), n)}
    out["pysequoia"] = seq
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ppipe") as tmp:
        world = build_world(Path(tmp) / "w")
        hprims = hprim_texts()
        msgs = seal_legacy(world, [legacy_plain(i, "pipe", hprims) for i in range(args.n)])
        cfg = world.config
        report: dict[str, Any] = {"machine": machine(), "n": args.n}
        stages: dict[str, dict[str, list[float]]] = {}
        t0 = time.monotonic()
        for m in msgs:
            for stage, s in _to_trust(cfg, m).items():
                stages.setdefault(m.kind, {}).setdefault(stage, []).append(s)
        report["serial_per_s"] = round(len(msgs) / (time.monotonic() - t0), 1)
        report["stage_ms_median"] = {
            kind: {st: round(statistics.median(v) * 1000, 2) for st, v in per.items()}
            for kind, per in stages.items()}
        with ThreadPoolExecutor(args.threads) as pool:
            report[f"to_trust_{args.threads}_threads_per_s"] = throughput(pool, cfg, msgs)
        with ProcessPoolExecutor(args.processes) as ppool:
            report[f"to_trust_{args.processes}_processes_per_s"] = throughput(ppool, cfg, msgs)
        report["open"] = open_alternatives(world, min(args.n, 100))
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            for m in msgs:
                _to_trust(cfg, m)
            profiler.stop()
            text = profiler.output_text(unicode=True, color=False, show_all=False)
            (ROOT / "bench" / "last-profile.txt").write_text(text, "utf-8")
            report["profile"] = "bench/last-profile.txt"
        for home in [world.gnupg_gateway, *(Path(world.gnupg_users[u.key]) for u in USERS)]:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                           capture_output=True, check=False)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
