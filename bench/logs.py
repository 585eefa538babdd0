#!/usr/bin/env python3
"""CPU per log line: the daemon's own lines for one message, through `gateway.log` as
`passerelle serve` configures it (redaction, JSON, one write and flush per line).

The lines are the ones a real `passerelle serve` prints for each message (read from the
gateway's log of `bench/load.py --n 50 --big-mb 0 --workdir DIR`: four lines per message in
the daemon, either way, none in the translation workers when all goes well):
``message.accepted``, ``message.translated``, ``delivery.attempt``, ``message.delivered``,
each message with a fresh queue id (the spool's 20 hex digits) and the same peers, words and
reply; then a few less frequent lines (a refusal, a deferred attempt whose reply quotes an
address, a quarantine, a crash with its exception).

Each figure is this process's CPU time (``time.process_time``) over ``--n`` messages, best of
``--rounds`` rounds, ÷ lines: µs of CPU per line.  The stream is a sink that discards what it
is given (the write to journald or a file is the same before and after).  ``redact only``
times the redaction processor alone on the line's fields, as structlog hands them to it.

``--against REF`` runs the same measurement on the code of git revision REF (exported to a
temporary directory) in a subprocess, round by round alternately with this tree, so that both
see the same machine load, and prints them side by side.

Usage: python bench/logs.py [--n 2000] [--rounds 5] [--against main] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, cast

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("BENCH_LOGS_TREE"):  # --against: the other revision's gateway package
    sys.path.insert(0, os.environ["BENCH_LOGS_TREE"])
else:
    sys.path.insert(0, str(ROOT))

from gateway import log as glog  # noqa: E402

Line = tuple[str, str, dict[str, Any]]  # level method, event, fields


def _queue_id() -> str:
    return uuid.uuid4().hex[:20].upper()  # as gateway.spool.sqlite makes them


def message_lines(queue_id: str, direction: str) -> list[Line]:
    """The four lines the daemon prints for one message (from a real `passerelle serve`)."""
    if direction == "to_trust":
        rcpt, size = "dr.martin@hopital-a.mssante.example", 9587
    else:
        rcpt, size = "martin@medical33.legacy.example", 74915
    return [
        ("info", "message.accepted", {"queue_id": queue_id, "direction": direction,
                                      "size": size, "outcome": "stored", "peer": "127.0.0.1"}),
        ("info", "message.translated", {"queue_id": queue_id, "direction": direction}),
        ("info", "delivery.attempt", {
            "queue_id": queue_id, "direction": direction, "recipient": rcpt,
            "relay": "127.0.0.1:36555", "status": "sent", "dsn": "2.0.0",
            "reply": "250 2.0.0 OK stored", "delay_seconds": 0.322, "seconds": 0.0831,
            "attempt": 1}),
        ("info", "message.delivered", {"queue_id": queue_id, "count": 1}),
    ]


def other_lines(queue_id: str) -> list[Line]:
    """Less frequent lines: a refusal, a deferral whose reply names the recipient, a
    quarantine, an exception."""
    return [
        ("info", "smtp.rejected", {"listener": "legacy", "code": "550", "enhanced": "5.7.1",
                                   "reason": "unknown_sender", "kind": None,
                                   "peer": "192.0.2.44"}),
        ("warning", "delivery.attempt", {
            "queue_id": queue_id, "direction": "to_trust",
            "recipient": "e.pelissier@hopital-b.mssante.example", "relay": "mx.hopital-b.example",
            "status": "deferred", "dsn": "4.2.2",
            "reply": "452 4.2.2 <e.pelissier@hopital-b.mssante.example>: mailbox full",
            "delay_seconds": 61.2, "seconds": 0.41, "attempt": 2}),
        ("warning", "message.quarantined", {
            "queue_id": queue_id, "direction": "to_trust", "kind": "bad_signature",
            "digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "size": 5210, "count": 1}),
    ]


class _Sink:
    """A stream that keeps nothing (what the lines cost, not what the disk costs)."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += 1
        return len(text)

    def flush(self) -> None:
        pass


def _crash() -> BaseException:
    try:
        raise ValueError("Résultats de Mme Pélissier")
    except ValueError as exc:
        return exc


def _time(prepare: Callable[[], Any], run: Callable[[Any], int], rounds: int) -> float:
    """µs of CPU per line of ``run(prepare())``, best of ``rounds`` (``prepare`` untimed)."""
    best = float("inf")
    for _ in range(rounds):
        work = prepare()
        started = time.process_time()
        lines = run(work)
        best = min(best, (time.process_time() - started) / lines)
    return best * 1e6


def measure(n: int, rounds: int) -> dict[str, float]:
    """µs of CPU per line, per kind of line (see the module's docstring).  Each round logs
    messages never seen before (a fresh queue id each, as in the daemon, where a message's
    first line is the first time its id is checked); a line of the four is timed after the
    lines before it for the same messages, untimed."""
    sink = _Sink()
    glog.configure("info", stream=cast(TextIO, sink))
    log = glog.get_logger("passerelle.daemon")
    crash = _crash()

    def fresh() -> list[list[Line]]:
        return [message_lines(_queue_id(), "to_trust" if i % 2 else "to_legacy")
                for i in range(n)]

    def emit(lines: list[Line]) -> None:
        for method, event, fields in lines:
            getattr(log, method)(event, **fields)

    def all_four(messages: list[list[Line]]) -> int:
        for lines in messages:
            emit(lines)
        return 4 * len(messages)

    def before(index: int) -> Callable[[], list[list[Line]]]:
        def prepare() -> list[list[Line]]:
            messages = fresh()
            for lines in messages:
                emit(lines[:index])
            return messages
        return prepare

    def line(index: int) -> Callable[[list[list[Line]]], int]:
        def run(messages: list[list[Line]]) -> int:
            for lines in messages:
                method, event, fields = lines[index]
                getattr(log, method)(event, **fields)
            return len(messages)
        return run

    def redact_only(messages: list[list[Line]]) -> int:
        for lines in messages:
            for method, event, fields in lines:
                glog.redact(None, method, {
                    "logger": "passerelle.daemon", **fields, "event": event, "level": method,
                    "timestamp": "2026-12-07T12:01:54.554137Z"})
        return 4 * len(messages)

    def rare(others: list[list[Line]]) -> int:
        for lines in others:
            emit(lines)
        return 3 * len(others)

    def exception(others: list[list[Line]]) -> int:
        for _ in others:
            log.error("translation.crashed", queue_id="EEC4829B9DD1434686B6", exc_info=crash)
        return len(others)

    def fresh_others() -> list[list[Line]]:
        return [other_lines(_queue_id()) for _ in range(max(1, n // 4))]

    all_four(fresh())  # warm: imports, first-use work, the words and peers
    out = {
        "per_line_message": _time(fresh, all_four, rounds),
        "redact_only_message": _time(fresh, redact_only, rounds),
    }
    for index, (_, event, _) in enumerate(message_lines(_queue_id(), "to_trust")):
        out[event] = _time(before(index), line(index), rounds)
    out["rare_lines"] = _time(fresh_others, rare, rounds)
    out["exception_line"] = _time(fresh_others, exception, rounds)
    out["per_message_us"] = out["per_line_message"] * 4
    return out


def _export(ref: str) -> Path:
    """The tree of git revision ``ref`` in a temporary directory (never a worktree)."""
    target = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "gateway"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _child(tree: Path | None, n: int) -> dict[str, float]:
    env = dict(os.environ)
    if tree is not None:
        env["BENCH_LOGS_TREE"] = str(tree)
    else:
        env.pop("BENCH_LOGS_TREE", None)
    out = subprocess.run([sys.executable, __file__, "--n", str(n), "--rounds", "1", "--raw"],
                         check=True, capture_output=True, text=True, env=env).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def side_by_side(ref: str, n: int, rounds: int) -> Iterator[tuple[str, dict[str, float]]]:
    """``rounds`` alternate runs of ``ref`` and this tree, each a fresh process; per figure
    the best of the rounds."""
    tree = _export(ref)
    best: dict[str, dict[str, float]] = {ref: {}, "this tree": {}}
    try:
        for _ in range(rounds):
            for name, where in ((ref, tree), ("this tree", None)):
                for key, value in _child(where, n).items():
                    best[name][key] = min(value, best[name].get(key, float("inf")))
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    yield from best.items()


LABELS = {
    "per_line_message": "one line of a message's four (mean)",
    "message.accepted": "  message.accepted",
    "message.translated": "  message.translated",
    "delivery.attempt": "  delivery.attempt",
    "message.delivered": "  message.delivered",
    "per_message_us": "a message's four lines",
    "redact_only_message": "redaction alone, per line",
    "rare_lines": "refusal / deferral / quarantine (mean)",
    "exception_line": "an exception line",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="messages per round (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="best of (5)")
    parser.add_argument("--against", metavar="REF", help="side by side with git revision REF")
    parser.add_argument("--json", type=Path, help="write the figures there")
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw:
        print(json.dumps(measure(args.n, args.rounds)))
        return 0
    if args.against:
        columns = dict(side_by_side(args.against, args.n, args.rounds))
    else:
        columns = {"this tree": measure(args.n, args.rounds)}
    names = list(columns)
    print(f"µs of CPU per line (best of {args.rounds} rounds of {args.n} messages; "
          f"load average {os.getloadavg()[0]:.2f})")
    print(f"{'':42s}" + "".join(f"{name:>14s}" for name in names)
          + ("       ×" if len(names) == 2 else ""))
    for key, label in LABELS.items():
        values = [columns[name][key] for name in names]
        ratio = f"{values[0] / values[1]:8.1f}" if len(values) == 2 and values[1] else ""
        print(f"{label:42s}" + "".join(f"{v:14.2f}" for v in values) + ratio)
    if args.json:
        args.json.write_text(json.dumps(columns, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
