#!/usr/bin/env python3
"""Peak memory of one translation of a large message, inside the process that translates.

Builds a demo world, then the same large legacy message as bench/load.py's memory check (a
short letter and three incompressible attachments, each part encrypted and signed by gpg)
and a large trust-space message (an S/MIME-signed letter with three such attachments, from
an operator identity).  Each measurement runs in a fresh process holding only the daemon's
translator (``build_translator`` on the world's configuration) and, like a translation
worker, its allocator settings (``gateway.stages.workers.thrifty_malloc``): one small translation to
warm up, then the large one (handed over as the daemon hands it: the legacy message from
its file), measured two ways in two processes:

  * VmHWM growth over VmRSS before (/proc/self/status; the peak is reset per stage through
    /proc/self/clear_refs), with no tracing;
  * tracemalloc peak above what was allocated before (Python allocations only).

Stages: to_trust = open, compose, sign; to_legacy = verify, compose, seal.

Usage: python bench/memory.py [--mb 25] [--json out.json] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIRECTIONS = {"to_trust": ("open", "compose", "sign"),
              "to_legacy": ("verify", "compose", "seal")}
MB = 2**20


# -- the measuring process -------------------------------------------------------------------

def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.M)}


class Meter:
    """Peaks above the start: of the whole translation and of each stage (the peak is reset
    when a stage starts, so the highest peak seen is kept for the whole)."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced
        self.spans: dict[str, int] = {}
        self.start = self._reset()
        self.highest = self.start

    def _reset(self) -> int:
        if self.traced:
            tracemalloc.reset_peak()
            return tracemalloc.get_traced_memory()[0]
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        return _status()["VmRSS"]

    def _peak(self) -> int:
        peak = tracemalloc.get_traced_memory()[1] if self.traced else _status()["VmHWM"]
        self.highest = max(self.highest, peak)
        return peak

    def total(self) -> int:
        self._peak()
        return self.highest - self.start

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        self._peak()
        start = self._reset()
        try:
            yield
        finally:
            self.spans[name] = self._peak() - start


def _wrap(meter: Meter, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with meter.span(name):
            return fn(*args, **kwargs)
    return wrapped


def _spilled(path: Path) -> Path:
    """``path`` copied, a piece at a time, into a spill file as the daemon writes one
    (sealed with this process's key): the file the translation reads."""
    from gateway import spill

    dest = path.with_name(spill.new_path(path.parent, path.name).name + ".spill")
    with path.open("rb") as f, spill.create(dest) as w:
        while piece := f.read(1 << 18):
            w.write(piece)
    return dest


def child(work: Path, direction: str, traced: bool) -> dict[str, Any]:
    """One fresh process: warm up on the small message, then measure the large one."""
    from gateway import config
    from gateway.mail.handover import Handover
    from gateway.stages.workers import thrifty_malloc
    from gateway.translate import legacy_to_trust, trust_to_legacy
    from gateway.translate.factory import build_translator
    from gateway.translate.pipeline import Envelope

    thrifty_malloc()  # what a translation worker does first
    meta = json.loads((work / "messages.json").read_text("utf-8"))[direction]
    translator = build_translator(config.load(Path(meta["config"])))
    envelope = Envelope(meta["mail_from"], (meta["rcpt_to"],))
    translate = getattr(translator, direction)
    now = datetime.now(UTC)
    translate((work / meta["small"]).read_bytes(), envelope, now=now)
    # as the daemon hands them over: a legacy message from its file (never read whole), a
    # trust message read whole
    raw: bytes | Handover = (Handover.of_file(_spilled(work / meta["big"]))
                             if direction == "to_trust" else (work / meta["big"]).read_bytes())

    if traced:
        tracemalloc.start()
    meter = Meter(traced)
    first, middle, last = DIRECTIONS[direction]
    if direction == "to_trust":
        translator.legacy.open = _wrap(meter, first, translator.legacy.open)
        legacy_to_trust.compose = _wrap(meter, middle, legacy_to_trust.compose)
        translator.smime.sign = _wrap(meter, last, translator.smime.sign)
    else:
        translator.smime.verify_signer = _wrap(meter, first, translator.smime.verify_signer)
        trust_to_legacy.compose = _wrap(meter, middle, trust_to_legacy.compose)
        translator.legacy.seal_traced = _wrap(meter, last, translator.legacy.seal_traced)
    t0 = time.perf_counter()
    out = translate(raw, envelope, now=now)
    seconds = time.perf_counter() - t0
    total = meter.total()
    outputs = out if isinstance(out, list) else [out]
    size = raw.size if isinstance(raw, Handover) else len(raw)
    return {"message_bytes": size, "output_bytes": sum(len(t.message) for t in outputs),
            "seconds": round(seconds, 2), "peak": total, "stages": meter.spans}


# -- the driver --------------------------------------------------------------------------------

def build_messages(work: Path, size: int) -> dict[str, Any]:
    """The world and the four messages (small and large, each way), written under ``work``."""
    sys.path.insert(0, str(ROOT / "bench"))
    from loadkit.messages import hprim_texts, legacy_plain, letter_text, seal_legacy
    from loadkit.world import TRUST_PEER, operator_identity

    from gateway.crypto import smime
    from gateway.crypto.world import USERS, build_world

    world = build_world(work / "world")
    per = max(1, int(size / 1.37 / 3))
    attachments = [(f"radio-{k}.jpg.bin", os.urandom(per)) for k in range(3)]
    hprims = hprim_texts()
    warm, big = seal_legacy(world, [legacy_plain(0, "memwarm", hprims),
                                    legacy_plain(0, "membig", hprims, attachments)], threads=2)
    (work / "legacy-small.eml").write_bytes(warm.data)
    (work / "legacy-big.eml").write_bytes(big.data)

    identity = operator_identity(world, work / "op")
    user = USERS[0]
    for name, parts in (("small", ()), ("big", attachments)):
        m = EmailMessage()
        m["From"] = f"Dr X <{TRUST_PEER}>"
        m["To"] = user.trust_address
        m["Subject"] = f"Réponse {name}"
        m["Date"] = "Mon, 02 Jun 2025 10:00:00 +0200"
        m["Message-ID"] = f"<bench-mem-{name}@hopital-a.mssante.example>"
        m.set_content(letter_text(1, 8192).replace("\r\n", "\n"), cte="quoted-printable")
        for filename, data in parts:
            m.add_attachment(data, maintype="application", subtype="octet-stream",
                             filename=filename)
        (work / f"trust-{name}.eml").write_bytes(smime.sign(m.as_bytes(), identity))
    common = {"config": str(world.config)}
    return {"world": world, "messages": {
        "to_trust": {**common, "small": "legacy-small.eml", "big": "legacy-big.eml",
                     "mail_from": big.sender, "rcpt_to": big.rcpt},
        "to_legacy": {**common, "small": "trust-small.eml", "big": "trust-big.eml",
                      "mail_from": TRUST_PEER, "rcpt_to": user.trust_address}}}


def run_child(work: Path, direction: str, traced: bool) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", str(work), direction]
    proc = subprocess.run(argv + (["--traced"] if traced else []), capture_output=True,
                          text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"measuring process failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def table(report: dict[str, Any]) -> str:
    lines = [f"{'direction':<10} {'stage':<8} {'RSS peak MB':>12} {'× msg':>6} "
             f"{'tracemalloc MB':>15} {'× msg':>6}"]
    for direction, stages in DIRECTIONS.items():
        r = report[direction]
        size = r["message_bytes"]
        for stage in ("total", *stages):
            rss = r["rss"]["peak"] if stage == "total" else r["rss"]["stages"][stage]
            tm = r["traced"]["peak"] if stage == "total" else r["traced"]["stages"][stage]
            lines.append(f"{direction if stage == 'total' else '':<10} {stage:<8} "
                         f"{rss / MB:>12.1f} {rss / size:>6.2f} {tm / MB:>15.1f} "
                         f"{tm / size:>6.2f}")
        lines.append(f"{'':<10} message {size / MB:.1f} MB, output {r['output_bytes'] / MB:.1f}"
                     f" MB, {r['rss']['seconds']} s")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=25.0, help="size of the large messages")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--workdir", type=Path, help="where to build the world (kept)")
    ap.add_argument("--child", nargs=2, metavar=("WORK", "DIRECTION"), help=argparse.SUPPRESS)
    ap.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], args.traced)))
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from loadkit.world import stop_agents

    with tempfile.TemporaryDirectory(prefix="pm-", dir=args.workdir) as tmp:
        work = Path(tmp)
        built = build_messages(work, int(args.mb * MB))
        (work / "messages.json").write_text(json.dumps(built["messages"]), "utf-8")
        try:
            report: dict[str, Any] = {"mb": args.mb}
            for direction in DIRECTIONS:
                report[direction] = {"message_bytes": 0}
                for traced in (False, True):
                    r = run_child(work, direction, traced)
                    report[direction]["message_bytes"] = r.pop("message_bytes")
                    report[direction]["output_bytes"] = r.pop("output_bytes")
                    report[direction]["traced" if traced else "rss"] = r
        finally:
            stop_agents(built["world"])
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
