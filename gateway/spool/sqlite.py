"""The spool on SQLite (WAL): commit = fsync, leases so a crashed worker's work is taken again.

Guarantees:

* ``accept`` returns only after the message and its envelope are committed with
  ``synchronous=FULL`` (the WAL is fsync'd): the listener answers ``250`` after that, never
  before.  The same Message-ID with the same content for the same recipient is accepted once
  (the duplicate is acknowledged and not queued again).
* The translation stage's commits (a translation lease, a translation and its journal
  entries) wait for no fsync; every later synced commit (the delivery lease that takes a
  translation, before anything is sent) makes them durable with it: see
  :meth:`SqliteSpool.store_translated`.  A kill -9 loses no commit at all.
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
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.atrest import (
    SEALED_PIECE,
    Sealer,
    Unsealable,
    aad,
    pieces_in,
    sealed_size,
)
from gateway.errors import BadInputError, ConfigError, SpoolFull, SpoolUnavailable
from gateway.journal import Conn
from gateway.log import allow_words, get_logger, printable_queue_id
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
from gateway.spool.payload import Payload, export_file, pieces_of, sha256_of
from gateway.spool.retention import Retention
from gateway.spool.schema import ADD_HUB_AUTH, ADD_KEY_IDS, MOVE_BODIES, SCHEMA_VERSION, SQLITE
from gateway.spool.sealed import SealedRecords
from gateway.spool.search import SpoolSearch
from gateway.spool.sqlitedb import unsynced, writer_lock
from gateway.statedir import prepare, private_files

_DIRECTIONS = frozenset(str(d) for d in Direction)
log = get_logger("passerelle.spool")
allow_words("bodies", "outputs")
# why a message is set aside, by what was wrong with its stored bytes
CORRUPT = {"digest": "corrupt: stored bytes do not match their digest",
           "sealed": "corrupt: stored bytes fail authentication"}
CORRUPT_OUTPUT = {"digest": "corrupt: translated bytes do not match their digest",
                  "sealed": "corrupt: translated bytes fail authentication"}

# A random id written once, when the spool is created: the daemon holds it, and refuses to
# accept into a database that does not carry it (a spool deleted or replaced under it).
SPOOL_IDENTITY = "CREATE TABLE IF NOT EXISTS spool_identity (spool_id TEXT NOT NULL)"


def new_queue_id() -> str:
    """A fresh queue id: 20 random hex digits, drawn again while their digits read as a NIR
    or a date (about 1 in 250 draws), which every log line would show as ``[redacted]``."""
    while True:
        queue_id = uuid.uuid4().hex[:20].upper()
        if printable_queue_id(queue_id):
            return queue_id


class SqliteSpool(SealedRecords, Retention, QueueAdmin, SpoolSearch):
    """``create=False`` (the command line's reads and actions): the spool must exist — a
    missing one is :class:`ConfigError`, never created empty.

    Identity: the spool's random id (``spool_identity``) and, for SQLite, the device and
    inode of its file are read when it is opened; a connection opened later onto another
    database, or a file deleted or replaced under the daemon, is refused from then on
    (:meth:`identity_problem`, checked in every accept's transaction before its commit, by
    :meth:`ping` and by the daemon every few seconds): acceptance answers 451 and the daemon
    is unready, rather than 250 into a file nobody will read again."""

    spool_id: str | None = None
    _lost: str | None = None

    def __init__(self, path: Path, *, policy: RetryPolicy | None = None,
                 create: bool = True, sealer: Sealer | None = None,
                 migrate: bool = True) -> None:
        """``migrate=False``: the schema is taken as the daemon left it (a translation
        worker's connection, opened while the daemon serves: no DDL under live traffic)."""
        self.path = path
        self.policy = policy or RetryPolicy()
        self.sealer = sealer
        self._local = threading.local()
        self._create = create
        if not create and not path.is_file():
            raise ConfigError(f"no spool at {path} (the daemon creates it when it first "
                              "starts: check [spool] url and [gateway] state_dir)")
        try:
            prepare(path.parent)  # 0700, whatever the umask, when it is made here
        except OSError as exc:
            raise SpoolUnavailable(f"spool directory {path.parent}: {exc.strerror}") from None
        self._writer = writer_lock(path)
        if not create:
            self._must_be_a_spool()
        if migrate:
            self._migrate()
        self._file_id = self._stat()
        self.spool_id = self._identify(create=create and migrate)
        self._create = False  # from now on a connection never creates a file

    def _must_be_a_spool(self) -> None:
        try:
            with self._read() as db:
                found = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND "
                                   "name='schema_version'").fetchone()
        except SpoolUnavailable as exc:
            raise ConfigError(f"{self.path}: not a passerelle spool ({exc})") from None
        if found is None:
            raise ConfigError(f"{self.path}: not a passerelle spool")

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _identify(self, *, create: bool) -> str | None:
        """The spool's id, written now if it has none (by the daemon; a read-only command
        leaves an older spool without one as it is)."""
        with self._read() as db:
            if create:
                db.execute(SPOOL_IDENTITY)
            elif db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                            "name='spool_identity'").fetchone() is None:
                return None
        if create:
            with self._tx() as tx:
                row = tx.execute("SELECT spool_id FROM spool_identity").fetchone()
                if row is None:
                    tx.execute("INSERT INTO spool_identity VALUES (?)", (uuid.uuid4().hex,))
        with self._read() as db:
            row = db.execute("SELECT spool_id FROM spool_identity").fetchone()
        return str(row[0]) if row is not None else None

    def identity_problem(self) -> str | None:
        """None while the spool is the one opened; else why not (and for good: a spool
        put back by hand needs a restart, which checks it afresh)."""
        if self._lost is not None:
            return self._lost
        if self.spool_id is None:
            return None
        moved = self._file_problem()
        if moved is not None:
            return self._lose(moved)
        try:
            with self._read() as db:
                self._same_spool(db)
        except SpoolUnavailable as exc:
            return str(exc) if self._lost is not None else None
        return None

    def _file_problem(self) -> str | None:
        now = self._stat()
        if now is None:
            return f"spool {self.path} was deleted while the daemon ran"
        if now != self._file_id:
            return f"spool {self.path} was replaced while the daemon ran (another file at " \
                "its path)"
        return None

    def _lose(self, reason: str) -> str:
        self._lost = reason + ": nothing is accepted until it is restored and the daemon " \
            "restarted"
        return self._lost

    def _same_spool(self, db: Conn) -> None:
        """Raise :class:`SpoolUnavailable` unless ``db`` holds this spool's id."""
        if self.spool_id is None:
            return
        try:
            row = db.execute("SELECT spool_id FROM spool_identity").fetchone()
        except Exception as exc:
            text = str(exc).lower()
            if "no such table" not in text and "does not exist" not in text:
                # busy, cut off: transient, the identity is not judged on it
                raise SpoolUnavailable(f"spool: {' '.join(text.split())[:200]}") from None
            row = None  # the table is gone: another database
        if row is None or str(row[0]) != self.spool_id:
            raise SpoolUnavailable(self._lose(f"spool {self._where()} is not the one opened "
                                              "at start (its spool id differs)"))

    def _where(self) -> str:
        return str(self.path)

    def _check_identity(self, db: Conn) -> None:
        """Before an accept commits: the file at the path and the database written to are
        still the spool opened at start."""
        problem = self.identity_problem()
        if problem is not None:
            raise SpoolUnavailable(problem)
        self._same_spool(db)

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
            elif row[0] > SCHEMA_VERSION:
                raise SpoolUnavailable(
                    f"the spool {self.path} has schema {row[0]}, newer than this passerelle "
                    f"({SCHEMA_VERSION}): upgrade passerelle")
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
                if row[0] < 5:  # records in clear are sealed by reseal() (see SealedRecords)
                    for table, statement in zip(("bodies", "outputs"), ADD_KEY_IDS, strict=True):
                        columns = [c[1] for c in tx.execute(f"PRAGMA table_info({table})")]
                        if "key_id" not in columns:  # (bodies made just now has it)
                            tx.execute(statement)
                tx.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION,))

    # -- connections and transactions -------------------------------------------------

    def _conn(self) -> Conn:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            private_files(self.path)  # 0600, and its -wal and -shm too
            try:
                if self._create:
                    db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                else:  # never a new empty file where the spool was
                    db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                                         timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                # what is deleted (a purged message) is overwritten with zeros, not left in
                # free pages for anyone reading the file
                db.execute("PRAGMA secure_delete=ON")
            except sqlite3.Error as exc:
                raise SpoolUnavailable(f"spool {self.path}: {exc}") from None
            if self.spool_id is not None:
                try:
                    self._same_spool(db)
                except SpoolUnavailable:
                    db.close()
                    raise
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
        try:
            with unsynced(self._local, db, on=not durable):
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            if "full" in str(exc).lower():
                raise SpoolFull(f"spool: {exc}") from None
            raise SpoolUnavailable(f"spool: {exc}") from None

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
            self._local.db = self._local.normal = None

    def _reseal_row(self, db: Conn, table: str, key: str, value: Any, record: str,
                    key_id: str) -> bool:
        """A sealed record is sealed again in place, a piece at a time (the same sizes under
        any key): a 25 MB message is never read whole for a rotation.  One in clear is sealed
        whole (once, when a keyring is first given)."""
        if not key_id:
            return super()._reseal_row(db, table, key, value, record, key_id)
        assert isinstance(db, sqlite3.Connection) and self.sealer is not None
        rowid = db.execute(f"SELECT rowid FROM {table} WHERE {key}=?", (value,)).fetchone()[0]
        sealer = self.sealer
        with db.blobopen(table, "data", rowid) as blob:
            count = pieces_in(len(blob))
            try:  # every piece opens, before any is written over
                for _ in self._opened(blob.read, len(blob), key_id, table, record):
                    pass
            except Unsealable:
                return False
            for i in range(count):
                blob.seek(i * SEALED_PIECE)
                ad = aad(table, record, i, count)
                piece = sealer.open_piece(blob.read(SEALED_PIECE), ad)
                blob.seek(i * SEALED_PIECE)
                blob.write(sealer.seal_piece(piece, ad))
        db.execute(f"UPDATE {table} SET key_id=? WHERE {key}=?", (sealer.current, value))
        return True

    def _after_purge(self) -> None:
        """Deleted pages were zeroed (``secure_delete``); the WAL, which still holds the
        frames they were written in, is emptied into the file and cut to nothing."""
        with self._writer, self._read() as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def ping(self) -> str | None:
        """None when the spool is writable and still the one opened, else the reason (for
        /readyz)."""
        problem = self.identity_problem()
        if problem is not None:
            return problem
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
                queue_id = new_queue_id()
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
                                       returning="queue_id", record=queue_id)
                output_id = None
                if state is State.TRANSLATED:  # our own notices: delivered as they are
                    output_id = self._insert_with_data(
                        db, "outputs", ("queue_id", "digest"), (queue_id, digest), data,
                        returning="output_id", record=f"{queue_id}:{digest}")
                for rcpt in fresh:
                    db.execute(
                        "INSERT INTO recipients (queue_id, rcpt, state, output_id, next_attempt,"
                        " updated_at) VALUES (?,?,?,?,?,?)",
                        (queue_id, rcpt, str(state), output_id, now, now))
                    if message_id:
                        db.execute("INSERT OR IGNORE INTO accepted VALUES (?,?,?,?)",
                                   (message_id, digest, rcpt, queue_id))
                out.append((queue_id, False))
            self._check_identity(db)  # never 250 into a spool deleted or replaced
        return out

    def _insert_with_data(self, db: Conn, table: str, columns: tuple[str, ...],
                          values: tuple[Any, ...], data: Payload, *, returning: str,
                          record: str) -> Any:
        """INSERT a row of ``columns`` and its ``data`` (sealed, with a sealer: ``record`` is
        its id in the associated data); the ``returning`` column's value.  Large data is
        written in pieces into a blob made to its size: bound whole, SQLite would take a copy
        of it, and a file would have to be read whole first."""
        names = ", ".join((*columns, "key_id", "data"))
        marks = ",".join("?" * len(columns))
        key_id = self.sealer.current if self.sealer is not None else ""
        if not isinstance(data, Path) and len(data) <= LARGE:
            value = data if self.sealer is None else self.sealer.seal_bytes(data, table, record)
            return db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks},?,?) RETURNING "
                              f"{returning}", (*values, key_id, value)).fetchone()[0]
        assert isinstance(db, sqlite3.Connection)
        plain = data_size(data)
        pieces: Iterator[bytes | memoryview] = pieces_of(data)
        size = plain
        if self.sealer is not None:
            size = sealed_size(plain)
            pieces = iter(self.sealer.seal(pieces, plain, table, record))
        rowid, value = db.execute(
            f"INSERT INTO {table} ({names}) VALUES ({marks},?,zeroblob(?)) RETURNING rowid, "
            f"{returning}", (*values, key_id, size)).fetchone()
        written = 0
        try:
            with db.blobopen(table, "data", rowid) as blob:
                for piece in pieces:
                    if written + len(piece) > size:
                        raise SpoolUnavailable("spool: the data grew while it was being stored")
                    blob.write(piece)
                    written += len(piece)
        except Unsealable as exc:
            raise SpoolUnavailable(f"spool: {exc}") from None
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
                digest: str, key_id: str, record: str) -> bool:
        """Write a row's data (opened, when sealed) into a new private file ``dest``, in
        pieces; whether it matched its digest (the file is removed when it did not).  A sealed
        row that does not open is :class:`Unsealable` (and no file is left)."""
        assert isinstance(db, sqlite3.Connection)
        row = db.execute(f"SELECT rowid FROM {table} WHERE {key}=?", (value,)).fetchone()
        with db.blobopen(table, "data", row[0], readonly=True) as blob:
            return export_file(dest, self._opened(blob.read, len(blob), key_id, table, record),
                               digest)

    def _checked(self, db: Conn, table: str, key: str, value: Any, data: bytes | None,
                 digest: str, spill: Path | None, name: str, key_id: str, record: str
                 ) -> tuple[str, bytes, Path | None]:
        """A row's data as read (opened, when sealed), or — left out of the read as large
        (None) — written into a new file ``name`` of ``spill``: (what is wrong with it, ""
        when nothing is; the bytes; the file)."""
        path = None
        try:
            if data is not None:
                data = self._plain(table, record, data, key_id)
                return ("" if sha256_of(data) == digest else "digest"), data, None
            assert spill is not None
            path = new_path(spill, name)
            intact = self._export(db, table, key, value, path, digest, key_id, record)
        except Unsealable as exc:
            if path is not None:  # what was opened before the piece that did not
                path.unlink(missing_ok=True)
            log.warning("spool.unsealable", queue_id=record.partition(":")[0], kind=table,
                        reason=exc.why)
            return "sealed", b"", None
        return ("" if intact else "digest"), b"", (path if intact else None)

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
            item = self._translate_work(qid, spill, now, body=bodies)
            if item is not None:
                work.append(item)
        return work

    def translate_work(self, queue_id: str, spill: Path | None = None, *,
                       lease_owner: str | None = None, now: float | None = None
                       ) -> TranslateWork | None:
        """A message leased for translation (:meth:`lease_translate`), with its bytes — or,
        larger than ``LARGE`` and with ``spill``, in a file written there for the caller to
        remove.  None when it is no longer there to translate (no recipient waits for it;
        with ``lease_owner``: its lease is no longer that one's), or its bytes no longer
        match their digest (it is then set aside: quarantined as corrupt)."""
        large = None
        if lease_owner is not None:  # the lease and the size in one read
            with self._read() as db:
                row = db.execute("SELECT m.lease_owner, length(b.data) FROM messages m LEFT "
                                 "JOIN bodies b ON b.queue_id = m.queue_id WHERE m.queue_id=?",
                                 (queue_id,)).fetchone()
            if row is None or row[0] != lease_owner:
                return None
            large = spill is not None and int(row[1] or 0) > LARGE
        item = self._translate_work(queue_id, spill, time.time() if now is None else now,
                                    large=large)
        if item is not None and not item.rcpts:
            if item.path:
                Path(item.path).unlink(missing_ok=True)
            return None
        return item

    def _translate_work(self, queue_id: str, spill: Path | None, now: float, *,
                        body: bool = True, large: bool | None = None) -> TranslateWork | None:
        """``large``: whether the body is to come out as a file, when the caller read its
        size already."""
        with self._read() as db:
            # (not length(data) in the same query: SQLite would read the whole blob for it)
            if large is None:
                large = body and self._large(spill, "bodies", "queue_id", queue_id)
            if body:
                row = db.execute(
                    "SELECT m.direction, m.mail_from, CASE WHEN ? THEN NULL ELSE b.data END, "
                    "m.digest, m.received_at, m.translate_attempts, m.hub_auth, b.key_id "
                    "FROM messages m "
                    "JOIN bodies b ON b.queue_id = m.queue_id WHERE m.queue_id=?",
                    (large, queue_id)).fetchone()
            else:
                row = db.execute(
                    "SELECT direction, mail_from, NULL, digest, received_at, translate_attempts, "
                    "hub_auth, '' FROM messages WHERE queue_id=?", (queue_id,)).fetchone()
            rcpts = tuple(r[0] for r in db.execute(
                "SELECT rcpt FROM recipients WHERE queue_id=? AND state='received' ORDER BY id",
                (queue_id,)))
            if row is None:
                return None
            direction, mail_from, data, digest, received_at, attempts, hub_auth, key_id = row
            wrong, data, path = (self._checked(db, "bodies", "queue_id", queue_id, data,
                                               digest, spill, queue_id, key_id, queue_id)
                                 if body else ("", b"", None))
        if wrong:
            self._set_aside(queue_id, CORRUPT[wrong], now)
            return None
        if direction not in _DIRECTIONS:  # a damaged row must not stop the workers
            if path is not None:
                path.unlink()
            self._set_aside(queue_id, "corrupt: unknown direction", now)
            return None
        return TranslateWork(queue_id, Direction(direction), mail_from, rcpts, data,
                             received_at, attempts, str(path or ""), str(hub_auth or ""))

    def _set_aside(self, queue_id: str, reason: str, now: float) -> None:
        """Quarantined from ``now`` (retention counts from then, not from its arrival)."""
        with self._tx() as db:
            db.execute("UPDATE recipients SET state='quarantined', reason=?, lease_owner=NULL, "
                       "updated_at=? WHERE queue_id=? AND state NOT IN ('delivered','bounced')",
                       (reason, now, queue_id))
            db.execute("UPDATE messages SET lease_owner=NULL WHERE queue_id=?", (queue_id,))

    def store_translated(self, queue_id: str, groups: Sequence[tuple[Sequence[str], Payload]],
                         *, now: float, routes: Mapping[str, str] | None = None,
                         lease_owner: str | None = None, durable: bool = True) -> bool:
        """Translated bytes (or the file holding them) per group of recipients; ``routes``:
        the mailbox a directory alias resolved to (delivered there, reported under the
        alias).  With ``lease_owner``: stored only while the message's translation lease is
        still that one's (a worker process of a daemon killed meanwhile stores nothing: the
        next run translates again); whether it was stored.

        ``durable=False`` (what the translation workers do): the commit waits for no fsync.
        Nothing is lost by it: the message it was made from is durable since its ``250``; a
        kill -9 loses no commit (it is in the operating system's cache, which survives the
        process); a power cut before the next synced commit loses this one whole, and the
        message is found ``received`` again and translated again (its lease, unsynced too,
        is lost with it or runs out).  And nothing depends on it before it is durable: the
        delivery lease that takes it is a synced commit, made after it and before anything
        is sent, and a synced commit makes every earlier one durable with it — SQLite's WAL
        is replayed after a crash only up to the first frame whose running checksum breaks,
        so what survives is always a prefix of the commits; PostgreSQL flushes its WAL up
        to a synchronous commit's record, past every asynchronous commit before it."""
        routes = routes or {}
        with self._tx(durable=durable) as db:
            if lease_owner is not None:
                row = db.execute("SELECT lease_owner FROM messages WHERE queue_id=?"
                                 f"{self._for_update()}", (queue_id,)).fetchone()
                if row is None or row[0] != lease_owner:
                    return False
            for rcpts, data in groups:
                digest = sha256_of(data)
                output_id = self._insert_with_data(db, "outputs", ("queue_id", "digest"),
                                                   (queue_id, digest), data,
                                                   returning="output_id",
                                                   record=f"{queue_id}:{digest}")
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
                    "m.direction, m.mail_from, m.received_at, m.message_id, o.key_id "
                    "FROM outputs o JOIN "
                    "messages m ON m.queue_id = o.queue_id WHERE o.output_id=?",
                    (large, oid)).fetchone()
                if row is None:
                    continue
                qid, data, digest, direction, mail_from, received_at, message_id, key_id = row
                wrong, data, path = self._checked(db, "outputs", "output_id", oid, data,
                                                  digest, spill, f"{qid}.{oid}", key_id,
                                                  f"{qid}:{digest}")
                if wrong:
                    self._set_aside(qid, CORRUPT_OUTPUT[wrong], now)
                    continue
                if direction not in _DIRECTIONS:
                    if path is not None:
                        path.unlink()
                    self._set_aside(qid, "corrupt: unknown direction", now)
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
            # by the clock and by the schedule: a clock stepped forward ends nothing early
            warn = not warned and self.policy.covers(attempts, now - first,
                                                     self.policy.delay_warning_after)
            expired = self.policy.covers(attempts, now - first, self.policy.lifetime)
            for rcpt in rcpts:
                db.execute(
                    "UPDATE recipients SET state='deferred', attempts=?, next_attempt=?, "
                    "first_deferred=COALESCE(first_deferred, ?), warned=CASE WHEN ?=1 THEN 1 "
                    "ELSE warned END, reason=?, "
                    "lease_owner=NULL, lease_until=0, updated_at=? WHERE output_id=? AND rcpt=?",
                    (attempts, nxt, now, 1 if warn else 0, reason[:300], now, output_id, rcpt))
        return nxt, warn, expired

    # -- the wall clock stepped -----------------------------------------------------------

    def clock_stepped(self, *, since: float, step: float, horizon: float) -> int:
        """The wall clock jumped by ``step`` seconds just after ``since`` (as the daemon saw
        it against the monotonic clock): the times the spool waits for — next attempts,
        next translations, leases — that were written on the old clock (after ``since``,
        at most ``horizon`` later) move with it, so every wait lasts the time it was given:
        a clock set back a day stalls nothing, one set forward does not end leases early.
        A SQLite spool has one daemon, which saw the step; returns the rows moved."""
        window = (step, since, since + horizon)
        with self._tx() as db:
            n = 0
            for table, column in (("recipients", "next_attempt"), ("recipients", "lease_until"),
                                  ("messages", "next_translate"), ("messages", "lease_until")):
                n += db.execute(f"UPDATE {table} SET {column} = {column} + ? "
                                f"WHERE {column} > ? AND {column} <= ?", window).rowcount
        return int(n)

    def unstall(self, *, now: float, horizon: float) -> int:
        """Times further ahead than any schedule sets (``now + horizon``: the longest
        backoff or lease) can only come from a clock that was ahead when they were written
        (set back since, perhaps while the daemon was stopped): they are due now (a lease:
        ends ``horizon`` from now).  Run at
        start, and by a daemon on PostgreSQL when it sees its clock step (the other
        instances may not have: times are not moved there, only the impossible ones)."""
        with self._tx() as db:
            n = 0
            for table, column, due in (("recipients", "next_attempt", now),
                                       ("messages", "next_translate", now),
                                       # a lease may be held by work in flight: it ends
                                       # after the longest lease, not at once
                                       ("recipients", "lease_until", now + horizon),
                                       ("messages", "lease_until", now + horizon)):
                n += db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} > ?",
                                (due, now + horizon)).rowcount
        return int(n)

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
            row = db.execute("SELECT rowid, key_id FROM bodies WHERE queue_id=?",
                             (queue_id,)).fetchone()
            if row is None:
                raise BadInputError(f"no message {queue_id} in the queue")
            assert isinstance(db, sqlite3.Connection)
            with db.blobopen("bodies", "data", row[0], readonly=True) as blob:
                if not row[1]:
                    return blob.read(limit)
                return self._head_of(blob.read, len(blob), row[1], "bodies", queue_id, limit)

    def size_bytes(self) -> int:
        try:
            return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal"))
                       if p.exists())
        except OSError:
            return 0
