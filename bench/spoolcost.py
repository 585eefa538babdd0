"""The spool and journal bookkeeping one legacy → trust message costs, in-process.

What the daemon and a translation worker do in the spool and the journal for each message,
without SMTP or translation: the intake's group commit (``--group`` arrivals per commit), the
translation lease, the worker's read of the message, its trace and translation stored, the
delivery lease and the delivered outcome and its trace steps.  Printed per phase: CPU ms per
message (``time.process_time``: user + system, so an fsync's own CPU counts, its wait does
not) and wall ms per message; and SQL statements per message (``set_trace_callback``), counted
in a run of their own: the callback is given each statement's text with its parameters
expanded — a 20 KB message as 40 KB of hex — and would make the CPU figures its own.

    .venv/bin/python bench/spoolcost.py --n 400
    PYTHONPATH=/path/to/other/tree python bench/spoolcost.py --n 400   # side by side

Only the spool API is used, so the same script measures an older tree (one without
``mark_delivered_many`` records its outcomes one call each).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.journal import step_record
from gateway.spool import Direction, State, open_journal, open_spool
from gateway.translate.trace import TraceRecord

BODY = (b"From: a@legacy.example\r\nTo: b@hopital.example\r\nMessage-ID: <%d@x>\r\n"
        b"Subject: CR\r\n\r\n" + b"x" * 20_000)


class Meter:
    def __init__(self, count: bool) -> None:
        self.count = count
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.sql: dict[str, int] = defaultdict(int)
        self.phase = ""

    def watch(self, db: Any) -> None:
        if self.count and isinstance(db, sqlite3.Connection):
            db.set_trace_callback(self._statement)

    def _statement(self, _text: str) -> None:
        self.sql[self.phase] += 1

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        self.phase = phase
        c, w = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[phase] += time.process_time() - c
            self.wall[phase] += time.perf_counter() - w
            self.phase = ""


def trace_of(message_id: str, digest: str) -> TraceRecord:
    now = datetime.now(UTC)
    t = TraceRecord(message_id, "to_trust")
    for stage in ("received", "open", "verify", "repair", "document", "rewrite", "seal",
                  "compose"):
        t.add_digests(stage, now, digest, digest, tools=["rnp"], size=20_000)
    return t


def run(n: int, group: int, workdir: Path, *, count: bool = False) -> dict[str, Any]:
    url = str(workdir / "spool.db")
    spool = open_spool(url)
    journal = open_journal(url)
    # the worker's own connections, as a worker process opens them
    wspool = open_spool(url, migrate=False)
    wjournal = open_journal(url, migrate=False)
    spill = workdir / "spill"
    spill.mkdir()
    m = Meter(count)
    for s in (spool, wspool):
        m.watch(s._conn())
    for j in (journal, wjournal):
        with j.store.reading() as db:
            m.watch(db)
    many: Callable[..., Any] | None = getattr(spool, "mark_delivered_many", None)
    # as the worker calls it (a tree whose store_translated has no ``durable`` syncs it)
    unsynced = ({"durable": False} if "durable" in inspect.signature(
        wspool.store_translated).parameters else {})
    sent = 0
    for start in range(0, n, group):
        now = time.time()
        with m("intake"):
            spool.accept_many([(Direction.TO_TRUST, "a@legacy.example", ("b@hopital.example",),
                                BODY % i, f"<{i}@x>", "127.0.0.1", State.RECEIVED, "")
                               for i in range(start, min(n, start + group))], now=now)
        while True:
            with m("translation lease"):
                work = spool.lease_translate("d/t0", now=now, duration=300, limit=1,
                                             bodies=False)
            if not work:
                break
            qid = work[0].queue_id
            with m("worker: read"):
                item = wspool.translate_work(qid, spill, lease_owner="d/t0")
            assert item is not None
            trace = trace_of(f"<{qid}@x>", "0" * 64)
            with m("worker: store"):
                wjournal.append_traces([trace], synced_by_next=True, queue_id=qid)
                stored = wspool.store_translated(qid, [(item.rcpts, item.data + b"!")],
                                                 now=now, lease_owner="d/t0", **unsynced)
            assert stored
        with m("delivery lease"):
            out = spool.lease_deliver("d/d", now=now, duration=300, limit=32, spill=spill)
        with m("delivery record"):
            done = [(w.output_id, list(w.rcpts)) for w in out]
            if many is not None:
                many(done, now=now)
            else:
                for oid, rcpts in done:
                    spool.mark_delivered(oid, rcpts, now=now)
            steps = [(w.message_id, "delivery", step_record(
                at=datetime.fromtimestamp(now, UTC), direction="to_trust",
                queue_id=w.queue_id, recipient_domain="hopital.example",
                relay="127.0.0.1:2525", status="sent", dsn="2.0.0", reply="250 ok",
                attempt=1)) for w in out]
            journal.record_many(steps)
            sent += len(out)
    assert sent == n, (sent, n)
    phases = list(m.cpu)
    return {"n": n, "group": group,
            "cpu_ms_per_msg": {p: round(1000 * m.cpu[p] / n, 3) for p in phases},
            "wall_ms_per_msg": {p: round(1000 * m.wall[p] / n, 3) for p in phases},
            "sql_per_msg": {p: round(m.sql[p] / n, 2) for p in phases},
            "cpu_ms_total": round(1000 * sum(m.cpu.values()) / n, 3),
            "sql_total": round(sum(m.sql.values()) / n, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--group", type=int, default=4, help="arrivals per intake commit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        report = run(args.n, args.group, Path(d))
    with tempfile.TemporaryDirectory() as d:
        counted = run(min(args.n, 10 * args.group), args.group, Path(d), count=True)
    report["sql_per_msg"], report["sql_total"] = counted["sql_per_msg"], counted["sql_total"]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
