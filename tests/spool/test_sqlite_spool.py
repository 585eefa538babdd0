"""The SQLite spool: durability, leases, backoff, admin transitions, corrupt rows, errors."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import BadInputError, SpoolFull, SpoolUnavailable
from gateway.spool import Direction, RetryPolicy, SqliteSpool, State


def spool(tmp_path: Path, **kw: object) -> SqliteSpool:
    return SqliteSpool(tmp_path / "spool.db", **kw)  # type: ignore[arg-type]


def put(s: SqliteSpool, n: int = 0, *, rcpts: tuple[str, ...] = ("a@x.example",),
        now: float = 1000.0) -> str:
    qid, dup = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                        rcpts=rcpts, data=f"Message-ID: <{n}@x>\r\n\r\nbody {n}".encode(),
                        message_id=f"<{n}@x>", now=now)
    assert not dup
    return qid


def test_accepted_message_survives_reopen_and_is_seen_by_another_connection(
        tmp_path: Path) -> None:
    s = spool(tmp_path)
    qid = put(s)
    other = sqlite3.connect(tmp_path / "spool.db")
    assert other.execute("SELECT COUNT(*) FROM messages WHERE queue_id=?", (qid,)).fetchone() \
        == (1,)
    s.close()
    again = spool(tmp_path)
    assert again.show(qid)[1].endswith(b"body 0")


def test_same_message_id_and_content_is_accepted_once(tmp_path: Path) -> None:
    s = spool(tmp_path)
    put(s)
    _, dup = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=b"Message-ID: <0@x>\r\n\r\nbody 0",
                      message_id="<0@x>", now=1001)
    assert dup and len(s.list()) == 1


def test_two_workers_never_share_work_and_a_dead_lease_is_taken_over(tmp_path: Path) -> None:
    s = spool(tmp_path)
    ids = {put(s, n) for n in range(5)}
    a = s.lease_translate("A", now=1000, duration=60, limit=3)
    b = s.lease_translate("B", now=1000, duration=120, limit=10)
    assert {w.queue_id for w in a} | {w.queue_id for w in b} == ids
    assert not {w.queue_id for w in a} & {w.queue_id for w in b}
    # A dies: after its lease expires, B takes A's work
    taken = s.lease_translate("B", now=1061, duration=60, limit=10)
    assert {w.queue_id for w in taken} == {w.queue_id for w in a}


def test_backoff_schedule_warning_and_lifetime(tmp_path: Path) -> None:
    s = spool(tmp_path, policy=RetryPolicy())
    qid = put(s, now=0)
    s.store_translated(qid, [(("a@x.example",), b"out")], now=0)
    now = 0.0
    delays = []
    warned_at = None
    for _ in range(200):
        work = s.lease_deliver("W", now=now, duration=30)
        assert len(work) == 1
        nxt, warn, expired = s.mark_deferred(work[0].output_id, work[0].rcpts, now=now,
                                             reason="451 busy")
        delays.append(nxt - now)
        if warn:
            assert warned_at is None  # warned once
            warned_at = now
        if expired:
            break
        now = nxt
    assert delays[:7] == [300, 600, 1200, 2400, 3600, 3600, 3600]
    assert warned_at is not None and 4 * 3600 <= warned_at < 5 * 3600
    assert expired and now >= 5 * 86400


def test_admin_transitions(tmp_path: Path) -> None:
    s = spool(tmp_path)
    qid = put(s)
    s.hold(qid, now=1)
    assert s.lease_translate("W", now=2, duration=5) == []
    s.release(qid, now=3)
    assert [w.queue_id for w in s.lease_translate("W", now=4, duration=5)] == [qid]
    s.translate_failed(qid, fate="quarantine", reason="text: not text", now=5)
    assert s.list(state="quarantined")[0].recipients[0].reason == "text: not text"
    with pytest.raises(BadInputError, match="no recipient in a state"):
        s.retry(qid, now=6)
    s.release(qid, now=7)
    assert s.counts() == {"received": 1}
    s.delete(qid)
    assert s.list() == []
    with pytest.raises(BadInputError, match="no message"):
        s.show(qid)


def test_corrupt_row_is_set_aside_and_others_still_served(tmp_path: Path) -> None:
    s = spool(tmp_path)
    bad, good = put(s, 1), put(s, 2)
    with sqlite3.connect(tmp_path / "spool.db") as db:
        db.execute("UPDATE messages SET data = X'00' WHERE queue_id=?", (bad,))
    work = s.lease_translate("W", now=1000, duration=60, limit=10)
    assert [w.queue_id for w in work] == [good]
    entry = s.list(state="quarantined")[0]
    assert entry.queue_id == bad and "corrupt" in entry.recipients[0].reason


def test_disk_full_is_4xx(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s._conn().execute("PRAGMA max_page_count = 20")
    with pytest.raises(SpoolFull) as exc:
        for n in range(200):
            s.accept(direction=Direction.TO_TRUST, mail_from="s@x", rcpts=("a@x",),
                     data=bytes(4000) + str(n).encode(), message_id=f"<{n}@x>", now=0)
    assert exc.value.smtp_reply().startswith("452 4.3.1")


def test_unreachable_spool_is_4xx(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolUnavailable) as exc:
        SqliteSpool(blocker / "sub" / "spool.db")
    assert exc.value.smtp_reply().startswith("451 4.3.0")


def _worker(path: str, name: str, out: multiprocessing.Queue[str]) -> None:
    s = SqliteSpool(Path(path))
    while True:
        work = s.lease_translate(name, now=1000, duration=600, limit=1)
        if not work:
            return
        for w in work:
            out.put(w.queue_id)
            s.store_translated(w.queue_id, [(w.rcpts, b"x")], now=1000)


def test_two_processes_process_each_item_exactly_once(tmp_path: Path) -> None:
    s = spool(tmp_path)
    ids = {put(s, n) for n in range(60)}
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "spool.db"), f"P{i}", q))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    seen = [q.get() for _ in range(q.qsize())] if hasattr(q, "qsize") else []
    assert sorted(seen) == sorted(ids)
    assert s.counts() == {str(State.TRANSLATED): 60}


def test_an_interrupted_delivery_is_flagged_in_doubt_on_the_next_attempt(tmp_path: Path) -> None:
    s = spool(tmp_path)
    qid = put(s)
    s.lease_translate("T", now=1000, duration=60)
    s.store_translated(qid, [(("a@x.example",), b"translated")], now=1000)
    first = s.lease_deliver("A", now=1000, duration=60)
    assert [w.in_doubt for w in first] == [False]
    # A dies holding the lease: whoever takes the work over is told it may be a duplicate
    again = s.lease_deliver("B", now=1061, duration=60)
    assert [w.in_doubt for w in again] == [True]
    s.mark_deferred(again[0].output_id, ["a@x.example"], now=1062, reason="4.4.1 down")
    # a restart releases every lease of the previous run the same way
    later = s.lease_deliver("C", now=1062 + 400, duration=60)
    assert [w.in_doubt for w in later] == [True]
    s.close()
    reopened = spool(tmp_path)
    assert reopened.recover(now=1500) == 1
    w = reopened.lease_deliver("D", now=1500, duration=60)[0]
    assert w.in_doubt
    reopened.mark_delivered(w.output_id, ["a@x.example"], now=1501)
    assert reopened.list(state="delivered")[0].queue_id == qid


def test_a_version_1_spool_is_migrated_at_open(tmp_path: Path) -> None:
    s = spool(tmp_path)
    put(s)
    s.close()
    db = sqlite3.connect(tmp_path / "spool.db")
    db.execute("ALTER TABLE recipients DROP COLUMN in_doubt")
    db.execute("ALTER TABLE recipients DROP COLUMN deliver_to")
    db.execute("UPDATE schema_version SET version=1")
    db.commit()
    db.close()
    again = spool(tmp_path)
    assert len(again.list()) == 1
    assert sqlite3.connect(tmp_path / "spool.db").execute(
        "SELECT version FROM schema_version").fetchone() == (2,)
