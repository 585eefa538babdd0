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

Around it: the tables in :mod:`gateway.spool.schema`, a message's bytes in and out in
:mod:`gateway.spool.payload`, the writer lock and fsync switch in :mod:`gateway.spool.sqlitedb`,
the operator's reads and actions in :mod:`gateway.spool.admin`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.errors import BadInputError, SpoolFull, SpoolUnavailable
from gateway.journal import Conn
from gateway.spill import LARGE, new_path
from gateway.spill import size as data_size
from gateway.spool.admin import QueueAdmin
from gateway.spool.model import (
    DeliverWork,
    Direction,
    RetryPolicy,
    State,
    TranslateWork,
)
from gateway.spool.payload import PIECE, Payload, export_file, pieces_of, sha256_of
from gateway.spool.schema import ADD_HUB_AUTH, MOVE_BODIES, SCHEMA_VERSION, SQLITE
from gateway.spool.search import SpoolSearch
from gateway.spool.sqlitedb import unsynced, writer_lock

_DIRECTIONS = frozenset(str(d) for d in Direction)

class SqliteSpool(QueueAdmin, SpoolSearch):
    def __init__(self, path: Path, *, policy: RetryPolicy | None = None,
                 migrate: bool = True) -> None:
        """``migrate=False``: the schema is taken as the daemon left it (a translation
        worker's connection, opened while the daemon serves: no DDL under live traffic)."""
        self.path = path
        self.policy = policy or RetryPolicy()
        self._local = threading.local()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolUnavailable(f"spool directory {path.parent}: {exc.strerror}") from None
        self._writer = writer_lock(path)
        if migrate:
            self._migrate()

    def _migrate(self) -> None:
        """Create the schema, or bring an older one up to date (idempotent)."""
        db = self._conn()
        assert isinstance(db, sqlite3.Connection)
        try:
            db.executescript(SQLITE)  # idempotent; executescript commits itself
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

    @staticmethod
    def _for_update() -> str:
        """SQLite serialises writers: nothing to add to a read the transaction acts on."""
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
                digest = sha256_of(data)
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
            for piece in pieces_of(data):
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
            return export_file(dest, iter(lambda: blob.read(PIECE), b""), digest)

    def _checked(self, db: Conn, table: str, key: str, value: Any, data: bytes | None,
                 digest: str, spill: Path | None, name: str) -> tuple[bool, bytes, Path | None]:
        """A row's data as read, or — left out of the read as large (None) — written into a
        new file ``name`` of ``spill``: (whether it matched its digest, the bytes, the file)."""
        if data is not None:
            return sha256_of(data) == digest, data, None
        assert spill is not None
        path = new_path(spill, name)
        return self._export(db, table, key, value, path, digest), b"", path

    def _large(self, spill: Path | None, table: str, key: str, value: Any) -> bool:
        """Whether a row's data is to come out as a file (not read with the row)."""
        return spill is not None and self._length(table, key, value) > LARGE

    # -- translation --------------------------------------------------------------------

    def lease_translate(self, worker: str, *, now: float, duration: float,
                        limit: int = 8, spill: Path | None = None, bodies: bool = True
                        ) -> list[TranslateWork]:
        """Lease up to ``limit`` messages waiting for translation.  With ``spill`` (a
        directory), a message larger than ``LARGE`` comes as a file written there (``path``;
        ``data`` empty), for the caller to remove.  ``bodies=False``: the envelopes only
        (``data`` empty, ``path`` ""): whoever translates reads the message itself
        (:meth:`translate_work`)."""
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
            item = self._translate_work(qid, spill, body=bodies)
            if item is not None:
                work.append(item)
        return work

    def translate_work(self, queue_id: str, spill: Path | None = None, *,
                       lease_owner: str | None = None) -> TranslateWork | None:
        """A message leased for translation (:meth:`lease_translate`), with its bytes — or,
        larger than ``LARGE`` and with ``spill``, in a file written there for the caller to
        remove.  None when it is no longer there to translate (no recipient waits for it;
        with ``lease_owner``: its lease is no longer that one's), or its bytes no longer
        match their digest (it is then set aside: quarantined as corrupt)."""
        if lease_owner is not None:
            with self._read() as db:
                row = db.execute("SELECT lease_owner FROM messages WHERE queue_id=?",
                                 (queue_id,)).fetchone()
            if row is None or row[0] != lease_owner:
                return None
        item = self._translate_work(queue_id, spill)
        if item is not None and not item.rcpts:
            if item.path:
                Path(item.path).unlink(missing_ok=True)
            return None
        return item

    def _translate_work(self, queue_id: str, spill: Path | None, *, body: bool = True
                        ) -> TranslateWork | None:
        with self._read() as db:
            # (not length(data) in the same query: SQLite would read the whole blob for it)
            large = body and self._large(spill, "bodies", "queue_id", queue_id)
            if body:
                row = db.execute(
                    "SELECT m.direction, m.mail_from, CASE WHEN ? THEN NULL ELSE b.data END, "
                    "m.digest, m.received_at, m.translate_attempts, m.hub_auth FROM messages m "
                    "JOIN bodies b ON b.queue_id = m.queue_id WHERE m.queue_id=?",
                    (large, queue_id)).fetchone()
            else:
                row = db.execute(
                    "SELECT direction, mail_from, NULL, digest, received_at, translate_attempts, "
                    "hub_auth FROM messages WHERE queue_id=?", (queue_id,)).fetchone()
            rcpts = tuple(r[0] for r in db.execute(
                "SELECT rcpt FROM recipients WHERE queue_id=? AND state='received' ORDER BY id",
                (queue_id,)))
            if row is None:
                return None
            direction, mail_from, data, digest, received_at, attempts, hub_auth = row
            intact, data, path = (self._checked(db, "bodies", "queue_id", queue_id, data,
                                                digest, spill, queue_id) if body
                                  else (True, b"", None))
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
                         *, now: float, routes: Mapping[str, str] | None = None,
                         lease_owner: str | None = None) -> bool:
        """Translated bytes (or the file holding them) per group of recipients; ``routes``:
        the mailbox a directory alias resolved to (delivered there, reported under the
        alias).  With ``lease_owner``: stored only while the message's translation lease is
        still that one's (a worker process of a daemon killed meanwhile stores nothing: the
        next run translates again); whether it was stored."""
        routes = routes or {}
        with self._tx() as db:
            if lease_owner is not None:
                row = db.execute("SELECT lease_owner FROM messages WHERE queue_id=?"
                                 f"{self._for_update()}", (queue_id,)).fetchone()
                if row is None or row[0] != lease_owner:
                    return False
            for rcpts, data in groups:
                output_id = self._insert_with_data(db, "outputs", ("queue_id", "digest"),
                                                   (queue_id, sha256_of(data)), data,
                                                   returning="output_id")
                for rcpt in rcpts:
                    db.execute(
                        "UPDATE recipients SET state='translated', output_id=?, next_attempt=?,"
                        " updated_at=?, reason='', deliver_to=? WHERE queue_id=? AND rcpt=? AND "
                        "state='received'", (output_id, now, now, routes.get(rcpt), queue_id,
                                             rcpt))
            db.execute("UPDATE messages SET lease_owner=NULL, lease_until=0 WHERE queue_id=?",
                       (queue_id,))
        return True

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

    # -- administration (the operator's reads and actions: gateway.spool.admin) ------------

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

    def size_bytes(self) -> int:
        try:
            return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal"))
                       if p.exists())
        except OSError:
            return 0
