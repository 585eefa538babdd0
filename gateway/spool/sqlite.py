"""The spool on SQLite (WAL): commit = fsync, leases so a crashed worker's work is taken again.

Guarantees:

* ``accept`` returns only after the message and its envelope are committed with
  ``synchronous=FULL`` (the WAL is fsync'd): the listener answers ``250`` after that, never
  before.  The same Message-ID with the same content for the same recipient is accepted once
  (the duplicate is acknowledged and not queued again).
* Work is *leased* for a while (``lease_translate``/``lease_deliver``); a worker that dies
  leaves its lease to expire and another takes the work again — at-least-once delivery; a
  delivery whose outcome was lost that way is marked *in doubt* and its next attempt says so.
* Every stored message carries its SHA-256: a row whose bytes no longer match is set aside
  (quarantined, reason ``corrupt``) instead of stopping the daemon.
* SQLite errors never escape: "disk full" is :class:`SpoolFull` (452), anything else
  :class:`SpoolUnavailable` (451) — transient, so senders retry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import BadInputError, SpoolFull, SpoolUnavailable
from gateway.spill import LARGE, Data, new_path
from gateway.spill import create as create_private
from gateway.spill import size as data_size
from gateway.spool.model import (
    DeliverWork,
    Direction,
    QueueEntry,
    RecipientState,
    RetryPolicy,
    State,
    TranslateWork,
)

SCHEMA_VERSION = 4
# Version 3 keeps a message's bytes in ``bodies``, apart from its row in ``messages``: SQLite
# writes a row again whole on every UPDATE, so each lease of a 25 MB message wrote 50 MB
# into the WAL and read the message into memory.
MOVE_BODIES = ("INSERT INTO bodies (queue_id, data) SELECT queue_id, data FROM messages",
                "ALTER TABLE messages DROP COLUMN data")
# Version 4 stores with each message how the legacy hub authenticated the session it came
# over (``hub_auth``: "certificate", "smtp-auth" or ""): a fact of the SMTP session, which the
# translation needs (a first-generation user's unsigned parts are accepted only then) and
# which the message's content cannot forge.
ADD_HUB_AUTH = "ALTER TABLE messages ADD COLUMN hub_auth TEXT NOT NULL DEFAULT ''"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    peer TEXT NOT NULL DEFAULT '',
    hub_auth TEXT NOT NULL DEFAULT '',
    translate_attempts INTEGER NOT NULL DEFAULT 0,
    next_translate REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bodies (
    queue_id TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    output_id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    state TEXT NOT NULL,
    output_id INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    first_deferred REAL,
    warned INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    deliver_to TEXT
);
CREATE INDEX IF NOT EXISTS recipients_work ON recipients(state, next_attempt);
CREATE INDEX IF NOT EXISTS recipients_queue ON recipients(queue_id);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id);
CREATE TABLE IF NOT EXISTS accepted (
    message_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (message_id, digest, rcpt)
);
"""


class Conn(Protocol):
    """What the spool needs of a DB-API connection (sqlite3, or the PostgreSQL adapter)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...


_DIRECTIONS = frozenset(str(d) for d in Direction)

# Data larger than LARGE goes into and out of the database in pieces, and out of the spool
# as a file in a spill directory: bound or read whole, a 25 MB message was copied several
# times over (see gateway/spill.py).
_PIECE = 1 << 18
Payload = Data


def _pieces(data: Payload) -> Iterator[bytes | memoryview]:
    if isinstance(data, Path):
        with data.open("rb") as f:
            yield from iter(lambda: f.read(_PIECE), b"")
        return
    view = memoryview(data)
    for at in range(0, len(view), _PIECE):
        yield view[at:at + _PIECE]


def _digest(data: Payload) -> str:
    if isinstance(data, Path):
        h = hashlib.sha256()
        for piece in _pieces(data):
            h.update(piece)
        return h.hexdigest()
    return hashlib.sha256(data).hexdigest()


_WRITERS: dict[Path, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def writer_lock(path: Path) -> threading.Lock:
    """The lock this process's writers to one SQLite file take before ``BEGIN IMMEDIATE``.
    SQLite lets one writer in at a time and makes the others sleep and try again, sleeping
    longer each time (1, 2, 5, 10 … 100 ms): two threads of the daemon that wanted the file
    at once made an SMTP client wait 100–600 ms for a commit that took one.  Waiting on this
    lock, the next writer goes in as soon as the last one is done; other processes (the
    command line) still meet SQLite's own wait."""
    key = path.resolve()
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.Lock())


@contextmanager
def unsynced(local: threading.local, db: sqlite3.Connection, *, on: bool = True
             ) -> Iterator[None]:
    """With ``on``: the commits made inside wait for no fsync (``synchronous=NORMAL``; the
    next commit with FULL syncs them with its own).  Afterwards the connection fsyncs again
    — or, if that cannot be set, it is closed and dropped from ``local`` (a new one starts
    with FULL): a later accept is never left unsynced."""
    if not on:
        yield
        return
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            local.db = None


def export_file(dest: Path, pieces: Iterable[bytes], digest: str) -> bool:
    """Write ``pieces`` into a new private file ``dest``; whether they matched ``digest``
    (the file is removed when they did not).  A file that cannot be written is
    :class:`SpoolUnavailable`, and none is left."""
    h = hashlib.sha256()
    try:
        with open(create_private(dest), "wb") as f:
            for piece in pieces:
                h.update(piece)
                f.write(piece)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise SpoolUnavailable(f"spool: cannot write {dest}: {exc.strerror}") from None
    if h.hexdigest() != digest:
        dest.unlink()
        return False
    return True


def _path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite://"):]) if url.startswith("sqlite:////") else Path(
            url[len("sqlite:///"):])
    return Path(url)


class SqliteSpool:
    def __init__(self, path: Path, *, policy: RetryPolicy | None = None) -> None:
        self.path = path
        self.policy = policy or RetryPolicy()
        self._local = threading.local()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolUnavailable(f"spool directory {path.parent}: {exc.strerror}") from None
        self._writer = writer_lock(path)
        self._migrate()

    def _migrate(self) -> None:
        """Create the schema, or bring an older one up to date (idempotent)."""
        db = self._conn()
        assert isinstance(db, sqlite3.Connection)
        try:
            db.executescript(_SCHEMA)  # idempotent; executescript commits itself
        except sqlite3.Error as exc:
            raise SpoolUnavailable(f"spool {self.path}: {exc}") from None
        with self._tx() as tx:
            row = tx.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                tx.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] < SCHEMA_VERSION:
                if row[0] < 2:  # version 1 had no record of interrupted deliveries
                    tx.execute("ALTER TABLE recipients ADD COLUMN in_doubt INTEGER NOT NULL "
                               "DEFAULT 0")
                    tx.execute("ALTER TABLE recipients ADD COLUMN deliver_to TEXT")
                if row[0] < 3:
                    for statement in MOVE_BODIES:
                        tx.execute(statement)
                if row[0] < 4:
                    tx.execute(ADD_HUB_AUTH)
                tx.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION,))

    # -- connections and transactions -------------------------------------------------

    def _conn(self) -> Conn:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise SpoolUnavailable(f"spool {self.path}: {exc}") from None
            self._local.db = db
        return db

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[Conn]:
        """A write transaction.  ``durable=False``: one whose loss in a power cut costs
        nothing but work done again (a translation lease): its commit is not fsynced (the
        next durable commit syncs it with its own)."""
        with self._writer, self._sqlite_tx(durable=durable) as db:
            yield db

    @contextmanager
    def _sqlite_tx(self, *, durable: bool = True) -> Iterator[Conn]:
        db = self._conn()
        assert isinstance(db, sqlite3.Connection)
        with unsynced(self._local, db, on=not durable):
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if "full" in str(exc).lower():
                    raise SpoolFull(f"spool: {exc}") from None
                raise SpoolUnavailable(f"spool: {exc}") from None
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[Conn]:
        """This thread's connection for reads outside a transaction: a database that fails
        under them is :class:`SpoolUnavailable` too (a clear, transient error), never the
        driver's own exception."""
        db = self._conn()
        try:
            yield db
        except sqlite3.Error as exc:
            raise SpoolUnavailable(f"spool: {exc}") from None

    @staticmethod
    def _skip_locked(table: str) -> str:
        """SQLite serialises writers (BEGIN IMMEDIATE): nothing to add to a lease query."""
        return ""

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def ping(self) -> str | None:
        """None when the spool is writable, else the reason (for /readyz)."""
        try:
            with self._tx() as db:
                db.execute("UPDATE schema_version SET version = version")
        except (SpoolUnavailable, SpoolFull) as exc:
            return str(exc)
        return None

    # -- accepting ----------------------------------------------------------------------

    def accept(self, *, direction: Direction, mail_from: str, rcpts: Sequence[str],
               data: Payload, message_id: str, now: float, peer: str = "",
               state: State = State.RECEIVED, hub_auth: str = "") -> tuple[str, bool]:
        """Store durably; returns (queue id, duplicate?).  ``hub_auth``: how the legacy hub
        authenticated the session the message came over ("" when it did not)."""
        return self.accept_many([(direction, mail_from, tuple(rcpts), data, message_id, peer,
                                  state, hub_auth)], now=now)[0]

    def accept_many(self, items: Sequence[tuple[Direction, str, tuple[str, ...], Payload, str,
                                                 str, State, str]],
                    *, now: float) -> list[tuple[str, bool]]:
        """Group commit: several messages in one transaction, one fsync."""
        out: list[tuple[str, bool]] = []
        with self._tx() as db:
            for direction, mail_from, rcpts, data, message_id, peer, state, hub_auth in items:
                digest = _digest(data)
                queue_id = uuid.uuid4().hex[:20].upper()
                fresh = []
                for rcpt in rcpts:
                    if message_id:
                        hit = db.execute(
                            "SELECT queue_id FROM accepted WHERE message_id=? AND digest=? "
                            "AND rcpt=?", (message_id, digest, rcpt)).fetchone()
                        if hit is not None:
                            continue
                    fresh.append(rcpt)
                if not fresh:
                    out.append((queue_id, True))
                    continue
                db.execute(
                    "INSERT INTO messages (queue_id, direction, mail_from, message_id, "
                    "received_at, size, digest, peer, hub_auth) VALUES (?,?,?,?,?,?,?,?,?)",
                    (queue_id, str(direction), mail_from, message_id, now, data_size(data), digest,
                     peer, hub_auth))
                self._insert_with_data(db, "bodies", ("queue_id",), (queue_id,), data,
                                       returning="queue_id")
                output_id = None
                if state is State.TRANSLATED:  # our own notices: delivered as they are
                    output_id = self._insert_with_data(
                        db, "outputs", ("queue_id", "digest"), (queue_id, digest), data,
                        returning="output_id")
                for rcpt in fresh:
                    db.execute(
                        "INSERT INTO recipients (queue_id, rcpt, state, output_id, next_attempt,"
                        " updated_at) VALUES (?,?,?,?,?,?)",
                        (queue_id, rcpt, str(state), output_id, now, now))
                    if message_id:
                        db.execute("INSERT OR IGNORE INTO accepted VALUES (?,?,?,?)",
                                   (message_id, digest, rcpt, queue_id))
                out.append((queue_id, False))
        return out

    def _insert_with_data(self, db: Conn, table: str, columns: tuple[str, ...],
                          values: tuple[Any, ...], data: Payload, *, returning: str) -> Any:
        """INSERT a row of ``columns`` and its ``data``; the ``returning`` column's value.
        Large data is written in pieces into a blob made to its size: bound whole, SQLite
        would take a copy of it, and a file would have to be read whole first."""
        names = ", ".join((*columns, "data"))
        marks = ",".join("?" * len(columns))
        if not isinstance(data, Path) and len(data) <= LARGE:
            return db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks},?) RETURNING "
                              f"{returning}", (*values, data)).fetchone()[0]
        assert isinstance(db, sqlite3.Connection)
        size = data_size(data)
        rowid, value = db.execute(
            f"INSERT INTO {table} ({names}) VALUES ({marks},zeroblob(?)) RETURNING rowid, "
            f"{returning}", (*values, size)).fetchone()
        written = 0
        with db.blobopen(table, "data", rowid) as blob:
            for piece in _pieces(data):
                if written + len(piece) > size:
                    raise SpoolUnavailable("spool: the data grew while it was being stored")
                blob.write(piece)
                written += len(piece)
        if written != size:
            raise SpoolUnavailable("spool: the data shrank while it was being stored")
        return value

    def _length(self, table: str, key: str, value: Any) -> int:
        """The size of a row's data, without reading it (0 when there is no such row)."""
        with self._read() as db:
            row = db.execute(f"SELECT length(data) FROM {table} WHERE {key}=?",
                             (value,)).fetchone()
        return int(row[0]) if row is not None else 0

    def _export(self, db: Conn, table: str, key: str, value: Any, dest: Path,
                digest: str) -> bool:
        """Write a row's data into a new private file ``dest``, in pieces; whether it
        matched its digest (the file is removed when it did not)."""
        assert isinstance(db, sqlite3.Connection)
        row = db.execute(f"SELECT rowid FROM {table} WHERE {key}=?", (value,)).fetchone()
        with db.blobopen(table, "data", row[0], readonly=True) as blob:
            return export_file(dest, iter(lambda: blob.read(_PIECE), b""), digest)

    def _checked(self, db: Conn, table: str, key: str, value: Any, data: bytes | None,
                 digest: str, spill: Path | None, name: str) -> tuple[bool, bytes, Path | None]:
        """A row's data as read, or — left out of the read as large (None) — written into a
        new file ``name`` of ``spill``: (whether it matched its digest, the bytes, the file)."""
        if data is not None:
            return _digest(data) == digest, data, None
        assert spill is not None
        path = new_path(spill, name)
        return self._export(db, table, key, value, path, digest), b"", path

    def _large(self, spill: Path | None, table: str, key: str, value: Any) -> bool:
        """Whether a row's data is to come out as a file (not read with the row)."""
        return spill is not None and self._length(table, key, value) > LARGE

    # -- translation --------------------------------------------------------------------

    def lease_translate(self, worker: str, *, now: float, duration: float,
                        limit: int = 8, spill: Path | None = None) -> list[TranslateWork]:
        """Lease up to ``limit`` messages waiting for translation.  With ``spill`` (a
        directory), a message larger than ``LARGE`` comes as a file written there (``path``;
        ``data`` empty), for the caller to remove."""
        with self._tx(durable=False) as db:  # a lease lost in a power cut: translated again
            # read in the order of the index on recipients(state, next_attempt) — for a
            # waiting recipient, when its message came (or was released) — and stopped at
            # the first messages free to take: neither the history kept in the spool nor the
            # backlog is looked through (sorting the backlog by arrival for every lease cost
            # 0.76 ms with 800 waiting, under the writers' lock)
            rows = db.execute(
                "SELECT r.queue_id FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
                " WHERE r.state = 'received' AND m.next_translate <= ? AND "
                "(m.lease_owner IS NULL OR m.lease_until < ?) "
                f"ORDER BY r.next_attempt, r.id LIMIT ?{self._skip_locked('m')}",
                (now, now, limit * 4)).fetchall()
            ids = list(dict.fromkeys(r[0] for r in rows))[:limit]  # a row per recipient
            for qid in ids:
                db.execute("UPDATE messages SET lease_owner=?, lease_until=? WHERE queue_id=?",
                           (worker, now + duration, qid))
        work = []
        for qid in ids:
            item = self._translate_work(qid, spill)
            if item is not None:
                work.append(item)
        return work

    def _translate_work(self, queue_id: str, spill: Path | None) -> TranslateWork | None:
        with self._read() as db:
            # (not length(data) in the same query: SQLite would read the whole blob for it)
            large = self._large(spill, "bodies", "queue_id", queue_id)
            row = db.execute("SELECT m.direction, m.mail_from, CASE WHEN ? THEN NULL ELSE b.data "
                             "END, m.digest, m.received_at, m.translate_attempts, m.hub_auth "
                             "FROM messages m JOIN bodies b ON b.queue_id = m.queue_id "
                             "WHERE m.queue_id=?", (large, queue_id)).fetchone()
            rcpts = tuple(r[0] for r in db.execute(
                "SELECT rcpt FROM recipients WHERE queue_id=? AND state='received' ORDER BY id",
                (queue_id,)))
            if row is None:
                return None
            direction, mail_from, data, digest, received_at, attempts, hub_auth = row
            intact, data, path = self._checked(db, "bodies", "queue_id", queue_id, data,
                                               digest, spill, queue_id)
        if not intact:
            self._set_aside(queue_id, "corrupt: stored bytes do not match their digest")
            return None
        if direction not in _DIRECTIONS:  # a damaged row must not stop the workers
            if path is not None:
                path.unlink()
            self._set_aside(queue_id, "corrupt: unknown direction")
            return None
        return TranslateWork(queue_id, Direction(direction), mail_from, rcpts, data,
                             received_at, attempts, str(path or ""), str(hub_auth or ""))

    def _set_aside(self, queue_id: str, reason: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE recipients SET state='quarantined', reason=?, lease_owner=NULL "
                       "WHERE queue_id=? AND state NOT IN ('delivered','bounced')",
                       (reason, queue_id))
            db.execute("UPDATE messages SET lease_owner=NULL WHERE queue_id=?", (queue_id,))

    def store_translated(self, queue_id: str, groups: Sequence[tuple[Sequence[str], Payload]],
                         *, now: float, routes: Mapping[str, str] | None = None) -> None:
        """Translated bytes (or the file holding them) per group of recipients; ``routes``:
        the mailbox a directory alias resolved to (delivered there, reported under the
        alias)."""
        routes = routes or {}
        with self._tx() as db:
            for rcpts, data in groups:
                output_id = self._insert_with_data(db, "outputs", ("queue_id", "digest"),
                                                   (queue_id, _digest(data)), data,
                                                   returning="output_id")
                for rcpt in rcpts:
                    db.execute(
                        "UPDATE recipients SET state='translated', output_id=?, next_attempt=?,"
                        " updated_at=?, reason='', deliver_to=? WHERE queue_id=? AND rcpt=? AND "
                        "state='received'", (output_id, now, now, routes.get(rcpt), queue_id,
                                             rcpt))
            db.execute("UPDATE messages SET lease_owner=NULL, lease_until=0 WHERE queue_id=?",
                       (queue_id,))

    def translate_failed(self, queue_id: str, *, fate: str, reason: str, now: float) -> None:
        """``retry`` (back off), ``bounce`` or ``quarantine`` every waiting recipient."""
        with self._tx() as db:
            if fate == "retry":
                attempts = db.execute("SELECT translate_attempts FROM messages WHERE queue_id=?",
                                      (queue_id,)).fetchone()[0] + 1
                db.execute("UPDATE messages SET translate_attempts=?, next_translate=?, "
                           "lease_owner=NULL, lease_until=0 WHERE queue_id=?",
                           (attempts, now + self.policy.delay(attempts), queue_id))
                db.execute("UPDATE recipients SET reason=?, updated_at=? WHERE queue_id=? AND "
                           "state='received'", (reason, now, queue_id))
                return
            state = "bounced" if fate == "bounce" else "quarantined"
            db.execute("UPDATE recipients SET state=?, reason=?, updated_at=? WHERE queue_id=? "
                       "AND state='received'", (state, reason, now, queue_id))
            db.execute("UPDATE messages SET lease_owner=NULL, lease_until=0 WHERE queue_id=?",
                       (queue_id,))

    # -- delivery -----------------------------------------------------------------------

    def lease_deliver(self, worker: str, *, now: float, duration: float,
                      limit: int = 16, spill: Path | None = None) -> list[DeliverWork]:
        """Lease recipients due for delivery, grouped by translated bytes.  With ``spill``,
        translated bytes larger than ``LARGE`` come as a file written there (``path``)."""
        with self._tx() as db:
            # recipients due and not leased (or whose lease ran out), locked for this
            # transaction; other instances skip them (PostgreSQL) or wait (SQLite: one writer)
            rows = db.execute(
                "SELECT id, output_id FROM recipients WHERE state IN ('translated','deferred') "
                "AND next_attempt <= ? AND lease_until <= ? ORDER BY next_attempt, id LIMIT ?"
                f"{self._skip_locked('')}", (now, now, limit * 4)).fetchall()
            outs = list(dict.fromkeys(r[1] for r in rows))[:limit]
            for rid, oid in rows:
                if oid not in outs:
                    continue
                # a lease that ran out without an outcome: its delivery may have reached the
                # peer before its worker died — the next attempt says it may be a duplicate
                db.execute("UPDATE recipients SET lease_owner=?, lease_until=?, in_doubt="
                           "CASE WHEN lease_owner IS NULL THEN in_doubt ELSE 1 END WHERE id=?",
                           (worker, now + duration, rid))
        work = []
        with self._read() as db:
            for oid in outs:
                large = self._large(spill, "outputs", "output_id", oid)
                row = db.execute(
                    "SELECT o.queue_id, CASE WHEN ? THEN NULL ELSE o.data END, o.digest, "
                    "m.direction, m.mail_from, m.received_at, m.message_id FROM outputs o JOIN "
                    "messages m ON m.queue_id = o.queue_id WHERE o.output_id=?",
                    (large, oid)).fetchone()
                if row is None:
                    continue
                qid, data, digest, direction, mail_from, received_at, message_id = row
                intact, data, path = self._checked(db, "outputs", "output_id", oid, data,
                                                   digest, spill, f"{qid}.{oid}")
                if not intact:
                    self._set_aside(qid, "corrupt: translated bytes do not match their digest")
                    continue
                if direction not in _DIRECTIONS:
                    if path is not None:
                        path.unlink()
                    self._set_aside(qid, "corrupt: unknown direction")
                    continue
                rcpts = db.execute(
                    "SELECT rcpt, attempts, first_deferred, warned, in_doubt, deliver_to FROM "
                    "recipients WHERE "
                    "output_id=? AND lease_owner=? AND state IN ('translated','deferred')",
                    (oid, worker)).fetchall()
                if not rcpts:
                    if path is not None:
                        path.unlink()
                    continue
                work.append(DeliverWork(
                    output_id=oid, queue_id=qid, direction=Direction(direction),
                    mail_from=mail_from, rcpts=tuple(r[0] for r in rcpts), data=data,
                    received_at=received_at, attempts=max(r[1] for r in rcpts),
                    first_deferred=min((r[2] for r in rcpts if r[2] is not None), default=None),
                    warned=any(r[3] for r in rcpts), message_id=message_id,
                    in_doubt=any(r[4] for r in rcpts),
                    routes={r[0]: r[5] for r in rcpts if r[5]}, path=str(path or "")))
        return work

    def mark_delivered(self, output_id: int, rcpts: Sequence[str], *, now: float,
                       reply: str = "") -> None:
        self._mark(output_id, rcpts, "delivered", reply[:300], now)

    def mark_bounced(self, output_id: int, rcpts: Sequence[str], *, now: float,
                     reason: str) -> None:
        self._mark(output_id, rcpts, "bounced", reason[:300], now)

    def _mark(self, output_id: int, rcpts: Sequence[str], state: str, reason: str,
              now: float) -> None:
        with self._tx() as db:
            for rcpt in rcpts:
                db.execute("UPDATE recipients SET state=?, reason=?, lease_owner=NULL, "
                           "lease_until=0, in_doubt=0, updated_at=?, attempts=attempts+1 "
                           "WHERE output_id=? "
                           "AND rcpt=?", (state, reason, now, output_id, rcpt))

    def mark_deferred(self, output_id: int, rcpts: Sequence[str], *, now: float,
                      reason: str) -> tuple[float, bool, bool]:
        """Back off; returns (next attempt, delay warning now due, lifetime over)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT MAX(attempts), MIN(COALESCE(first_deferred, ?)), MAX(warned) FROM "
                "recipients WHERE output_id=?", (now, output_id)).fetchone()
            attempts = (row[0] or 0) + 1
            first = row[1] if row[1] is not None else now
            warned = bool(row[2])
            nxt = now + self.policy.delay(attempts)
            warn = not warned and now - first >= self.policy.delay_warning_after
            expired = now - first >= self.policy.lifetime
            for rcpt in rcpts:
                db.execute(
                    "UPDATE recipients SET state='deferred', attempts=?, next_attempt=?, "
                    "first_deferred=COALESCE(first_deferred, ?), warned=CASE WHEN ?=1 THEN 1 "
                    "ELSE warned END, reason=?, "
                    "lease_owner=NULL, lease_until=0, updated_at=? WHERE output_id=? AND rcpt=?",
                    (attempts, nxt, now, 1 if warn else 0, reason[:300], now, output_id, rcpt))
        return nxt, warn, expired

    # -- administration -----------------------------------------------------------------

    def recover(self, *, now: float) -> int:
        """At start: leases held by a previous run are released (their work is redone).

        A delivery lease still held means the previous run may have handed the message to
        the peer without recording it (SMTP cannot tell): such recipients are marked in
        doubt, and their next delivery carries a header saying it may be a duplicate."""
        with self._tx() as db:
            n = db.execute("UPDATE recipients SET lease_owner=NULL, lease_until=0, in_doubt=1 "
                           "WHERE lease_owner IS NOT NULL").rowcount
            n += db.execute("UPDATE messages SET lease_owner=NULL, lease_until=0 "
                            "WHERE lease_owner IS NOT NULL").rowcount
        return int(n)

    def sent_to_legacy(self, message_id: str, trust_sender: str) -> bool:
        """Did this gateway carry a message with that Message-ID from that trust-space sender
        into the legacy network?  (Only then is a bounce from the hub passed back.)"""
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM messages WHERE message_id=? AND direction='to_legacy' AND "
                "lower(mail_from)=lower(?) LIMIT 1", (message_id, trust_sender)).fetchone()
        return row is not None

    def counts(self) -> dict[str, int]:
        with self._read() as db:
            return {state: n for state, n in db.execute(
                "SELECT state, COUNT(*) FROM recipients GROUP BY state")}

    def oldest_age(self, now: float) -> float:
        with self._read() as db:
            row = db.execute(
                "SELECT MIN(m.received_at) FROM messages m JOIN recipients r ON r.queue_id = "
                "m.queue_id WHERE r.state IN ('received','translated','deferred')").fetchone()
        return 0.0 if row[0] is None else max(0.0, now - row[0])

    def list(self, *, state: str | None = None, limit: int = 100) -> list[QueueEntry]:
        where = "WHERE queue_id IN (SELECT queue_id FROM recipients WHERE state=?)" if state \
            else ""
        with self._read() as db:
            rows = db.execute(
                "SELECT queue_id, direction, message_id, mail_from, size, digest, received_at "
                f"FROM messages {where} ORDER BY received_at LIMIT ?",
                (state, limit) if state else (limit,)).fetchall()
            return [self._entry(db, *row) for row in rows]

    def _entry(self, db: Conn, qid: str, direction: str, message_id: str,
               mail_from: str, size: int, digest: str, received_at: float) -> QueueEntry:
        rcpts = tuple(RecipientState(r, State(s), a, n, reason) for r, s, a, n, reason in
                      db.execute("SELECT rcpt, state, attempts, next_attempt, reason FROM "
                                 "recipients WHERE queue_id=? ORDER BY id", (qid,)))
        return QueueEntry(qid, direction, message_id, mail_from.rpartition("@")[2], size,
                          digest, received_at, rcpts)

    def show(self, queue_id: str) -> tuple[QueueEntry, bytes]:
        with self._read() as db:
            row = db.execute("SELECT m.queue_id, m.direction, m.message_id, m.mail_from, m.size, "
                             "m.digest, m.received_at, b.data FROM messages m JOIN bodies b ON "
                             "b.queue_id = m.queue_id WHERE m.queue_id=?",
                             (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            return self._entry(db, *row[:7]), row[7]

    def head(self, queue_id: str, limit: int) -> bytes:
        """The first ``limit`` bytes of a stored message — what a notice quotes of it, its
        header block — without reading the rest."""
        with self._read() as db:
            row = db.execute("SELECT rowid FROM bodies WHERE queue_id=?", (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            assert isinstance(db, sqlite3.Connection)
            with db.blobopen("bodies", "data", row[0], readonly=True) as blob:
                return blob.read(limit)

    def _admin(self, queue_id: str, sql: str, args: tuple[object, ...], allowed: str) -> int:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM messages WHERE queue_id=?",
                          (queue_id,)).fetchone() is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            n = db.execute(sql + f" WHERE queue_id=? AND state IN ({allowed})",
                           (*args, queue_id)).rowcount
        if n == 0:
            raise BadInputError(f"message {queue_id} has no recipient in a state this applies to")
        return int(n)

    def retry(self, queue_id: str, *, now: float) -> int:
        """Deferred recipients are tried again now."""
        return self._admin(queue_id, "UPDATE recipients SET next_attempt=?", (now,),
                           "'deferred'")

    def hold(self, queue_id: str, *, now: float) -> int:
        return self._admin(queue_id, "UPDATE recipients SET state='held', updated_at=?", (now,),
                           "'received','translated','deferred'")

    def release(self, queue_id: str, *, now: float) -> int:
        """Held or quarantined recipients go back to work (translated again from scratch)."""
        with self._tx() as db:
            db.execute("UPDATE messages SET next_translate=0, translate_attempts=0, "
                       "lease_owner=NULL WHERE queue_id=?", (queue_id,))
        return self._admin(queue_id, "UPDATE recipients SET state='received', output_id=NULL, "
                           "next_attempt=?, attempts=0, first_deferred=NULL, warned=0, "
                           "reason='released', lease_owner=NULL", (now,),
                           "'held','quarantined'")

    def delete(self, queue_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM messages WHERE queue_id=?", (queue_id,)).rowcount == 0:
                raise BadInputError(f"no message {queue_id} in the queue")
            db.execute("DELETE FROM bodies WHERE queue_id=?", (queue_id,))
            db.execute("DELETE FROM recipients WHERE queue_id=?", (queue_id,))
            db.execute("DELETE FROM outputs WHERE queue_id=?", (queue_id,))

    def size_bytes(self) -> int:
        try:
            return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal"))
                       if p.exists())
        except OSError:
            return 0


def open_spool(url: str, *, policy: RetryPolicy | None = None) -> SqliteSpool:
    """``sqlite:///path`` (or a bare path) or ``postgresql://user:pass@host/db``."""
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.spool.pg import PgSpool

        return PgSpool(url, policy=policy)
    return SqliteSpool(_path(url), policy=policy)
