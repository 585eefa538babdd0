"""The directory table (SQLite): bulk import into a new table, then an atomic swap.

Readers always query the view ``directory``; an import fills ``directory_<n>``, indexes it
and, in one transaction, points the view at it and drops the previous table — a reader sees
the old directory or the new one, never a mix, and a failed import leaves the old one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.directory.extract import ReadReport, read
from gateway.directory.model import DirectoryEntry, fold_name
from gateway.errors import BadInputError, SpoolUnavailable


def address_key(address: str) -> str:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}".lower()


@dataclass
class ImportReport:
    lines: int
    imported: int
    duplicates: int
    malformed: int
    malformed_examples: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0


class DirectoryStore:
    """One SQLite file; each thread gets its own connection (the daemon looks up from its
    translation threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolUnavailable(f"directory {path}: {exc.strerror or exc}") from None
        try:
            self.db.execute("CREATE TABLE IF NOT EXISTS directory_meta (k TEXT PRIMARY KEY, "
                            "v TEXT)")
        except sqlite3.Error as exc:
            raise SpoolUnavailable(f"directory {path}: {exc}") from None

    @property
    def db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as exc:
                raise SpoolUnavailable(f"directory {self.path}: {exc}") from None
            self._local.db = db
        return db

    def _current(self) -> str | None:
        row = self.db.execute("SELECT v FROM directory_meta WHERE k='table'").fetchone()
        return row[0] if row else None

    def import_file(self, source: Path,
                    progress: Callable[[int], None] | None = None) -> ImportReport:
        started = time.monotonic()
        report = ReadReport()
        table = f"directory_{int(time.time() * 1000)}"
        db = self.db
        db.execute("PRAGMA synchronous=OFF")  # a rebuildable table: only the swap must last
        db.execute(f"CREATE TABLE {table} (address TEXT PRIMARY KEY, box_type TEXT, "
                   "rpps TEXT, family TEXT, given TEXT, folded TEXT, department TEXT, "
                   "raw TEXT)")
        imported = duplicates = 0
        try:
            db.execute("BEGIN")
            batch: list[tuple[str, ...]] = []
            for entry in read(source, report):
                batch.append(_row(entry))
                if len(batch) >= 20000:
                    n = _insert(db, table, batch)
                    imported += n
                    duplicates += len(batch) - n
                    batch.clear()
                    if progress is not None:
                        progress(report.lines)
            n = _insert(db, table, batch)
            imported += n
            duplicates += len(batch) - n
            db.execute(f"CREATE INDEX {table}_rpps ON {table}(rpps)")
            db.execute(f"CREATE INDEX {table}_name ON {table}(folded)")
            db.execute(f"CREATE INDEX {table}_family ON {table}(family)")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute(f"DROP TABLE IF EXISTS {table}")
            raise
        db.execute("PRAGMA synchronous=FULL")
        old = self._current()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DROP VIEW IF EXISTS directory")
        db.execute(f"CREATE VIEW directory AS SELECT * FROM {table}")
        db.execute("INSERT OR REPLACE INTO directory_meta VALUES ('table', ?)", (table,))
        db.execute("COMMIT")
        if old:
            db.execute(f"DROP TABLE IF EXISTS {old}")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return ImportReport(report.lines, imported, duplicates, report.malformed,
                            report.examples, round(time.monotonic() - started, 2))

    def _query(self, where: str, args: tuple[str, ...]) -> list[DirectoryEntry]:
        if self._current() is None:
            raise BadInputError("no directory imported yet: run `passerelle directory import`")
        rows = self.db.execute(f"SELECT raw FROM directory WHERE {where} ORDER BY address",
                               args).fetchall()
        return [DirectoryEntry(*r[0].split("|")) for r in rows]

    def find_by_rpps(self, rpps: str) -> list[DirectoryEntry]:
        return self._query("rpps = ?", (rpps,))

    def find_by_name(self, family: str, given: str | None = None) -> list[DirectoryEntry]:
        folded = fold_name(f"{family} {given}" if given else family)
        if given:
            return self._query("folded = ?", (folded,))
        return self._query("family = ?", (folded,))

    def find_by_address(self, address: str) -> list[DirectoryEntry]:
        return self._query("address = ?", (address_key(address),))

    def count(self) -> int:
        if self._current() is None:
            return 0
        return int(self.db.execute("SELECT COUNT(*) FROM directory").fetchone()[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _row(e: DirectoryEntry) -> tuple[str, ...]:
    return (address_key(e.address), e.box_type.upper(), e.rpps, fold_name(e.family_name),
            fold_name(e.given_name), fold_name(f"{e.family_name} {e.given_name}"),
            e.department, "|".join(e.values()))


def _insert(db: sqlite3.Connection, table: str, rows: Iterable[tuple[str, ...]]) -> int:
    before = db.total_changes
    db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?,?,?,?,?,?,?,?)", rows)
    return db.total_changes - before
