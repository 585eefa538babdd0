"""PostgreSQL connections shared by the spool, the journal and the directory.

The spool's SQL is written once, in SQLite's dialect (:mod:`gateway.spool.sqlite`);
:class:`PgConn` speaks it to PostgreSQL.  Each thread keeps its own connection, made again
when it was dropped; its users turn a driver error into :class:`SpoolUnavailable` (SMTP 451,
the sender retries) or, for a full disk on the database server, :class:`SpoolFull` (452)
with :func:`db_error`, or through :func:`reading`.  A URL in a message never shows its
password (:func:`safe_url`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from gateway.errors import SpoolFull, SpoolUnavailable


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


def db_error(what: str, exc: BaseException) -> Exception:
    text = " ".join(str(exc).split())[:300]
    if "No space left" in text or "could not extend" in text or isinstance(
            exc, psycopg.errors.DiskFull):
        return SpoolFull(f"{what}: {text}")
    return SpoolUnavailable(f"{what}: {text}")


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.partition(':')[0]}@{tail}"


def thread_conn(local: threading.local, url: str, what: str) -> PgConn:
    """This thread's connection (made again if it was dropped)."""
    db: PgConn | None = getattr(local, "db", None)
    if db is not None and db.raw.closed:
        db = None
    if db is None:
        try:
            db = PgConn(url)
        except psycopg.Error as exc:
            raise db_error(f"{what} {safe_url(url)}", exc) from None
        local.db = db
    return db


def rollback_or_drop(local: threading.local, db: PgConn) -> None:
    """After a failure the connection may be unusable: roll back, or drop it."""
    try:
        if db.in_transaction:
            db.raw.execute("ROLLBACK")
    except psycopg.Error:
        db.raw.close()
        local.db = None


@contextmanager
def reading(local: threading.local, db: PgConn, what: str) -> Iterator[PgConn]:
    """``db`` for reads outside a transaction: a driver error rolls back or drops the
    connection and becomes :class:`SpoolUnavailable` (or :class:`SpoolFull`)."""
    try:
        yield db
    except psycopg.Error as exc:
        rollback_or_drop(local, db)
        raise db_error(what, exc) from None
