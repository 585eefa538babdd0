"""The trace journal: append-only entries chained by hash, so any later change shows.

Each entry holds a sequence number, the message id, the stage, the time, the canonical JSON
of the trace step, the previous entry's hash and its own::

    hash = SHA-256(prev_hash "\\n" seq "\\n" message_id "\\n" stage "\\n" at "\\n" record)

``verify`` recomputes the chain from the first entry and names the first one that does not
match.

A message's entries share its trace id (:func:`gateway.translate.trace.trace_id`: its
Message-ID) and each record names the spool's ``queue_id`` and the ``direction``.  The steps of
a translation (:meth:`Journal.append_traces`) are recorded as the trace has them (``at``,
``input_sha256``, ``output_sha256``, ``details``); the other steps of a message's life
(:meth:`Journal.record`: ``delivery`` per recipient and attempt, ``quarantined``, ``bounced``,
``released``, ``notice`` and ``written`` linking a notice and its message, ``purged``) carry
``at`` and their facts as plain fields.  Each entry's ``at`` is its step's own time.

Appends are serialised (SQLite ``BEGIN IMMEDIATE``; a PostgreSQL advisory lock), so
concurrent writers — threads, processes or instances — keep a single chain.

The chain is kept in a :class:`JournalStore`, which the spool's back-ends implement in the
spool's own database (:class:`gateway.spool.sqlitedb.SqliteJournalStore`,
:class:`gateway.spool.pg.PgJournalStore`); :func:`gateway.spool.open_journal` opens the one a
URL names.  This module knows no database driver: it depends on that interface only.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

GENESIS = "0" * 64
_QUEUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def entry_hash(prev: str, seq: int, message_id: str, stage: str, at: str, record: str) -> str:
    data = "\n".join((prev, str(seq), message_id, stage, at, record)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    message_id: str
    stage: str
    at: str
    record: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_broken: int | None = None
    reason: str = ""


class Conn(Protocol):
    """What the journal and the spool need of a DB-API connection (sqlite3, or
    :class:`gateway.pgconn.PgConn`): statements in SQLite's dialect, ``?`` parameters."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...


class JournalStore(Protocol):
    """Where a chain is kept: a table ``journal`` (see :mod:`gateway.spool.schema`) reached
    through connections whose driver errors come out as :class:`SpoolUnavailable` (or
    :class:`SpoolFull`), never as themselves."""

    def reading(self) -> AbstractContextManager[Conn]:
        """This thread's connection, for reads outside a transaction."""
        ...

    def appending(self, *, durable: bool = True) -> AbstractContextManager[Conn]:
        """A transaction that no other writer — thread, process or instance — can enter
        until it ends; committed when the block ends, rolled back when it raises.
        ``durable=False``: its commit does not wait for the disk (the caller's next commit,
        to the same database, syncs it with its own)."""
        ...

    def close(self) -> None: ...


class Journal:
    """The chain, in a store (the same database as the spool by default)."""

    def __init__(self, store: JournalStore) -> None:
        self.store = store

    def append(self, message_id: str, stage: str, record: dict[str, Any], *,
               at: datetime) -> JournalEntry:
        return self._append_many([(message_id, stage, record, at)])[0]

    def record(self, message_id: str, stage: str, *, at: datetime, direction: str,
               queue_id: str, **facts: Any) -> JournalEntry:
        """One step of a message's life outside its translation, journaled under its trace
        id (``message_id``): ``stage`` at ``at`` for the spool's message ``queue_id``, with
        ``facts`` (ids, digests, sizes, kinds, outcomes — never content; empty ones left
        out).  For example, the retention purge of a stored message::

            journal.record(trace_id(entry.message_id, entry.digest), "purged", at=now,
                           direction=entry.direction, queue_id=entry.queue_id,
                           reason="retention", digest=entry.digest, size=entry.size)

        (:func:`gateway.spool.events.purged` does that and writes its log line)."""
        return self.append(message_id, stage, step_record(
            at=at, direction=direction, queue_id=queue_id, **facts), at=at)

    def record_many(self, steps: Sequence[tuple[str, str, dict[str, Any]]], *,
                    synced_by_next: bool = False) -> list[JournalEntry]:
        """Several :meth:`record` steps in one transaction (a bulk action on thousands of
        messages): each ``(message_id, stage, step_record(...))``.  ``synced_by_next``: as
        for :meth:`append_traces` (the caller's commit to the same database right after
        syncs this one)."""
        return self._append_many([(m, stage, record, datetime.fromisoformat(record["at"]))
                                  for m, stage, record in steps], durable=not synced_by_next)

    def append_trace(self, trace: Any, *, at: datetime | None = None,
                     queue_id: str = "") -> list[JournalEntry]:
        """Every step of a TraceRecord, in order, in one transaction."""
        return self.append_traces([trace], queue_id=queue_id)

    def append_traces(self, traces: Sequence[Any], *, at: datetime | None = None,
                      synced_by_next: bool = False, queue_id: str = ""
                      ) -> list[JournalEntry]:
        """Every step of each TraceRecord, in order, in one transaction (one message's
        translations: one per recipient group), each entry at its step's own time (``at``:
        unused, kept for callers that still give it).  With ``queue_id``, each record names
        the spool's message, and a ``received`` step already journaled for that message (a
        message translated again: released from quarantine, or after a crash) is not
        appended again: it was received once.  ``synced_by_next``: the caller commits to
        the same database right after (the spool: the translation these traces describe),
        and that commit's fsync — or, unsynced too, the next synced commit's (the delivery
        lease that takes the translation) — takes this one's with it: this one does not
        wait for the disk (lost in a power cut before then, both are: the message is
        translated and journaled again)."""
        items = []
        for trace in traces:
            for step in trace.steps:
                record = {"direction": trace.direction, **without_text(step.to_json())}
                if queue_id:
                    record["queue_id"] = queue_id
                items.append((trace.message_id, step.stage, record, step.at))
        return self._append_many(items, durable=not synced_by_next,
                                 received_once=queue_id)

    _bytes: int | None = None  # characters of records, once summed (see size)
    _size_lock = threading.Lock()

    def _append_many(self, items: list[tuple[str, str, dict[str, Any], datetime]], *,
                     durable: bool = True, received_once: str = "") -> list[JournalEntry]:
        """Append ``items`` after the last entry, in one transaction; ``received_once``: a
        queue id whose ``received`` step, once journaled, is not appended again."""
        out: list[JournalEntry] = []
        written = 0
        with self.store.appending(durable=durable) as db:
            if received_once:
                items = [item for item in items if item[1] != "received"
                         or not _received(db, item[0], received_once)]
            row = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
                             ).fetchone()
            seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            for message_id, stage, record, at in items:
                when = at.isoformat()
                seq += 1
                body = canonical(record)
                digest = entry_hash(prev, seq, message_id, stage, when, body)
                db.execute("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (seq, message_id, stage, when, body, prev, digest))
                out.append(JournalEntry(seq, message_id, stage, when, record, prev, digest))
                prev = digest
                written += len(body)
        self._count(written)
        return out

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        with self.store.reading() as db:
            yield from db.execute(
                f"SELECT seq, message_id, stage, at, record, prev_hash, hash FROM journal "
                f"{where} ORDER BY seq", args)

    def entries(self, message_id: str | None = None) -> list[JournalEntry]:
        rows = self._rows("WHERE message_id = ?", (message_id,)) if message_id else self._rows()
        out = []
        for seq, mid, stage, at, record, prev, digest in rows:
            try:
                parsed = json.loads(record)
            except ValueError:
                parsed = {"unreadable": True}
            out.append(JournalEntry(seq, mid, stage, at, parsed, prev, digest))
        return out

    def entries_of_queue(self, queue_id: str) -> list[JournalEntry]:
        """The entries of the spool's message ``queue_id`` (its trace id found from its
        records: the message may be long gone from the spool), without those of another
        message that had the same Message-ID."""
        if not _QUEUE_ID.fullmatch(queue_id):
            return []
        found = None
        with self.store.reading() as db:  # ("_" matches any one character: checked below)
            for message_id, body in db.execute(
                    "SELECT message_id, record FROM journal WHERE record LIKE ? ORDER BY seq "
                    "LIMIT 50", (f'%"queue_id":"{queue_id}"%',)).fetchall():
                try:
                    if json.loads(body).get("queue_id") == queue_id:
                        found = str(message_id)
                        break
                except ValueError:
                    continue
        if found is None:
            return []
        return [e for e in self.entries(found) if e.record.get("queue_id") in (None, queue_id)]

    def verify(self) -> VerifyResult:
        prev = GENESIS
        count = 0
        expected_seq = 1
        for seq, mid, stage, at, record, prev_hash, digest in self._rows():
            count += 1
            if seq != expected_seq:
                return VerifyResult(False, count, seq, f"entry {expected_seq} is missing")
            if prev_hash != prev:
                return VerifyResult(False, count, seq, "does not follow the previous entry")
            if entry_hash(prev, seq, mid, stage, at, record) != digest:
                return VerifyResult(False, count, seq, "content does not match its hash")
            prev = digest
            expected_seq += 1
        return VerifyResult(True, count)

    def size(self) -> tuple[int, int]:
        """(entries, bytes of records).  Entries is the last sequence number (the chain has no
        gaps); the byte count is summed once, then kept up to date by this process's appends
        (another instance's appends show at the next start) — the gauges ask every few
        seconds and a full scan grows with the journal."""
        with self.store.reading() as db:
            row = db.execute("SELECT seq FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
            entries = int(row[0]) if row else 0
            if self._bytes is None:
                total = db.execute("SELECT COALESCE(SUM(LENGTH(record)), 0) FROM journal"
                                   ).fetchone()
                self._bytes = int(total[0])
        return entries, self._bytes

    def _count(self, written: int) -> None:
        with self._size_lock:
            if self._bytes is not None:
                self._bytes += written

    def close(self) -> None:
        self.store.close()


# Keys under which a trace step carries words of the message (a text repair's before and
# after, a name or subject as received and as repaired): the copy attached to the message
# keeps them for its reader; the journal, which outlives the message (retention), keeps
# their digest and length only.
TEXT_KEYS = frozenset({"before", "after"})


def without_text(value: Any) -> Any:
    """``value`` (a step's record) with every string under :data:`TEXT_KEYS`, at any depth,
    replaced by ``{"sha256": …, "chars": …}``: which text it was can be proved against the
    message, and read from nowhere but the message."""
    if isinstance(value, dict):
        return {k: ({"sha256": hashlib.sha256(v.encode("utf-8")).hexdigest(), "chars": len(v)}
                    if k in TEXT_KEYS and isinstance(v, str) else without_text(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [without_text(v) for v in value]
    return value


def step_record(*, at: datetime, direction: str, queue_id: str, **facts: Any
                ) -> dict[str, Any]:
    """The record of a step of a message's life outside its translation (see
    :meth:`Journal.record`): its time, direction and queue id, and its facts (empty ones
    left out)."""
    return {"at": at.isoformat(), "direction": direction, "queue_id": queue_id,
            **{k: v for k, v in facts.items() if v not in (None, "", [], {})}}


def _received(db: Conn, message_id: str, queue_id: str) -> bool:
    """Whether the journal has a ``received`` step of ``message_id`` for ``queue_id``."""
    for (body,) in db.execute("SELECT record FROM journal WHERE message_id = ? AND "
                              "stage = 'received'", (message_id,)).fetchall():
        try:
            if json.loads(body).get("queue_id") == queue_id:
                return True
        except ValueError:
            continue
    return False
