"""SQLite files of the spool and the journal: one writer at a time, and when to fsync.

The spool and the journal share one file by default (``[spool] url``); both take this
process's writer lock for that file before ``BEGIN IMMEDIATE`` and both commit with
``synchronous=FULL`` unless told a later commit syncs theirs.  :class:`SqliteJournalStore`
is the journal's storage (the :class:`gateway.journal.JournalStore` of a SQLite file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import ConfigError, SpoolFull, SpoolUnavailable
from gateway.spool.schema import SQLITE_JOURNAL

_WRITERS: dict[Path, WriterLock] = {}
_WRITERS_LOCK = threading.Lock()


class WriterLock:
    """The lock writers to one SQLite file take before ``BEGIN IMMEDIATE``, in this process
    (a thread lock) and across the processes that share the file (``flock`` on a file beside
    it, ``<database>-writer``).

    SQLite lets one writer in at a time and makes the others sleep and try again, sleeping
    longer each time (1, 2, 5, 10 … 100 ms): two threads of the daemon that wanted the file
    at once made an SMTP client wait 100–600 ms for a commit that took one, and the
    translation worker processes, which store their translations themselves, would do the
    same to it.  Waiting on this lock, the next writer goes in as soon as the last one is
    done.  Where the lock file cannot be made (a read-only directory: a command that only
    reads), only the thread lock is taken and SQLite's own wait is left between processes."""

    def __init__(self, path: Path) -> None:
        self._thread = threading.Lock()
        self._fd: int | None = None
        try:
            self._fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            self._fd = None

    def __enter__(self) -> WriterLock:
        self._thread.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()


def writer_lock(path: Path) -> WriterLock:
    """The writer lock of the SQLite file ``path`` in this process (one per file)."""
    key = path.resolve()
    with _WRITERS_LOCK:
        lock = _WRITERS.get(key)
        if lock is None:
            lock = _WRITERS[key] = WriterLock(key)
        return lock


@contextmanager
def unsynced(local: threading.local, db: sqlite3.Connection, *, on: bool = True
             ) -> Iterator[None]:
    """The transaction made inside waits for an fsync at its commit (``synchronous=FULL``)
    unless ``on``: then its commit waits for none (``synchronous=NORMAL``; the next commit
    with FULL syncs it with its own: see "Durability" in :mod:`gateway.spool.sqlite`).

    The setting is changed only when it differs from what this connection was last set to
    (``local.normal`` holds the connection left in NORMAL): a worker process whose commits
    are all unsynced sets it once, not twice per transaction.  A connection is opened with
    FULL; a durable transaction sets FULL back before its ``BEGIN``, and if that cannot be
    set the connection is closed and dropped from ``local`` and the error raised (a new one
    starts with FULL): an accept is never committed unsynced."""
    normal = getattr(local, "normal", None) is db
    if on != normal:
        try:
            db.execute("PRAGMA synchronous=NORMAL" if on else "PRAGMA synchronous=FULL")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            local.db = local.normal = None
            raise
        local.normal = db if on else None
    try:
        yield
    finally:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")


def spool_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite://"):]) if url.startswith("sqlite:////") else Path(
            url[len("sqlite:///"):])
    return Path(url)


def journal_path(url: str) -> Path:
    """The journal's file: ``sqlite:///path`` or a bare path (another scheme is a
    configuration error)."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") - 1:]) if url.startswith("sqlite:////") else Path(
            url[len("sqlite:///"):])
    if "://" in url:
        raise ConfigError(f"unsupported journal URL {url.split('://')[0]}://…")
    return Path(url)


class SqliteJournalStore:
    """The journal's table in a SQLite file (the spool's by default): appends take the
    file's writer lock and ``BEGIN IMMEDIATE``, so threads, processes and the spool's own
    writers keep one chain."""

    def __init__(self, path: Path, *, create: bool = True, migrate: bool = True) -> None:
        self.path = path
        self._local = threading.local()
        if not create and not path.is_file():
            raise ConfigError(f"no journal at {path} (the daemon creates it when it first "
                              "starts: check [spool] url and [gateway] state_dir)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = writer_lock(path)  # found once: it resolves the path
            if migrate:
                self._conn().executescript(SQLITE_JOURNAL)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolUnavailable(f"journal {path}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for reads: a database that fails under them is
        :class:`SpoolUnavailable`, never the driver's own exception."""
        try:
            db = self._conn()
            yield db
        except sqlite3.Error as exc:
            raise SpoolUnavailable(f"journal: {exc}") from None

    @contextmanager
    def appending(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction no other writer enters until it is committed; ``durable=False``:
        its commit waits for no fsync (the caller's next commit syncs it)."""
        try:
            with self._writer:  # shared with the spool: the same file
                db = self._conn()
                with unsynced(self._local, db, on=not durable):
                    db.execute("BEGIN IMMEDIATE")
                    yield db
                    db.execute("COMMIT")
        except sqlite3.Error as exc:
            db = self._conn()
            if db.in_transaction:
                db.execute("ROLLBACK")
            if "full" in str(exc):
                raise SpoolFull(f"journal: {exc}") from None
            raise SpoolUnavailable(f"journal: {exc}") from None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = self._local.normal = None
