"""The spool and the journal on PostgreSQL: several passerelle instances, one database.

Same semantics as the SQLite spool (:mod:`gateway.spool.sqlite`, whose SQL is shared):

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

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from gateway.errors import BadInputError, SpoolFull, SpoolUnavailable
from gateway.journal import Journal, JournalEntry
from gateway.spool.model import RetryPolicy
from gateway.spool.sqlite import (
    ADD_HUB_AUTH,
    MOVE_BODIES,
    SCHEMA_VERSION,
    Payload,
    SqliteSpool,
    export_file,
)

_LOCK_SCHEMA = 7_305_001  # advisory lock keys (arbitrary, fixed)
_LOCK_JOURNAL = 7_305_002

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,
    digest TEXT NOT NULL,
    peer TEXT NOT NULL DEFAULT '',
    hub_auth TEXT NOT NULL DEFAULT '',
    translate_attempts INTEGER NOT NULL DEFAULT 0,
    next_translate DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bodies (
    queue_id TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    output_id BIGSERIAL PRIMARY KEY,
    queue_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS outputs_queue ON outputs(queue_id);
CREATE TABLE IF NOT EXISTS recipients (
    id BIGSERIAL PRIMARY KEY,
    queue_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    state TEXT NOT NULL,
    output_id BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0,
    first_deferred DOUBLE PRECISION,
    warned INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    deliver_to TEXT
);
CREATE INDEX IF NOT EXISTS recipients_work ON recipients(state, next_attempt);
CREATE INDEX IF NOT EXISTS recipients_queue ON recipients(queue_id);
CREATE INDEX IF NOT EXISTS recipients_output ON recipients(output_id);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id);
CREATE TABLE IF NOT EXISTS accepted (
    message_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (message_id, digest, rcpt)
);
CREATE TABLE IF NOT EXISTS journal (
    seq BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    at TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_message ON journal(message_id);
"""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=512)
def _sql(text: str, with_parameters: bool) -> str:
    """The shared (SQLite-flavoured) SQL in PostgreSQL's dialect."""
    out = text.replace("%", "%%").replace("?", "%s") if with_parameters else text
    if out.startswith("BEGIN IMMEDIATE"):
        return "BEGIN"
    if out.startswith("INSERT OR IGNORE INTO"):
        out = "INSERT INTO" + out[len("INSERT OR IGNORE INTO"):] + " ON CONFLICT DO NOTHING"
    return out


class PgConn:
    """A psycopg connection (autocommit; transactions are explicit) that speaks the
    spool's SQL."""

    def __init__(self, url: str) -> None:
        self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if parameters:
            return self.raw.execute(_sql(sql, True), parameters)
        return self.raw.execute(_sql(sql, False))

    def close(self) -> None:
        self.raw.close()


def _error(what: str, exc: BaseException) -> Exception:
    text = " ".join(str(exc).split())[:300]
    if "No space left" in text or "could not extend" in text or isinstance(
            exc, psycopg.errors.DiskFull):
        return SpoolFull(f"{what}: {text}")
    return SpoolUnavailable(f"{what}: {text}")


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.partition(':')[0]}@{tail}"


def _thread_conn(local: threading.local, url: str, what: str) -> PgConn:
    """This thread's connection (made again if it was dropped)."""
    db: PgConn | None = getattr(local, "db", None)
    if db is not None and db.raw.closed:
        db = None
    if db is None:
        try:
            db = PgConn(url)
        except psycopg.Error as exc:
            raise _error(f"{what} {_safe_url(url)}", exc) from None
        local.db = db
    return db


def _rollback_or_drop(local: threading.local, db: PgConn) -> None:
    """After a failure the connection may be unusable: roll back, or drop it."""
    try:
        if db.in_transaction:
            db.raw.execute("ROLLBACK")
    except psycopg.Error:
        db.raw.close()
        local.db = None


@contextmanager
def _reading(local: threading.local, db: PgConn, what: str) -> Iterator[PgConn]:
    """``db`` for reads outside a transaction: a driver error rolls back or drops the
    connection and becomes :class:`SpoolUnavailable` (or :class:`SpoolFull`)."""
    try:
        yield db
    except psycopg.Error as exc:
        _rollback_or_drop(local, db)
        raise _error(what, exc) from None


class PgSpool(SqliteSpool):
    """The spool in a PostgreSQL database shared by several instances."""

    def __init__(self, url: str, *, policy: RetryPolicy | None = None) -> None:
        self.url = url
        self.policy = policy or RetryPolicy()
        self._local = threading.local()
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({_LOCK_SCHEMA})")
            for statement in _SCHEMA.split(";"):
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
                db.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise SpoolUnavailable(
                    f"the spool database has schema {row[0]}, newer than this passerelle "
                    f"({SCHEMA_VERSION}): upgrade passerelle")

    def _conn(self) -> PgConn:
        return _thread_conn(self._local, self.url, "spool")

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
            raise _error("spool", exc) from None
        except BaseException:
            self._discard(db)
            raise

    @contextmanager
    def _read(self) -> Iterator[PgConn]:
        with _reading(self._local, self._conn(), "spool") as db:
            yield db

    def _discard(self, db: PgConn) -> None:
        _rollback_or_drop(self._local, db)

    @staticmethod
    def _skip_locked(table: str) -> str:
        return f" FOR UPDATE OF {table} SKIP LOCKED" if table else " FOR UPDATE SKIP LOCKED"

    def _insert_with_data(self, db: Any, table: str, columns: tuple[str, ...],
                          values: tuple[Any, ...], data: Payload, *, returning: str) -> Any:
        """INSERT a row and its data (bound whole: psycopg sends a bytea in one piece)."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        names = ", ".join((*columns, "data"))
        marks = ",".join("?" * (len(columns) + 1))
        return db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING "
                          f"{returning}", (*values, payload)).fetchone()[0]

    def _export(self, db: Any, table: str, key: str, value: Any, dest: Path,
                digest: str) -> bool:
        """A row's data into a new private file ``dest`` (read whole: a bytea is)."""
        data = db.execute(f"SELECT data FROM {table} WHERE {key}=?", (value,)).fetchone()[0]
        return export_file(dest, [data], digest)

    def head(self, queue_id: str, limit: int) -> bytes:
        with self._read() as db:
            row = db.execute("SELECT substr(data, 1, ?) FROM bodies WHERE queue_id=?",
                             (limit, queue_id)).fetchone()
        if row is None:
            raise BadInputError(f"no message {queue_id} in the queue")
        return bytes(row[0])

    def ping(self) -> str | None:
        try:
            with self._tx() as db:
                db.execute("SELECT 1 FROM schema_version FOR UPDATE")
        except (SpoolUnavailable, SpoolFull) as exc:
            return str(exc)
        return None

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


class PgJournal(Journal):
    """The journal in the same PostgreSQL database; one chain for every instance."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        PgSpool(url).close()  # creates or migrates the schema (the journal table included)

    def _conn(self) -> Any:
        return _thread_conn(self._local, self.url, "journal")

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with _reading(self._local, self._conn(), "journal") as db:
            yield db

    def _begin_chain(self, db: Any, *, durable: bool = True) -> None:
        db.execute("BEGIN")
        if not durable:  # see Journal.append_traces
            db.execute("SET LOCAL synchronous_commit = off")
        db.execute(f"SELECT pg_advisory_xact_lock({_LOCK_JOURNAL})")

    def _append_many(self, items: list[tuple[str, str, dict[str, Any]]], *,
                     at: datetime, durable: bool = True) -> list[JournalEntry]:
        db = self._conn()
        try:
            out, written = self._chain(db, items, at.isoformat(), durable=durable)
        except psycopg.Error as exc:
            _rollback_or_drop(self._local, db)
            raise _error("journal", exc) from None
        self._count(written)
        return out

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
