"""The directory in the PostgreSQL spool database (when ``[spool] url`` is PostgreSQL).

Same contract as the SQLite table: the extraction is streamed with ``COPY`` into a staging
table, de-duplicated by address into a new indexed table, and the ``directory`` view is pointed
at it in one transaction — every instance sees the old directory or the new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from gateway.directory.extract import ReadReport, read
from gateway.directory.store import DirectoryStore, ImportReport, _row
from gateway.errors import SpoolUnavailable
from gateway.pgconn import PgConn, safe_url, thread_conn


class PgDirectoryStore(DirectoryStore):
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(safe_url(url))  # for messages only
        self._local = threading.local()
        try:
            self.db.execute("CREATE TABLE IF NOT EXISTS directory_meta (k TEXT PRIMARY KEY, "
                            "v TEXT)")
        except psycopg.Error as exc:
            raise SpoolUnavailable(f"directory {safe_url(url)}: {exc}") from None

    @property
    def db(self) -> PgConn:  # type: ignore[override]
        return thread_conn(self._local, self.url, "directory")

    def import_file(self, source: Path,
                    progress: Callable[[int], None] | None = None) -> ImportReport:
        started = time.monotonic()
        report = ReadReport()
        table = f"directory_{int(time.time() * 1000)}"
        raw = self.db.raw
        try:
            raw.execute("CREATE UNLOGGED TABLE directory_staging_" + table[10:] +
                        " (n BIGINT, address TEXT, box_type TEXT, rpps TEXT, family TEXT, "
                        "given TEXT, folded TEXT, department TEXT, raw TEXT)")
            staging = "directory_staging_" + table[10:]
            n = 0
            with raw.cursor() as cur, cur.copy(f"COPY {staging} FROM STDIN") as copy:
                for entry in read(source, report):
                    n += 1
                    copy.write_row((n, *_row(entry)))
                    if progress is not None and n % 20000 == 0:
                        progress(report.lines)
            raw.execute(f"CREATE TABLE {table} (address TEXT PRIMARY KEY, box_type TEXT, "
                        "rpps TEXT, family TEXT, given TEXT, folded TEXT, department TEXT, "
                        "raw TEXT)")
            imported = raw.execute(
                f"INSERT INTO {table} SELECT DISTINCT ON (address) address, box_type, rpps, "
                f"family, given, folded, department, raw FROM {staging} ORDER BY address, n"
            ).rowcount
            raw.execute(f"DROP TABLE {staging}")
            raw.execute(f"CREATE INDEX {table}_rpps ON {table}(rpps)")
            raw.execute(f"CREATE INDEX {table}_name ON {table}(folded)")
            raw.execute(f"CREATE INDEX {table}_family ON {table}(family)")
        except BaseException:
            for name in (table, "directory_staging_" + table[10:]):
                try:
                    raw.execute(f"DROP TABLE IF EXISTS {name}")
                except psycopg.Error:
                    break
            raise
        old = self._current()
        with raw.transaction():
            raw.execute(f"CREATE OR REPLACE VIEW directory AS SELECT * FROM {table}")
            raw.execute("INSERT INTO directory_meta VALUES ('table', %s) ON CONFLICT (k) DO "
                        "UPDATE SET v = EXCLUDED.v", (table,))
        if old and old != table:
            raw.execute(f"DROP TABLE IF EXISTS {old}")
        return ImportReport(report.lines, imported, n - imported, report.malformed,
                            report.examples, round(time.monotonic() - started, 2))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def open_directory(target: Path | str) -> DirectoryStore:
    """A SQLite file, or the PostgreSQL database of a ``postgresql://`` URL."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return PgDirectoryStore(target)
    return DirectoryStore(Path(target))
