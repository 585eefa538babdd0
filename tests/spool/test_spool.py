"""The spool's guarantees, the same on both backends (SQLite file, PostgreSQL database)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import spill as spilled_files
from gateway.errors import BadInputError, SpoolUnavailable
from gateway.spool import Direction, RetryPolicy, SqliteSpool, State, open_spool
from gateway.spool.schema import SCHEMA_VERSION

Open = Callable[..., SqliteSpool]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spool.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def spool(url: str) -> Open:
    opened: list[SqliteSpool] = []

    def make(**kw: object) -> SqliteSpool:
        s = open_spool(url, **kw)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in opened:
        s.close()


def put(s: SqliteSpool, n: int = 0, *, rcpts: tuple[str, ...] = ("a@x.example",),
        now: float = 1000.0) -> str:
    qid, dup = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                        rcpts=rcpts, data=f"Message-ID: <{n}@x>\r\n\r\nbody {n}".encode(),
                        message_id=f"<{n}@x>", now=now)
    assert not dup
    return qid


def test_accepted_message_is_seen_by_another_connection_and_after_reopen(spool: Open) -> None:
    s = spool()
    qid = put(s)
    other = spool()
    assert other.show(qid)[1].endswith(b"body 0")
    s.close()
    assert spool().show(qid)[1].endswith(b"body 0")


def test_same_message_id_and_content_is_accepted_once(spool: Open) -> None:
    s = spool()
    put(s)
    _, dup = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=b"Message-ID: <0@x>\r\n\r\nbody 0",
                      message_id="<0@x>", now=1001)
    assert dup and len(s.list()) == 1
    # same Message-ID, other content: a different message, queued
    _, dup = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=b"Message-ID: <0@x>\r\n\r\nautre",
                      message_id="<0@x>", now=1001)
    assert not dup and len(s.list()) == 2


def test_two_workers_never_share_work_and_a_dead_lease_is_taken_over(spool: Open) -> None:
    s = spool()
    ids = {put(s, n) for n in range(5)}
    a = s.lease_translate("A", now=1000, duration=60, limit=3)
    b = spool().lease_translate("B", now=1000, duration=120, limit=10)
    assert {w.queue_id for w in a} | {w.queue_id for w in b} == ids
    assert not {w.queue_id for w in a} & {w.queue_id for w in b}
    # A dies: after its lease expires, B takes A's work
    taken = s.lease_translate("B", now=1061, duration=60, limit=10)
    assert {w.queue_id for w in taken} == {w.queue_id for w in a}


def test_delivery_leases_are_exclusive_per_recipient(spool: Open) -> None:
    s = spool()
    qids = [put(s, n, rcpts=("a@x.example", "b@x.example")) for n in range(4)]
    for qid in qids:
        s.store_translated(qid, [(("a@x.example", "b@x.example"), b"out")], now=1000)
    one = s.lease_deliver("A", now=1000, duration=60, limit=2)
    two = spool().lease_deliver("B", now=1000, duration=60, limit=10)
    taken = [(w.output_id, r) for w in one + two for r in w.rcpts]
    assert len(taken) == len(set(taken)) == 8
    assert spool().lease_deliver("C", now=1000, duration=60) == []


def test_backoff_schedule_warning_and_lifetime(spool: Open) -> None:
    s = spool(policy=RetryPolicy())
    qid = put(s, now=0)
    s.store_translated(qid, [(("a@x.example",), b"out")], now=0)
    now = 0.0
    delays = []
    warned_at = None
    expired = False
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


def test_admin_transitions(spool: Open) -> None:
    s = spool()
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


def test_corrupt_row_is_set_aside_and_others_still_served(spool: Open) -> None:
    s = spool()
    bad, good = put(s, 1), put(s, 2)
    with s._tx() as db:
        db.execute("UPDATE bodies SET data = ? WHERE queue_id=?", (b"\x00", bad))
    work = s.lease_translate("W", now=1000, duration=60, limit=10)
    assert [w.queue_id for w in work] == [good]
    entry = s.list(state="quarantined")[0]
    assert entry.queue_id == bad and "corrupt" in entry.recipients[0].reason


def test_an_interrupted_delivery_is_flagged_in_doubt_on_the_next_attempt(spool: Open,
                                                                        url: str) -> None:
    s = spool()
    qid = put(s)
    s.lease_translate("T", now=1000, duration=60)
    s.store_translated(qid, [(("a@x.example",), b"translated")], now=1000)
    first = s.lease_deliver("A", now=1000, duration=60)
    assert [w.in_doubt for w in first] == [False]
    # A dies holding the lease: whoever takes the work over is told it may be a duplicate
    again = s.lease_deliver("B", now=1061, duration=60)
    assert [w.in_doubt for w in again] == [True]
    s.mark_deferred(again[0].output_id, ["a@x.example"], now=1062, reason="4.4.1 down")
    later = s.lease_deliver("C", now=1062 + 400, duration=60)
    assert [w.in_doubt for w in later] == [True]  # stays in doubt until an outcome
    s.close()
    reopened = spool()
    if url.startswith("sqlite"):
        # one box: a restart releases every lease of the previous run, marked in doubt
        assert reopened.recover(now=1500) == 1
        w = reopened.lease_deliver("D", now=1500, duration=60)[0]
    else:
        # shared database: a starting instance leaves the others' leases alone
        assert reopened.recover(now=1500) == 0
        assert reopened.lease_deliver("D", now=1500, duration=60) == []
        w = reopened.lease_deliver("D", now=1523, duration=60)[0]
    assert w.in_doubt
    reopened.mark_delivered(w.output_id, ["a@x.example"], now=1600)
    assert reopened.list(state="delivered")[0].queue_id == qid
    assert reopened.lease_deliver("E", now=9999, duration=60) == []


def _worker(url: str, name: str, out: multiprocessing.Queue[str]) -> None:
    s = open_spool(url)
    while True:
        work = s.lease_translate(name, now=1000, duration=600, limit=1)
        if not work:
            return
        for w in work:
            out.put(w.queue_id)
            s.store_translated(w.queue_id, [(w.rcpts, b"x")], now=1000)


def test_two_processes_process_each_item_exactly_once(spool: Open, url: str) -> None:
    s = spool()
    ids = {put(s, n) for n in range(60)}
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, f"P{i}", q)) for i in range(2)]
    for p in procs:
        p.start()
    seen = [q.get(timeout=60) for _ in range(60)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(seen) == sorted(ids)
    assert s.counts() == {str(State.TRANSLATED): 60}


def test_unreachable_spool_is_4xx(tmp_path: Path, url: str) -> None:
    if url.startswith("sqlite"):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        bad = f"sqlite:///{blocker / 'sub' / 'spool.db'}"
    else:
        bad = "postgresql://passerelle:wrong@127.0.0.1:1/nowhere"
    with pytest.raises(SpoolUnavailable) as exc:
        open_spool(bad)
    assert exc.value.smtp_reply().startswith("451 4.3.0")
    assert "wrong" not in str(exc.value)  # no password in the message


def test_a_version_2_spool_keeps_its_messages_when_opened(spool: Open, url: str) -> None:
    """Version 2 kept a message's bytes in messages.data; opening moves them to bodies."""
    s = spool()
    qid = put(s, 7)
    blob = "BYTEA" if url.startswith("postgresql") else "BLOB"
    with s._tx() as db:  # back to version 2's tables
        db.execute("ALTER TABLE messages DROP COLUMN hub_auth")
        db.execute(f"ALTER TABLE messages ADD COLUMN data {blob}")
        db.execute("UPDATE messages SET data = (SELECT data FROM bodies b WHERE b.queue_id = "
                   "messages.queue_id)")
        db.execute("DELETE FROM bodies")
        db.execute("UPDATE schema_version SET version=2")
    s.close()
    again = spool()
    assert again.show(qid)[1].endswith(b"body 7")
    assert [w.queue_id for w in again.lease_translate("W", now=1000, duration=60)] == [qid]
    with again._read() as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        columns = db.execute("SELECT * FROM messages").description
    assert "data" not in [c[0] for c in columns]


def test_the_hub_authentication_travels_with_the_message(spool: Open) -> None:
    """How the legacy hub authenticated the session is stored with the message and comes
    back with its translation work, also after a restart; a message without it has none."""
    s = spool()
    authed, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                         rcpts=("a@t.example",), data=b"Message-ID: <hub-1@x>\r\n\r\nx",
                         message_id="<hub-1@x>", now=1.0, hub_auth="certificate")
    plain, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                        rcpts=("a@t.example",), data=b"Message-ID: <hub-2@x>\r\n\r\nx",
                        message_id="<hub-2@x>", now=1.0)
    s.close()
    work = {w.queue_id: w.hub_auth for w in spool().lease_translate("W", now=10, duration=60)}
    assert work == {authed: "certificate", plain: ""}


def test_a_version_3_spool_gets_the_hub_column_and_keeps_its_messages(spool: Open) -> None:
    s = spool()
    qid = put(s, 3)
    with s._tx() as db:  # back to version 3's tables
        db.execute("ALTER TABLE messages DROP COLUMN hub_auth")
        db.execute("UPDATE schema_version SET version=3")
    s.close()
    again = spool()
    assert [(w.queue_id, w.hub_auth) for w in again.lease_translate("W", now=1000,
                                                                    duration=60)] == [(qid, "")]
    with again._read() as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


LARGE_DATA = b"Message-ID: <big@x>\r\n\r\n" + bytes(range(256)) * 9000  # > spool LARGE


def test_large_messages_travel_as_files_in_the_spill_directory(spool: Open,
                                                               tmp_path: Path) -> None:
    """A message larger than LARGE is stored in pieces and handed out as a private file,
    intact; smaller ones still come in memory."""
    from gateway.spool.sqlite import LARGE

    assert len(LARGE_DATA) > LARGE
    s = spool()
    spill = tmp_path / "spill"
    spill.mkdir()
    qid, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=bytearray(LARGE_DATA),
                      message_id="<big@x>", now=1000.0)
    small = put(s, 1)
    work = {w.queue_id: w for w in s.lease_translate("W", now=1000, duration=60, limit=5,
                                                     spill=spill)}
    big = work[qid]
    assert big.data == b"" and Path(big.path).parent == spill
    assert spilled_files.read_bytes(Path(big.path)) == LARGE_DATA
    assert Path(big.path).stat().st_mode & 0o077 == 0  # it holds a message: owner only
    assert work[small].path == "" and work[small].data.endswith(b"body 1")
    translated = tmp_path / "out"
    spilled_files.write_bytes(translated, LARGE_DATA[::-1])
    s.store_translated(qid, [(("a@x.example",), translated)], now=1000)
    s.store_translated(small, [(("a@x.example",), b"small, translated")], now=1000)
    out = {d.queue_id: d for d in s.lease_deliver("D", now=1000, duration=60, spill=spill)}
    assert spilled_files.read_bytes(Path(out[qid].path)) == LARGE_DATA[::-1]
    assert out[small].data == b"small, translated" and out[small].path == ""
    assert s.show(qid)[1] == LARGE_DATA


def test_a_large_message_whose_bytes_were_damaged_is_set_aside(spool: Open,
                                                               tmp_path: Path) -> None:
    s = spool()
    qid, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=LARGE_DATA, message_id="<big@x>",
                      now=1000.0)
    with s._tx() as db:
        db.execute("UPDATE bodies SET data = ? WHERE queue_id=?", (LARGE_DATA[:-1] + b"!", qid))
    spill = tmp_path / "spill"
    spill.mkdir()
    assert s.lease_translate("W", now=1000, duration=60, spill=spill) == []
    assert list(spill.iterdir()) == []  # no file left behind
    entry = s.list(state="quarantined")[0]
    assert entry.queue_id == qid and "corrupt" in entry.recipients[0].reason


def test_head_reads_the_start_of_a_stored_message_only(spool: Open) -> None:
    """What a notice quotes of a message (its header block), from either backend."""
    s = spool()
    qid, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=LARGE_DATA, message_id="<big@x>",
                      now=1000.0)
    assert s.head(qid, 100) == LARGE_DATA[:100]
    assert s.head(put(s, 3), 10_000) == b"Message-ID: <3@x>\r\n\r\nbody 3"
    with pytest.raises(BadInputError):
        s.head("NOSUCHMESSAGE", 100)


def test_what_is_accepted_after_a_translation_lease_is_synced_to_disk_again(
        spool: Open, url: str) -> None:
    """A translation lease is committed without waiting for the disk (lost in a power cut,
    the message is only translated again); the accept that follows must wait for it."""
    s = spool()
    put(s, 1)
    assert s.lease_translate("A", now=1000, duration=60, limit=5)
    assert not s.lease_translate("A", now=1000, duration=60, limit=5)  # nothing: same
    put(s, 2)
    db = s._conn()
    if url.startswith("sqlite"):
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"


def test_translation_leases_take_the_oldest_messages_first_each_once(spool: Open) -> None:
    s = spool()
    ids = [put(s, n, now=1000.0 + n,
               rcpts=("a@x.example", "b@x.example", "c@x.example") if n == 2 else
               ("a@x.example",)) for n in range(6)]
    first = s.lease_translate("A", now=2000, duration=60, limit=2)
    assert [w.queue_id for w in first] == ids[:2]
    rest = s.lease_translate("B", now=2000, duration=60, limit=10)
    assert [w.queue_id for w in rest] == ids[2:]  # three recipients, one message, once
    assert rest[0].rcpts == ("a@x.example", "b@x.example", "c@x.example")


def test_a_translation_is_stored_only_by_the_lease_that_holds_the_message(spool: Open) -> None:
    """Envelopes leased without their bytes; whoever translates reads them by id and stores
    the translation, unless the lease passed to another meanwhile (the first one's daemon
    was killed, or its lease ran out): then nothing is stored from it."""
    s = spool()
    qid = put(s)
    [envelope] = s.lease_translate("A", now=1000, duration=60, limit=1, bodies=False)
    assert (envelope.queue_id, envelope.data, envelope.path) == (qid, b"", "")
    assert envelope.rcpts == ("a@x.example",) and envelope.mail_from == "s@legacy.example"
    work = spool().translate_work(qid)  # a worker's own connection
    assert work is not None and work.data.endswith(b"body 0")
    [taken] = s.lease_translate("B", now=1061, duration=60, limit=1, bodies=False)  # A's ran out
    assert taken.queue_id == qid
    assert spool().translate_work(qid, lease_owner="A") is None  # A's worker came too late
    assert spool().translate_work(qid, lease_owner="B") is not None
    assert not s.store_translated(qid, [(("a@x.example",), b"from A")], now=1062,
                                  lease_owner="A")
    assert s.counts().get("received") == 1  # A stored nothing
    assert s.store_translated(qid, [(("a@x.example",), b"from B")], now=1063, lease_owner="B")
    assert s.counts().get("translated") == 1
    [out] = s.lease_deliver("D", now=1064, duration=60)
    assert out.data == b"from B"
    assert spool().translate_work(qid) is None  # translated: nothing waits for it


def test_a_message_read_by_id_whose_bytes_were_damaged_is_set_aside(spool: Open) -> None:
    s = spool()
    bad = put(s, 1)
    with s._tx() as db:
        db.execute("UPDATE bodies SET data = ? WHERE queue_id=?", (b"\x00", bad))
    [envelope] = s.lease_translate("W", now=1000, duration=60, limit=1, bodies=False)
    assert envelope.queue_id == bad  # its bytes not read: not checked yet
    assert spool().translate_work(bad) is None
    entry = s.list(state="quarantined")[0]
    assert entry.queue_id == bad and "corrupt" in entry.recipients[0].reason
