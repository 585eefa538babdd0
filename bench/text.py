#!/usr/bin/env python3
"""Benchmark text repair: throughput (MB/s) and median time per 2 KB letter, per garbling.

Builds 2 KB letters from the project's French clinical texts, garbles each in the ways
legacy clients do (fixtures/text/extra/make_extra.py), and times gateway.text.normalize.
Usage: python bench/text.py [--letters N] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures" / "text" / "extra"))

from make_extra import variants  # noqa: E402

from gateway.text import normalize  # noqa: E402


def letters(n: int) -> list[str]:
    texts = [p.read_text("utf-8") for d in ("corpus", "extra")
             for p in sorted((ROOT / "fixtures" / "text" / d / "texts").glob("*.txt"))]
    out = []
    for i in range(n):
        body = ""
        j = i
        while len(body.encode("utf-8")) < 2048:
            body += texts[j % len(texts)]
            j += 7
        out.append(body)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--letters", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    all_bytes = 0
    all_time = 0.0
    for kind in [k for k, _ in variants("x")]:
        samples = []
        size = 0
        for text in letters(args.letters):
            make = dict(variants(text))[kind]
            try:
                data = make()
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
            t0 = time.perf_counter()
            normalize(data)
            samples.append(time.perf_counter() - t0)
            size += len(data)
        if not samples:
            continue
        total = sum(samples)
        all_bytes += size
        all_time += total
        rows.append({"garbling": kind, "letters": len(samples),
                     "median_ms": round(statistics.median(samples) * 1000, 3),
                     "mb_per_s": round(size / total / 1e6, 2)})
    report = {"machine": f"{platform.machine()}, {platform.python_implementation()} "
                         f"{platform.python_version()}",
              "overall_mb_per_s": round(all_bytes / all_time / 1e6, 2),
              "overall_median_ms_per_2kb": round(
                  statistics.median(r["median_ms"] for r in rows), 3),
              "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'garbling':28} {'letters':>7} {'median ms':>10} {'MB/s':>8}")
        for r in rows:
            print(f"{r['garbling']:28} {r['letters']:>7} {r['median_ms']:>10} {r['mb_per_s']:>8}")
        print(f"overall: {report['overall_mb_per_s']} MB/s, median "
              f"{report['overall_median_ms_per_2kb']} ms per 2 KB letter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
