"""The hash-chained journal on both backends: one chain whoever writes, tampering found."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.journal import Journal
from gateway.spool import open_journal

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spool.db'}"
    return str(request.getfixturevalue("pg_url"))


def _writer(url: str, name: str, n: int) -> None:
    j = open_journal(url)
    for k in range(n):
        j.append(f"<{name}-{k}@x>", "received", {"size": k}, at=AT)
    j.close()


def test_concurrent_writers_keep_one_chain(url: str) -> None:
    j = open_journal(url)
    threads = [threading.Thread(target=_writer, args=(url, f"t{i}", 25)) for i in range(3)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, f"p{i}", 25)) for i in range(2)]
    for w in (*threads, *procs):
        w.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    result = j.verify()
    assert result.ok and result.count == 125
    assert [e.seq for e in j.entries()] == list(range(1, 126))
    assert j.size()[0] == 125


def test_a_changed_entry_is_named(url: str) -> None:
    j: Journal = open_journal(url)
    for k in range(5):
        j.append(f"<m{k}@x>", "open", {"signer": "ABC", "k": k}, at=AT)
    assert j.verify().ok
    with j.store.reading() as db:  # someone with access to the database changes a record
        db.execute("UPDATE journal SET record = ? WHERE seq = ?", ('{"signer":"EVIL","k":2}', 3))
    result = j.verify()
    assert not result.ok and result.first_broken == 3
    assert "does not match its hash" in result.reason
    assert [e.record.get("signer") for e in j.entries("<m2@x>")] == ["EVIL"]


def test_the_traces_of_one_message_are_journaled_in_order_in_one_chain(url: str) -> None:
    """One message for two legacy recipients: two traces, every step of each in order."""
    from gateway.translate.trace import TraceRecord

    traces = []
    for rcpt in ("a", "b"):
        t = TraceRecord("<m@x>", "to_legacy")
        t.add_digests("received", AT, "d0", "d0", size=1)
        t.add_digests("seal", AT, "d0", f"d-{rcpt}", recipient=rcpt)
        traces.append(t)
    j = open_journal(url)
    j.append("<before@x>", "received", {"size": 1}, at=AT)
    j.append_traces(traces, at=AT)
    assert j.verify().ok
    got = [(e.stage, e.record["output_sha256"]) for e in j.entries("<m@x>")]
    assert got == [("received", "d0"), ("seal", "d-a"), ("received", "d0"), ("seal", "d-b")]
    assert [e.seq for e in j.entries()] == [1, 2, 3, 4, 5]


def test_after_traces_synced_by_the_next_commit_appends_are_synced_again(url: str) -> None:
    """Traces journaled just before the spool's commit ride on its fsync; whatever is
    journaled afterwards waits for the disk again."""
    from gateway.translate.trace import TraceRecord

    trace = TraceRecord("<m@x>", "to_trust")
    trace.add_digests("received", AT, "d0", "d0", size=1)
    j = open_journal(url)
    j.append_traces([trace], at=AT, synced_by_next=True)
    j.append("<after@x>", "received", {"size": 2}, at=AT)
    assert j.verify().ok and [e.seq for e in j.entries()] == [1, 2]
    with j.store.reading() as db:  # this thread's connection, the one that appended
        if url.startswith("sqlite"):
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        else:
            assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
