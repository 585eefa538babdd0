#!/usr/bin/env python3
"""The translation workers' MIME path: how often each message is parsed and written, and the
CPU of each stage, in this process, with the daemon's own translator and the bench's messages.

For each kind of message — legacy → trust letter (20 KB) and HPRIM report, trust → legacy
letter (8 KB) and CR-BIO ``IHE_XDM.ZIP`` — sealed or signed as ``bench/load.py`` makes them:

* **counts** (``bench/loadkit/mimecount.py``): the email package's parses (whole messages,
  header blocks, header values read as a field) and serialisations (the generator, the
  gateway's writer) of one translation, each with the gateway function that asked for it;
* **CPU per stage**: ``time.process_time`` of each stage, exclusive of the stages it calls
  (the translator's functions wrapped for the run), per message, over ``--n`` messages of
  each kind after ``--warm`` untimed ones;
* with ``--profile``: the cProfile of the timed run, its 25 most expensive functions by
  their own time.

Usage: python bench/mimepath.py [--n 100] [--warm 10] [--adapter auto|rnp|openpgp]
                                [--profile] [--json F]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadkit.messages import (  # noqa: E402
    Msg,
    hprim_texts,
    legacy_plain,
    seal_legacy,
    trust_messages,
    xdm_packages,
)
from loadkit.mimecount import counting  # noqa: E402
from loadkit.world import operator_identity, stop_agents  # noqa: E402

from gateway import config  # noqa: E402
from gateway.crypto.world import World, build_world  # noqa: E402
from gateway.translate.factory import build_translator  # noqa: E402
from gateway.translate.pipeline import Envelope, Translator  # noqa: E402

KINDS = ("to_trust/letter", "to_trust/hprim", "to_legacy/letter", "to_legacy/xdm")


def messages(world: World, work: Path, n: int) -> dict[str, list[Msg]]:
    hprims = hprim_texts()
    legacy = seal_legacy(world, [legacy_plain(i, "mp", hprims) for i in range(2 * n)])
    identity = operator_identity(world, work / "op")
    trust = trust_messages(world, 2 * n, "mp", identity, xdm_packages(world, hprims))
    return {
        "to_trust/letter": [m for m in legacy if m.kind == "letter"],
        "to_trust/hprim": [m for m in legacy if m.kind == "hprim"],
        "to_legacy/letter": [m for m in trust if m.kind == "letter"],
        "to_legacy/xdm": [m for m in trust if m.kind == "xdm"],
    }


def translate(translator: Translator, kind: str, m: Msg) -> int:
    now = datetime.now(UTC)
    if kind.startswith("to_trust"):
        return len(translator.to_trust(m.data, Envelope(m.sender, (m.rcpt,)), now=now).message)
    return sum(len(t.message) for t in translator.to_legacy(
        m.data, Envelope(m.sender, (m.rcpt,)), now=now))


# -- CPU per stage: exclusive process time of the translator's functions ---------------------

# (stage, object, attribute): each function is timed as the stage named, less the time of the
# timed functions it calls
STAGES: list[tuple[str, str, str]] = [
    ("translate (the rest)", "gateway.translate.pipeline:Translator", "to_trust"),
    ("translate (the rest)", "gateway.translate.pipeline:Translator", "to_legacy"),
    ("open: MIME (parse, rebuild)", "gateway.crypto.legacy:LegacyCrypto", "open"),
    ("open: decrypt + verify", "gateway.crypto.rnp:RnpCipher", "decrypt_verify"),
    ("open: decrypt + verify", "gateway.crypto.openpgp:OpenPgpCipher", "decrypt_verify"),
    ("seal: MIME (parse, rebuild, write)", "gateway.crypto.legacy:LegacyCrypto", "seal_traced"),
    ("seal: sign + encrypt", "gateway.crypto.rnp:RnpCipher", "encrypt_sign"),
    ("seal: sign + encrypt", "gateway.crypto.openpgp:OpenPgpCipher", "encrypt_sign"),
    ("compose: headers and tree", "gateway.translate.legacy_to_trust", "_build"),
    ("compose: headers and tree", "gateway.translate.trust_to_legacy", "_build"),
    ("email: parse", "gateway.mail.mime", "parse"),
    ("email: write", "gateway.mail.mime", "to_handover"),
    ("email: write", "gateway.mail.mime", "to_bytes"),
    ("text repair", "gateway.translate.legacy_to_trust", "normalize"),
    ("documents", "gateway.translate.legacy_to_trust", "_documents"),
    ("documents", "gateway.translate.trust_to_legacy", "_hprim_from_xdm"),
    ("trace part", "gateway.translate.trace:TraceRecord", "to_bytes"),
    ("S/MIME sign: write", "gateway.crypto.smime", "_sign"),
    ("S/MIME sign: PKCS#7", "gateway.crypto.smime", "_detached_signature"),
    ("S/MIME sign: self-check", "gateway.crypto.smime", "_check_own"),
    ("S/MIME verify", "gateway.crypto.smime:Smime", "_content"),
]


class Meter:
    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._stack: list[list[float]] = []  # per active timed call: [start, children]

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [time.process_time(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                total = time.process_time() - frame[0]
                self.spent[stage] = self.spent.get(stage, 0.0) + total - frame[1]
                if self._stack:
                    self._stack[-1][1] += total
        return timed


@contextmanager
def metered(meter: Meter) -> Iterator[None]:
    import importlib

    with ExitStack() as stack:
        for stage, where, name in STAGES:
            module, _, cls = where.partition(":")
            target: Any = importlib.import_module(module)
            if cls:
                target = getattr(target, cls)
            stack.enter_context(mock.patch.object(target, name,
                                                  meter.wrap(stage, getattr(target, name))))
        yield


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mimepath-") as tmp:
        work = Path(tmp)
        world = build_world(work / "world")
        try:
            if args.adapter != "auto":
                world.write_config(world.config, world.root / "state",
                                   {"legacy": {"adapter": args.adapter}})
            translator = build_translator(config.load(world.config))
            msgs = messages(world, work, args.warm + args.n)
            report: dict[str, Any] = {"n": args.n, "adapter": args.adapter, "kinds": {}}
            for kind in KINDS:
                for m in msgs[kind][:args.warm]:
                    translate(translator, kind, m)
                with counting() as census:
                    translate(translator, kind, msgs[kind][args.warm])
                meter = Meter()
                timed = msgs[kind][args.warm + 1:args.warm + 1 + args.n]
                profile = cProfile.Profile() if args.profile else None
                with metered(meter):
                    t0, w0 = time.process_time(), time.perf_counter()
                    if profile:
                        profile.enable()
                    for m in timed:
                        translate(translator, kind, m)
                    if profile:
                        profile.disable()
                    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
                report["kinds"][kind] = {
                    "messages": len(timed),
                    "bytes_in": sum(len(m.data) for m in timed) // max(1, len(timed)),
                    "cpu_ms_per_msg": round(1000 * cpu / len(timed), 3),
                    "wall_ms_per_msg": round(1000 * wall / len(timed), 3),
                    "stages_ms_per_msg": {s: round(1000 * v / len(timed), 3) for s, v in sorted(
                        meter.spent.items(), key=lambda kv: -kv[1])},
                    "parses": [[e.kind, e.caller, e.size] for e in census.parses()],
                    "serialisations": [[e.caller, e.how] for e in census.serialisations()],
                }
                if profile:
                    stats = pstats.Stats(profile)
                    rows = sorted(stats.stats.items(),  # type: ignore[attr-defined]
                                  key=lambda kv: -kv[1][2])[:25]
                    report["kinds"][kind]["profile_tottime_ms_per_msg"] = [
                        [f"{Path(f).name}:{line}:{fn}", round(1000 * v[2] / len(timed), 3)]
                        for (f, line, fn), v in rows]
        finally:
            stop_agents(world)
    return report


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    for kind, r in report["kinds"].items():
        lines.append(f"{kind}: {r['cpu_ms_per_msg']} ms CPU per message ({r['messages']} "
                     f"messages of ~{r['bytes_in']} bytes; wall {r['wall_ms_per_msg']} ms)")
        whole = [p for p in r["parses"] if p[0] == "parse"]
        lines.append(f"  parses: {len(whole)} of a message, {len(r['parses']) - len(whole)} "
                     f"of a header block or value; serialisations: "
                     f"{len(r['serialisations'])}")
        for p in r["parses"]:
            lines.append(f"    parse {p[0]:<10} {p[2]:>7} chars  {p[1]}")
        for s in r["serialisations"]:
            lines.append(f"    write {s[1]:<10}                {s[0]}")
        for stage, ms in r["stages_ms_per_msg"].items():
            lines.append(f"    {stage:<36} {ms:>7.3f} ms")
        for fn, ms in r.get("profile_tottime_ms_per_msg", []):
            lines.append(f"      {ms:>7.3f} ms  {fn}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="timed messages of each kind")
    ap.add_argument("--warm", type=int, default=10, help="untimed messages of each kind first")
    ap.add_argument("--adapter", default="auto", help="legacy.adapter (auto: rnp when present)")
    ap.add_argument("--profile", action="store_true", help="cProfile of the timed runs")
    ap.add_argument("--json", type=Path, help="write the report here")
    args = ap.parse_args()
    report = run(args)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
