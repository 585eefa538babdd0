"""The trace journal: append-only entries chained by hash, so any later change shows.

Each entry holds a sequence number, the message id, the stage, the time, the canonical JSON
of the trace step, the previous entry's hash and its own::

    hash = SHA-256(prev_hash "\\n" seq "\\n" message_id "\\n" stage "\\n" at "\\n" record)

``verify`` recomputes the chain from the first entry and names the first one that does not
match.  Appends are serialised (SQLite ``BEGIN IMMEDIATE``; a PostgreSQL advisory lock), so
concurrent writers — threads, processes or instances — keep a single chain.

The chain is kept in a :class:`JournalStore`, which the spool's back-ends implement in the
spool's own database (:class:`gateway.spool.sqlitedb.SqliteJournalStore`,
:class:`gateway.spool.pg.PgJournalStore`); :func:`gateway.spool.open_journal` opens the one a
URL names.  This module knows no database driver: it depends on that interface only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

GENESIS = "0" * 64
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
        return self._append_many([(message_id, stage, record)], at=at)[0]

    def append_trace(self, trace: Any, *, at: datetime) -> list[JournalEntry]:
        """Every step of a TraceRecord, in order, in one transaction."""
        return self.append_traces([trace], at=at)

    def append_traces(self, traces: Sequence[Any], *, at: datetime, synced_by_next: bool = False
                      ) -> list[JournalEntry]:
        """Every step of each TraceRecord, in order, in one transaction (one message's
        translations: one per recipient group).  ``synced_by_next``: the caller commits to
        the same database right after (the spool: the translation these traces describe),
        and that commit's fsync takes this one's with it — this one does not wait for the
        disk (lost in a power cut before the next, both are: the message is translated and
        journaled again)."""
        return self._append_many([(trace.message_id, step.stage,
                                   {"direction": trace.direction, **step.to_json()})
                                  for trace in traces for step in trace.steps], at=at,
                                 durable=not synced_by_next)

    def append_steps(self, items: Sequence[tuple[str, str, dict[str, Any]]], *, at: datetime,
                     synced_by_next: bool = False) -> list[JournalEntry]:
        """``(message id, stage, record)`` entries, in order, in one transaction;
        ``synced_by_next`` as for :meth:`append_traces`."""
        return self._append_many(list(items), at=at, durable=not synced_by_next)

    _bytes: int | None = None  # characters of records, once summed (see size)
    _size_lock = threading.Lock()

    def _append_many(self, items: list[tuple[str, str, dict[str, Any]]], *,
                     at: datetime, durable: bool = True) -> list[JournalEntry]:
        """Append ``items`` after the last entry, in one transaction."""
        when = at.isoformat()
        out: list[JournalEntry] = []
        written = 0
        with self.store.appending(durable=durable) as db:
            row = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
                             ).fetchone()
            seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            for message_id, stage, record in items:
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
