"""What only the SQLite spool has: a page limit standing in for a full disk, schema migration.

The guarantees shared with PostgreSQL are tested on both in test_spool.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import SpoolFull
from gateway.spool import Direction, SqliteSpool
from gateway.spool.schema import SCHEMA_VERSION
from tests.spool.test_spool import put


def spool(tmp_path: Path, **kw: object) -> SqliteSpool:
    return SqliteSpool(tmp_path / "spool.db", **kw)  # type: ignore[arg-type]


def test_disk_full_is_4xx(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s._conn().execute("PRAGMA max_page_count = 20")
    with pytest.raises(SpoolFull) as exc:
        for n in range(200):
            s.accept(direction=Direction.TO_TRUST, mail_from="s@x", rcpts=("a@x",),
                     data=bytes(4000) + str(n).encode(), message_id=f"<{n}@x>", now=0)
    assert exc.value.smtp_reply().startswith("452 4.3.1")


def test_a_version_1_spool_is_migrated_at_open(tmp_path: Path) -> None:
    s = spool(tmp_path)
    put(s)
    s.close()
    db = sqlite3.connect(tmp_path / "spool.db")
    db.execute("ALTER TABLE recipients DROP COLUMN in_doubt")
    db.execute("ALTER TABLE recipients DROP COLUMN deliver_to")
    db.execute("ALTER TABLE messages DROP COLUMN hub_auth")  # version 4 added it
    db.execute("ALTER TABLE messages ADD COLUMN data BLOB")  # version 1 kept the bytes there
    db.execute("UPDATE messages SET data = (SELECT data FROM bodies b WHERE b.queue_id = "
               "messages.queue_id)")
    db.execute("DELETE FROM bodies")
    db.execute("UPDATE schema_version SET version=1")
    db.commit()
    db.close()
    again = spool(tmp_path)
    assert len(again.list()) == 1
    assert again.show(again.list()[0].queue_id)[1]
    assert sqlite3.connect(tmp_path / "spool.db").execute(
        "SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)


def test_leasing_a_message_does_not_write_its_bytes_again(tmp_path: Path) -> None:
    """SQLite writes a whole row again on UPDATE: the bytes live apart from the row that
    leases change, so a lease adds a few pages to the WAL, not the message."""
    s = spool(tmp_path)
    s.accept(direction=Direction.TO_TRUST, mail_from="s@x", rcpts=("a@x",),
             data=bytes(2_000_000), message_id="<big@x>", now=0)
    wal = tmp_path / "spool.db-wal"
    before = wal.stat().st_size
    assert s.lease_translate("W", now=1, duration=60)
    assert wal.stat().st_size - before < 100_000
