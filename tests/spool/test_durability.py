"""Which commits wait for an fsync, and what a process killed between them leaves behind.

A translation, its journal entries and its lease are committed without an fsync (the
worker's commits: see ``SqliteSpool.store_translated``); an accept, a delivery lease and a
delivery outcome are synced.  A kill -9 at any point between them leaves a message either
waiting to be translated again or translated and waiting for delivery (or delivered):
never lost, never half stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.spool import Direction, SqliteSpool, State, open_journal
from gateway.translate.trace import TraceRecord

SYNCHRONOUS = {1: "NORMAL", 2: "FULL"}


def _synchronous(s: SqliteSpool) -> str:
    return SYNCHRONOUS[s._conn().execute("PRAGMA synchronous").fetchone()[0]]


def test_a_synced_commit_after_unsynced_ones_is_synced(tmp_path: Path) -> None:
    s = SqliteSpool(tmp_path / "spool.db")
    qid, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@x.example",
                      rcpts=("a@x.example",), data=b"Subject: x\r\n\r\nbody\r\n",
                      message_id="<1@x>", now=1000)
    assert _synchronous(s) == "FULL"
    seen: list[str] = []
    s._conn().set_trace_callback(seen.append)  # type: ignore[union-attr]
    s.lease_translate("w", now=1000, duration=60, bodies=False)
    assert s.store_translated(qid, [(("a@x.example",), b"out")], now=1000, lease_owner="w",
                              durable=False)
    assert _synchronous(s) == "NORMAL"
    # two unsynced commits in a row switch once
    assert seen.count("PRAGMA synchronous=NORMAL") == 1
    s.accept(direction=Direction.TO_TRUST, mail_from="s@x.example", rcpts=("a@x.example",),
             data=b"Subject: y\r\n\r\nbody\r\n", message_id="<2@x>", now=1001)
    # the accept's BEGIN came after the connection was set back to FULL
    assert seen.index("PRAGMA synchronous=FULL") < len(seen) - 1 - seen[::-1].index(
        "BEGIN IMMEDIATE")
    assert _synchronous(s) == "FULL"
    work = s.lease_deliver("d", now=1001, duration=60)  # a synced commit too
    assert [w.queue_id for w in work] == [qid]
    assert _synchronous(s) == "FULL"


CHILD = textwrap.dedent("""
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from gateway.spool import Direction, SqliteSpool, open_journal
    from gateway.translate.trace import TraceRecord

    path, stop = Path(sys.argv[1]), sys.argv[2]
    spool, journal = SqliteSpool(path), open_journal(str(path))
    def at(point):
        print(point, flush=True)
        if point == stop:
            time.sleep(60)  # killed here
    qid, _ = spool.accept(direction=Direction.TO_TRUST, mail_from="s@x.example",
                          rcpts=("a@x.example",), data=b"Subject: x\\r\\n\\r\\nbody\\r\\n",
                          message_id="<m@x>", now=1000)
    at("accepted")
    # a worker process's own connections, as it opens them
    wspool, wjournal = SqliteSpool(path, migrate=False), open_journal(str(path), migrate=False)
    spool.lease_translate("d/t0", now=1000, duration=60, bodies=False)
    at("leased")
    item = wspool.translate_work(qid, lease_owner="d/t0")
    trace = TraceRecord("<m@x>", "to_trust")
    now = datetime.fromtimestamp(1000, UTC)
    for stage in ("received", "open", "compose"):
        trace.add_digests(stage, now, "0" * 64, "1" * 64)
    wjournal.append_traces([trace], synced_by_next=True, queue_id=qid)
    at("journaled")
    assert wspool.store_translated(qid, [(item.rcpts, b"translated")], now=1000,
                                   lease_owner="d/t0", durable=False)
    at("translated")
    out = spool.lease_deliver("d/d", now=1000, duration=60)
    at("delivery-leased")
    spool.mark_delivered(out[0].output_id, out[0].rcpts, now=1001)
    at("delivered")
""")
POINTS = ["accepted", "leased", "journaled", "translated", "delivery-leased", "delivered"]


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_9_at_any_point_loses_nothing(tmp_path: Path, point: str) -> None:
    path = tmp_path / "spool.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), point],
                             stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.strip() == point:
                break
        else:
            pytest.fail(f"the child ended before {point}: {child.wait()}")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    s = SqliteSpool(path)  # the next run of the daemon
    s.recover(now=2000)
    (qid, state), = s._conn().execute("SELECT queue_id, state FROM recipients").fetchall()
    journal = open_journal(str(path))
    assert journal.verify().ok
    if POINTS.index(point) < POINTS.index("translated"):
        assert state == str(State.RECEIVED)  # translated again
        again = s.lease_translate("d2/t0", now=2000, duration=60, bodies=False)
        assert [w.queue_id for w in again] == [qid]
        trace = TraceRecord("<m@x>", "to_trust")
        trace.add_digests("received", datetime.fromtimestamp(2000, UTC), "0" * 64, "1" * 64)
        journal.append_traces([trace], synced_by_next=True, queue_id=qid)
        assert s.store_translated(qid, [(("a@x.example",), b"again")], now=2000,
                                  lease_owner="d2/t0", durable=False)
        # journaled before the kill or not, the message was received once
        assert [e.stage for e in journal.entries("<m@x>")].count("received") == 1
        state = str(State.TRANSLATED)
    if point == "delivered":
        assert state == str(State.DELIVERED)
        assert s.lease_deliver("d2/d", now=2000, duration=60) == []
        return
    assert state == str(State.TRANSLATED)
    work = s.lease_deliver("d2/d", now=2000, duration=60)
    assert [w.queue_id for w in work] == [qid]  # delivered by the next run
    # a delivery lease held when the process died: the peer may have the message
    assert work[0].in_doubt is (point == "delivery-leased")
