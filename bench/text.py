#!/usr/bin/env python3
"""Benchmark text repair: throughput (MB/s) and median time per letter, per garbling.

Builds 2 KB and 20 KB letters from the project's French clinical texts, garbles each in the
ways legacy clients do (fixtures/text/extra/make_extra.py), and times
gateway.text.normalize, without a hint and with the sender's charset as hint (what the
gateway passes: the address book's charset), then gateway.text.short.repair_short on the
names corpus (fixtures/text/names: names, subjects, one-line results, clean and garbled).
Usage: python bench/text.py [--letters N] [--sizes 2048,20480] [--cold] [--no-names] [--cpu]
                            [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures" / "text" / "extra"))

from make_extra import variants  # noqa: E402

from gateway.text import normalize  # noqa: E402

# The charset the sender's client writes, for each garbling (the hint the gateway passes).
HINT = {"macroman-cr": "mac_roman", "cp1252-crlf": "cp1252", "cp850-crlf": "cp850",
        "pc-read-as-mac-macroman": "mac_roman", "macroman-crlf": "mac_roman",
        "iso8859-15-lf": "iso-8859-15", "cp850-dos-eof": "cp850",
        "mixed-cp1252-utf8": "cp1252", "mixed-macroman-utf8": "mac_roman"}


# What a letter's time is measured with: wall time by default; --cpu: this process's CPU time,
# which a machine busy with other work disturbs far less.
CLOCK = time.perf_counter


def _texts() -> list[str]:
    return [p.read_text("utf-8") for d in ("corpus", "extra")
            for p in sorted((ROOT / "fixtures" / "text" / d / "texts").glob("*.txt"))]


def _garbles(kind: str, text: str) -> bool:
    try:
        dict(variants(text))[kind]()
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True


def letters(n: int, size: int = 2048, kind: str | None = None) -> list[str]:
    """``n`` letters of ``size`` bytes; for ``kind``, only from texts it can garble."""
    texts = _texts()
    if kind is not None:
        whole = {"mixed-cp1252-utf8": "cp1252-crlf", "mixed-macroman-utf8": "macroman-cr"}
        texts = [t for t in texts if _garbles(kind, t) and _garbles(whole.get(kind, kind), t)]
    out = []
    for i in range(n):
        body = ""
        j = i
        while len(body.encode("utf-8")) < size:
            body += texts[j % len(texts)]
            j += 7
        out.append(body)
    return out


def clear_caches() -> None:
    """Forget what earlier letters taught the memoised helpers (whichever this tree has)."""
    from gateway.text import repair, score

    for owner, name in ((score, "judge_word"), (score, "_char"), (repair, "_mend_word"),
                        (repair, "_ftfy_segment"), (repair, "_ftfy_step")):
        fn = getattr(owner, name, None)
        if fn is not None:
            fn.cache_clear()


def cases(size: int, n: int, *, hinted: bool,
          pooled: bool) -> list[tuple[str, list[tuple[bytes, str | None]]]]:
    """(garbling, [(bytes, hint)…]) for every garbling; at 20 KB also bench/load.py's letters
    (random sentences, what bench/pipeline.py and the load bench send) in each sender's
    charset, and in UTF-8 with a line of Greek-lettered lab results."""
    out = []
    for kind in [k for k, _ in variants("x")]:
        hint = HINT.get(kind, "utf-8") if hinted else None
        made = []
        for text in letters(n, size, kind if pooled else None):
            try:
                made.append((dict(variants(text))[kind](), hint))
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
        out.append((kind, made))
    if size == 20480:
        sys.path.insert(0, str(ROOT / "bench"))
        from loadkit.messages import letter_text

        for charset in ("mac_roman", "cp1252", "cp850", "utf-8"):
            out.append((f"load-letter-{charset}",
                        [(letter_text(i, size).encode(charset, "replace"),
                          charset if hinted else None) for i in range(n)]))
        # a UTF-8 sender's lab letter: the Greek letters of medicine, as typed
        out.append(("load-letter-utf-8-greek",
                    [((letter_text(i, size) + GREEK_LINE).encode("utf-8"),
                      "utf-8" if hinted else None) for i in range(n)]))
    return out


GREEK_LINE = "\nBilan : γGT 45 UI/L, β-HCG négatif, créatinine 80 μmol/L.\n"


def measure(size: int, n: int, *, hinted: bool, pooled: bool, cold: bool) -> dict[str, Any]:
    """Time every garbling on ``n`` letters of ``size`` bytes (``cold``: caches cleared before
    each letter, as for a letter that shares no line and no word with earlier ones)."""
    rows = []
    all_bytes = 0
    all_time = 0.0
    for kind, made in cases(size, n, hinted=hinted, pooled=pooled):
        samples = []
        nbytes = 0
        for data, hint in made:
            if cold:
                clear_caches()
            t0 = CLOCK()
            normalize(data, hint=hint)
            samples.append(CLOCK() - t0)
            nbytes += len(data)
        if not samples:
            continue
        total = sum(samples)
        all_bytes += nbytes
        all_time += total
        row = {"garbling": kind, "letters": len(samples),
               "median_ms": round(statistics.median(samples) * 1000, 3),
               "mb_per_s": round(nbytes / total / 1e6, 2)}
        rows.append(row)
    return {"size": size, "hinted": hinted, "cold": cold,
            "overall_mb_per_s": round(all_bytes / all_time / 1e6, 2),
            "median_of_medians_ms": round(statistics.median(r["median_ms"] for r in rows), 3),
            "rows": rows}


def measure_names(rounds: int = 5) -> dict[str, Any]:
    """Time repair_short on every case of the names corpus, clean and garbled apart: the
    median over ``rounds`` passes of each string's time, caches cleared before each pass
    (each pass meets every string once)."""
    from gateway.text import names as judge
    from gateway.text import short

    path = ROOT / "fixtures" / "text" / "names" / "cases.jsonl"
    cases = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    rows = []
    for label, chosen in (("clean", [c for c in cases if c["garbling"] == "clean-utf8"]),
                          ("garbled", [c for c in cases if c["garbling"] != "clean-utf8"])):
        data = [(bytes.fromhex(c["input_hex"]), c["hint"]) for c in chosen]
        per_string: list[list[float]] = [[] for _ in data]
        for _ in range(rounds):
            for owner in (judge, short):
                for fn in vars(owner).values():
                    if hasattr(fn, "cache_clear"):
                        fn.cache_clear()
            for k, (raw, hint) in enumerate(data):
                t0 = CLOCK()
                short.repair_short(raw, hint=hint)
                per_string[k].append(CLOCK() - t0)
        medians = [statistics.median(t) for t in per_string]
        rows.append({"strings": label, "count": len(data),
                     "median_us": round(statistics.median(medians) * 1e6, 1),
                     "p90_us": round(sorted(medians)[int(len(medians) * 0.9)] * 1e6, 1),
                     "total_ms": round(sum(medians) * 1000, 1)})
    return {"names_corpus": str(path.relative_to(ROOT)), "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--letters", type=int, default=40)
    ap.add_argument("--sizes", default="2048,20480", help="letter sizes in bytes, comma-separated")
    ap.add_argument("--cold", action="store_true",
                    help="clear the memo caches before each letter (the letters here share "
                         "lines and words, real ones share fewer)")
    ap.add_argument("--no-names", action="store_true", help="skip the names corpus")
    ap.add_argument("--cpu", action="store_true",
                    help="time with this process's CPU time instead of wall time (a busy "
                         "machine disturbs it less)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        # 2 KB without hint is the historical figure (same letters as before: not pooled).
        pooled = size != 2048
        for hinted in (False, True):
            n = args.letters if size <= 4096 else max(5, args.letters // 4)
            runs.append(measure(size, n, hinted=hinted, pooled=pooled, cold=args.cold))
    report: dict[str, Any] = {"machine": f"{platform.machine()}, "
                                         f"{platform.python_implementation()} "
                                         f"{platform.python_version()}",
                              "clock": "cpu" if args.cpu else "wall", "runs": runs}
    if not args.no_names:
        report["names"] = measure_names()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for run in runs:
        label = "hint = sender charset" if run["hinted"] else "no hint"
        label += ", caches cleared before each letter" if run["cold"] else ""
        print(f"\n{run['size']} B letters, {label}")
        print(f"{'garbling':28} {'letters':>7} {'median ms':>10} {'MB/s':>8}")
        for r in run["rows"]:
            print(f"{r['garbling']:28} {r['letters']:>7} {r['median_ms']:>10} {r['mb_per_s']:>8}")
        print(f"overall: {run['overall_mb_per_s']} MB/s, median of medians "
              f"{run['median_of_medians_ms']} ms per {run['size']} B letter")
    if "names" in report:
        print(f"\nshort strings ({report['names']['names_corpus']}), caches cleared each pass")
        print(f"{'strings':10} {'count':>6} {'median µs':>10} {'p90 µs':>8} {'total ms':>9}")
        for r in report["names"]["rows"]:
            print(f"{r['strings']:10} {r['count']:>6} {r['median_us']:>10} {r['p90_us']:>8} "
                  f"{r['total_ms']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
