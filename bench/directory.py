#!/usr/bin/env python3
"""Directory import speed: generate a 540,000-line extraction, import it, time lookups.

Usage: python bench/directory.py [--lines N] [--zip] [--json] [--db postgresql://…]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.directory import synthetic  # noqa: E402
from gateway.directory.pgstore import open_directory  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=540_000)
    ap.add_argument("--zip", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--db", help="a postgresql:// URL (default: a SQLite file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdir") as tmp:
        src = Path(tmp) / ("extraction.zip" if args.zip else "extraction.txt")
        t0 = time.perf_counter()
        synthetic.write(src, args.lines, malformed=30, duplicates=100, zipped=args.zip)
        generated = time.perf_counter() - t0
        store = open_directory(args.db or Path(tmp) / "directory.db")
        report = store.import_file(src)
        rng = random.Random(2)
        t0 = time.perf_counter()
        n = 5000
        for _ in range(n):
            store.find_by_rpps(f"{10000000000 + rng.randrange(args.lines // 2):011d}")
        lookups = n / (time.perf_counter() - t0)
    out = {"lines": args.lines, "zipped": args.zip,
           "backend": "postgresql" if args.db else "sqlite", "generate_s": round(generated, 1),
           "import_s": report.seconds, "imported": report.imported,
           "malformed": report.malformed, "duplicates": report.duplicates,
           "rpps_lookups_per_s": round(lookups)}
    print(json.dumps(out) if args.json else
          f"{args.lines:,} lines: import {report.seconds} s ({report.imported:,} mailboxes, "
          f"{report.malformed} malformed, {report.duplicates} duplicates); "
          f"{out['rpps_lookups_per_s']:,} RPPS lookups/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
