"""The spool and the journal on PostgreSQL: several passerelle instances, one database.

Same semantics as the SQLite spool (:mod:`gateway.spool.sqlite`, whose SQL is shared; the
connections are :mod:`gateway.pgconn`'s):

* ``accept`` returns after ``COMMIT``, and PostgreSQL's ``synchronous_commit`` (on by default;
  leave it on) makes that a WAL fsync — the listener answers ``250`` only then.
* Leases are taken with ``SELECT … FOR UPDATE SKIP LOCKED``: two instances never take the same
  work, and neither waits for the other.
* A dead instance's leases are *not* released by the others at start (they cannot tell a dead
  instance from a busy one): its work is taken over when the leases expire
  (``[workers] lease``), and deliveries taken over that way are marked in doubt.
* One journal chain for all instances: appends take a transaction-scoped advisory lock.
* The schema is created or migrated at start, under an advisory lock, so instances starting
  together do not race.

Connection errors are :class:`SpoolUnavailable` (SMTP 451, the sender retries); a full disk on
the database server is :class:`SpoolFull` (452).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from gateway import spill
from gateway.atrest import PIECE, SEALED_PIECE, Sealer, Unsealable, open_head
from gateway.errors import BadInputError, ConfigError, SpoolFull, SpoolUnavailable
from gateway.pgconn import PgConn, db_error, reading, rollback_or_drop, thread_conn
from gateway.spool.model import RetryPolicy
from gateway.spool.payload import Payload, export_file
from gateway.spool.schema import (
    ADD_HUB_AUTH,
    ADD_KEY_IDS,
    MOVE_BODIES,
    POSTGRESQL,
    SCHEMA_VERSION,
)
from gateway.spool.sealed import SealedRecords
from gateway.spool.sqlite import SPOOL_IDENTITY, SqliteSpool

_LOCK_SCHEMA = 7_305_001  # advisory lock keys (arbitrary, fixed)
_LOCK_JOURNAL = 7_305_002

class PgSpool(SqliteSpool):
    """The spool in a PostgreSQL database shared by several instances."""

    def __init__(self, url: str, *, policy: RetryPolicy | None = None,
                 create: bool = True, sealer: Sealer | None = None, migrate: bool = True
                 ) -> None:
        self.url = url
        self.policy = policy or RetryPolicy()
        self.sealer = sealer
        self._local = threading.local()
        if not create:
            with self._read() as db:
                found = db.execute("SELECT to_regclass('schema_version') IS NOT NULL, "
                                   "to_regclass('spool_identity') IS NOT NULL").fetchone()
            if not found[0]:
                raise ConfigError("no passerelle spool in that PostgreSQL database (the "
                                  "daemon creates it when it first starts: check [spool] url)")
        if migrate:  # not in a worker opened under live traffic: DDL there deadlocks
            self._migrate()
        with self._read() as db:
            if create or found[1]:
                row = db.execute("SELECT spool_id FROM spool_identity").fetchone()
                self.spool_id = str(row[0]) if row is not None else None

    def _where(self) -> str:
        return "database"

    def _file_problem(self) -> str | None:
        return None  # a database, not a file: its spool id alone says it is the same

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({_LOCK_SCHEMA})")
            db.execute(SPOOL_IDENTITY)
            if db.execute("SELECT 1 FROM spool_identity").fetchone() is None:
                db.execute("INSERT INTO spool_identity VALUES (?)", (uuid.uuid4().hex,))
            for statement in POSTGRESQL.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] < SCHEMA_VERSION:
                if row[0] < 3:  # version 2 kept the bytes in messages.data
                    for statement in MOVE_BODIES:
                        db.execute(statement)
                if row[0] < 4:  # version 3 did not record the hub's authentication
                    db.execute(ADD_HUB_AUTH)
                if row[0] < 5:  # records in clear are sealed by reseal()
                    for statement in ADD_KEY_IDS:  # (bodies made just now has it)
                        db.execute(statement.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS"))
                db.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise SpoolUnavailable(
                    f"the spool database has schema {row[0]}, newer than this passerelle "
                    f"({SCHEMA_VERSION}): upgrade passerelle")

    def _conn(self) -> PgConn:
        return thread_conn(self._local, self.url, "spool")

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[PgConn]:
        db = self._conn()
        try:
            db.execute("BEGIN")
            if not durable:  # see SqliteSpool._tx: this transaction's commit waits for no fsync
                db.execute("SET LOCAL synchronous_commit = off")
            yield db
            db.execute("COMMIT")
        except psycopg.Error as exc:
            self._discard(db)
            raise db_error("spool", exc) from None
        except BaseException:
            self._discard(db)
            raise

    @contextmanager
    def _read(self) -> Iterator[PgConn]:
        with reading(self._local, self._conn(), "spool") as db:
            yield db

    def _discard(self, db: PgConn) -> None:
        rollback_or_drop(self._local, db)

    @staticmethod
    def _skip_locked(table: str) -> str:
        return f" FOR UPDATE OF {table} SKIP LOCKED" if table else " FOR UPDATE SKIP LOCKED"

    @staticmethod
    def _for_update() -> str:
        return " FOR UPDATE"  # the row read stays as read until the transaction ends

    def _insert_with_data(self, db: Any, table: str, columns: tuple[str, ...],
                          values: tuple[Any, ...], data: Payload, *, returning: str,
                          record: str) -> Any:
        """INSERT a row and its data, sealed with a sealer (bound whole: psycopg sends a bytea
        in one piece)."""
        payload = spill.read_bytes(data) if isinstance(data, Path) else data
        key_id = ""
        if self.sealer is not None:
            payload, key_id = self.sealer.seal_bytes(payload, table, record), self.sealer.current
        names = ", ".join((*columns, "key_id", "data"))
        marks = ",".join("?" * (len(columns) + 2))
        return db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING "
                          f"{returning}", (*values, key_id, payload)).fetchone()[0]

    def _export(self, db: Any, table: str, key: str, value: Any, dest: Path,
                digest: str, key_id: str, record: str) -> bool:
        """A row's data, opened a piece at a time, into a new private file ``dest`` (read
        whole: a bytea is)."""
        data = memoryview(db.execute(f"SELECT data FROM {table} WHERE {key}=?",
                                     (value,)).fetchone()[0])
        at = 0

        def read(n: int) -> bytes:
            nonlocal at
            at += n
            return bytes(data[at - n:at])

        return export_file(dest, self._opened(read, len(data), key_id, table, record), digest)

    def head(self, queue_id: str, limit: int) -> bytes:
        with self._read() as db:
            # a sealed value: the pieces that hold the first ``limit`` bytes
            row = db.execute("SELECT CASE WHEN key_id = '' THEN substr(data, 1, ?) ELSE "
                             "substr(data, 1, ?) END, key_id, length(data) FROM bodies WHERE "
                             "queue_id=?", (limit, -(-limit // PIECE) * SEALED_PIECE,
                                            queue_id)).fetchone()
        if row is None:
            raise BadInputError(f"no message {queue_id} in the queue")
        data, key_id, length = bytes(row[0]), row[1], int(row[2])
        if not key_id:
            return data
        at = 0

        def read(n: int) -> bytes:
            nonlocal at
            at += n
            return data[at - n:at]

        try:
            return open_head(self._need(key_id), read, length, "bodies", queue_id, limit)
        except Unsealable:
            return b""

    # a bytea is read and written whole: a record is sealed again whole
    _reseal_row = SealedRecords._reseal_row

    def _after_purge(self) -> None:
        """Dead rows' space is reclaimed by autovacuum; their bytes were sealed."""

    def ping(self) -> str | None:
        problem = self.identity_problem()
        if problem is not None:
            return problem
        try:
            with self._tx() as db:
                db.execute("SELECT 1 FROM schema_version FOR UPDATE")
        except (SpoolUnavailable, SpoolFull) as exc:
            return str(exc)
        return None

    def clock_stepped(self, *, since: float, step: float, horizon: float) -> int:
        """Several instances share the database and each sees its own clock: times are not
        moved (another instance may have moved them already), only the impossible ones are
        made due (:meth:`unstall`); the lifetime is guarded by the schedule anyway."""
        return self.unstall(now=since + step, horizon=horizon)

    def recover(self, *, now: float) -> int:
        """Other instances may be running: their leases are left alone (work held by a dead
        instance is taken over when its leases expire)."""
        return 0

    def size_bytes(self) -> int:
        try:
            row = self._conn().execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND "
                "n.nspname = current_schema() AND c.relname IN ('messages', 'outputs', "
                "'recipients', 'accepted')").fetchone()
        except (psycopg.Error, SpoolUnavailable):
            return 0
        return int(row[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class PgJournalStore:
    """The journal's table in the same PostgreSQL database (the
    :class:`gateway.journal.JournalStore` of every instance): one chain for all of them, its
    appends serialised by a transaction-scoped advisory lock."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._local = threading.local()
        if migrate:
            PgSpool(url).close()  # creates or migrates the schema (the journal table too)

    def _conn(self) -> PgConn:
        return thread_conn(self._local, self.url, "journal")

    @contextmanager
    def reading(self) -> Iterator[PgConn]:
        with reading(self._local, self._conn(), "journal") as db:
            yield db

    @contextmanager
    def appending(self, *, durable: bool = True) -> Iterator[PgConn]:
        db = self._conn()
        try:
            db.execute("BEGIN")
            if not durable:  # see Journal.append_traces
                db.execute("SET LOCAL synchronous_commit = off")
            db.execute(f"SELECT pg_advisory_xact_lock({_LOCK_JOURNAL})")
            yield db
            db.execute("COMMIT")
        except psycopg.Error as exc:
            rollback_or_drop(self._local, db)
            raise db_error("journal", exc) from None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
