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


def test_each_entry_is_dated_by_its_step_and_a_message_is_received_once(url: str) -> None:
    """A message translated again (released from quarantine) keeps its one ``received``
    step; another message with the same Message-ID has its own; each entry is at its
    step's time, and a queue id finds its message's steps alone."""
    from datetime import timedelta

    from gateway.translate.trace import TraceRecord

    def translation(queue_received: datetime) -> TraceRecord:
        ticks = iter([0.0, 0.0, 0.25, 0.5])
        t = TraceRecord("<m@x>", "to_trust", clock=lambda: next(ticks))
        t.add_digests("received", AT, "d0", "d0", stamped=queue_received, size=1)
        t.add_digests("open", AT, "d0", "d1")
        t.add_digests("sign", AT, "d1", "d2")
        return t

    j = open_journal(url)
    stored = AT - timedelta(seconds=30)
    j.append_traces([translation(stored)], queue_id="Q1")
    j.record("<m@x>", "quarantined", at=AT, direction="to_trust", queue_id="Q1",
             kind="unknown_lab", operator="", digest="d0")
    j.append_traces([translation(stored)], queue_id="Q1")  # released, translated again
    j.append_traces([translation(AT)], queue_id="Q2")  # the same Message-ID, another message
    assert j.verify().ok
    q1 = j.entries_of_queue("Q1")
    assert [e.stage for e in q1] == ["received", "open", "sign", "quarantined", "open", "sign"]
    assert [e.at for e in q1[:3]] == [stored.isoformat(), (AT + timedelta(seconds=0.25))
                                      .isoformat(), (AT + timedelta(seconds=0.5)).isoformat()]
    assert all(e.at == e.record["at"] for e in q1)
    assert "operator" not in q1[3].record  # empty facts are left out
    assert q1[3].record["kind"] == "unknown_lab" and q1[3].record["queue_id"] == "Q1"
    assert [e.stage for e in j.entries_of_queue("Q2")] == ["received", "open", "sign"]
    assert j.entries_of_queue("Q3") == [] and j.entries_of_queue("Q%") == []
    assert [e.stage for e in j.entries("<m@x>")].count("received") == 2


def test_the_journal_keeps_a_repairs_digest_never_its_words(url: str) -> None:
    """A repaired patient name (and a letter's repaired words) travel in the trace attached
    to the message; the journal, which outlives the message, holds their digest only."""
    import hashlib

    from gateway.translate.trace import TraceRecord

    garbled, repaired = "Mme PÃ©lissier GonÃ§alves", "Mme Pélissier Gonçalves"
    t = TraceRecord("<names@x>", "to_trust")
    t.add_digests("repair", AT, "d0", "d1",
                  changes=[{"kind": "mojibake", "line": 1, "column": 4,
                            "before": "Ã©", "after": "é"}])
    t.add_digests("compose", AT, "d1", "d2", strings=[
        {"where": "HPRIM patient name", "decided": True, "before": garbled, "after": repaired,
         "how": "utf-8 read as cp1252"}])
    attached = [s.to_json() for s in t.steps]  # what the message's reader is given
    assert attached[1]["details"]["strings"][0]["after"] == repaired
    j = open_journal(url)
    j.append_traces([t], queue_id="q1")
    assert j.verify().ok
    compose = next(e for e in j.entries("<names@x>") if e.stage == "compose")
    entry = compose.record["details"]["strings"][0]
    assert entry["after"] == {"sha256": hashlib.sha256(repaired.encode()).hexdigest(),
                              "chars": len(repaired)}
    assert entry["where"] == "HPRIM patient name" and entry["decided"] is True
    stored = repr([e.record for e in j.entries()])
    for words in (garbled, repaired, "Pélissier", "Ã©", "Gonçalves"):
        assert words not in stored
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
        assert "Pélissier".encode() not in raw and b"Gon\\u00e7alves" not in raw
