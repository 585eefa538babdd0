"""The spool's side of sealing (:mod:`gateway.atrest`): stored bytes opened as they are
read, the keys a spool needs checked at start, and records re-sealed under the current key.

A mixin of :class:`gateway.spool.sqlite.SqliteSpool` (and so of the PostgreSQL spool).  A
record's id in the associated data is its message's queue id for ``bodies``, and
``<queue id>:<digest>`` for ``outputs`` (a translated output is known by its message and its
bytes' digest before its row is numbered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from gateway.atrest import (
    PIECE,
    SEALED_PIECE,
    MissingKey,
    Sealer,
    Unsealable,
    aad,
    open_head,
    pieces_in,
)
from gateway.errors import ConfigError
from gateway.journal import Conn

# table -> (its key column, the SQL of a record's id in the associated data)
RECORDS = {"bodies": ("queue_id", "queue_id"),
           "outputs": ("output_id", "queue_id || ':' || digest")}
_SAMPLES = 3  # records tried per key at start: one that opens shows the key is the right one


class SealedRecords:
    sealer: Sealer | None

    def _tx(self, *, durable: bool = True) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's write transaction

    def _read(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's connection for reads

    def _need(self, key_id: str) -> Sealer:
        if self.sealer is None:
            raise MissingKey(f"the spool holds records sealed with key {key_id}: give the "
                             "keyring ([keys] file, or the systemd credential passerelle-keys)")
        return self.sealer

    def _plain(self, table: str, record: str, data: bytes | memoryview, key_id: str) -> bytes:
        """A record's stored bytes as they were given (:class:`Unsealable` when they do not
        open)."""
        if not key_id:
            return bytes(data)
        return self._need(key_id).open_bytes(data, table, record)

    def _opened(self, read: Callable[[int], bytes], length: int, key_id: str, table: str,
                record: str) -> Iterator[bytes]:
        """A record's bytes, in pieces, read with ``read`` from a stored value of ``length``."""
        if not key_id:
            return iter(lambda: read(PIECE), b"")
        return self._need(key_id).open_stream(read, length, table, record)

    def _head_of(self, read: Callable[[int], bytes], length: int, key_id: str, table: str,
                 record: str, limit: int) -> bytes:
        try:
            return open_head(self._need(key_id), read, length, table, record, limit)
        except Unsealable:
            return b""  # shown as nothing; the message is set aside when it is worked on

    # -- at start: the keys the spool needs -------------------------------------------------

    def check_keys(self) -> None:
        """Raise :class:`MissingKey` (exit 78) naming a key id the spool's records need and
        the keyring lacks, or :class:`ConfigError` when a key of that id opens none of the
        records sealed with it (a wrong key under the right id)."""
        with self._read() as db:
            for table, (_, record) in RECORDS.items():
                kids = [r[0] for r in db.execute(
                    f"SELECT DISTINCT key_id FROM {table} WHERE key_id <> ''")]
                for kid in kids:
                    sealer = self._need(kid)
                    if kid not in sealer.keyring.keys:
                        raise MissingKey(f"the spool holds records sealed with key {kid}, "
                                         "which the keyring does not have")
                    rows = db.execute(
                        f"SELECT {record}, substr(data, 1, ?), length(data) FROM {table} "
                        f"WHERE key_id=? LIMIT ?", (SEALED_PIECE, kid, _SAMPLES)).fetchall()
                    if rows and not any(self._opens(sealer, table, *r) for r in rows):
                        raise ConfigError(f"key {kid} of the keyring does not open the records "
                                          "sealed with it: wrong key")

    @staticmethod
    def _opens(sealer: Sealer, table: str, record: str, first: bytes, length: int) -> bool:
        try:
            sealer.open_piece(first, aad(table, record, 0, pieces_in(int(length))))
        except Unsealable:
            return False
        return True

    # -- rotation: records re-sealed under the current key ----------------------------------

    def unsealed(self) -> int:
        """How many records are not sealed with the current key (in clear, or an older key)."""
        current = self.sealer.current if self.sealer is not None else ""
        with self._read() as db:
            return sum(int(db.execute(f"SELECT COUNT(*) FROM {t} WHERE key_id <> ?",
                                      (current,)).fetchone()[0]) for t in RECORDS)

    def reseal(self, *, batch: int = 32, progress: Callable[[int], object] = lambda n: None,
               limit: int | None = None) -> tuple[int, int]:
        """Seal with the current key every record that is not (records in clear included),
        ``batch`` records a transaction; ``progress(n)`` after each.  Returns (records
        re-sealed, records that did not open and were left as they are: their messages are
        set aside when they are worked on)."""
        sealer = self.sealer
        if sealer is None:
            return 0, 0
        done = failed = 0
        for table, (key, record) in RECORDS.items():
            after: Any = "" if key == "queue_id" else -1
            while limit is None or done < limit:
                with self._tx() as db:
                    rows = db.execute(
                        f"SELECT {key}, {record}, key_id FROM {table} WHERE key_id <> ? AND "
                        f"{key} > ? ORDER BY {key} LIMIT ?",
                        (sealer.current, after, batch)).fetchall()
                    for value, rec, kid in rows:
                        after = value
                        if self._reseal_row(db, table, key, value, rec, kid):
                            done += 1
                        else:
                            failed += 1
                if not rows:
                    break
                progress(len(rows))
        return done, failed

    def _reseal_row(self, db: Conn, table: str, key: str, value: Any, record: str,
                    key_id: str) -> bool:
        """Re-seal one record whole (read, opened, sealed and written back in the caller's
        transaction); False when it does not open."""
        assert self.sealer is not None
        data = db.execute(f"SELECT data FROM {table} WHERE {key}=?", (value,)).fetchone()[0]
        try:
            plain = self._plain(table, record, data, key_id)
        except Unsealable:
            return False
        db.execute(f"UPDATE {table} SET data=?, key_id=? WHERE {key}=?",
                   (self.sealer.seal_bytes(plain, table, record), self.sealer.current, value))
        return True
