"""Retention: nothing kept longer than needed (``[retention]``).

A message is *finished* when none of its recipients is still to be worked on (every one
``delivered``, ``bounced`` or ``quarantined``; a ``held`` message is an operator's and is never
purged).  Counted from its last recipient's outcome:

* the **content** (its stored bytes and translated outputs) of a delivered or bounced message
  goes after ``content_days``, of our own notices after ``notices_days``, of a message with a
  quarantined recipient after ``quarantine_days`` (it can no longer be released then);
* the **rest** (envelope, recipients and their states, digests) after ``metadata_days``.

The journal keeps what it recorded (steps, digests, never content), and a ``purged`` step for
each message whose content or rows went.  A mixin of the spool, whose transactions it uses;
deleted pages are overwritten (``secure_delete``) and the SQLite WAL is emptied afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.config import RetentionSettings as RetentionPolicy
from gateway.journal import Conn, Journal, step_record

DAY = 86400.0
_CHUNK = 200


@dataclass(frozen=True)
class Purged:
    """One message whose content (``what="content"``) or rows (``"metadata"``) were purged."""

    queue_id: str
    message_id: str
    what: str
    days: float


class Retention:
    def _tx(self, *, durable: bool = True) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's write transaction

    def _read(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError  # the spool's connection for reads

    def _after_purge(self) -> None:
        """What the back-end does once rows were deleted (SQLite: empty the WAL)."""

    def purge(self, policy: RetentionPolicy, *, now: float,
              progress: Callable[[int], object] = lambda n: None) -> list[Purged]:
        """Purge what ``policy`` no longer keeps; what went, message by message."""
        newest = min(policy.content_days, policy.quarantine_days, policy.notices_days,
                     policy.metadata_days)
        with self._read() as db:
            rows = db.execute(
                "SELECT m.queue_id, m.message_id, m.direction, MAX(r.updated_at), "
                "SUM(CASE WHEN r.state = 'quarantined' THEN 1 ELSE 0 END), "
                "EXISTS (SELECT 1 FROM bodies b WHERE b.queue_id = m.queue_id) OR "
                "EXISTS (SELECT 1 FROM outputs o WHERE o.queue_id = m.queue_id) "
                "FROM messages m JOIN recipients r ON r.queue_id = m.queue_id "
                "GROUP BY m.queue_id, m.message_id, m.direction "
                "HAVING SUM(CASE WHEN r.state IN ('delivered','bounced','quarantined') THEN 0 "
                "ELSE 1 END) = 0 AND MAX(r.updated_at) < ?",
                (now - newest * DAY,)).fetchall()
        content: list[Purged] = []
        metadata: list[Purged] = []
        for qid, message_id, direction, last, quarantined, has_content in rows:
            age = now - float(last)
            if has_content:
                days = (policy.quarantine_days if quarantined else policy.notices_days
                        if direction == "notice" else policy.content_days)
                if age >= days * DAY:
                    content.append(Purged(qid, message_id, "content", days))
            elif age >= policy.metadata_days * DAY:
                metadata.append(Purged(qid, message_id, "metadata", policy.metadata_days))
        for batch in _chunks(content):
            ids = [p.queue_id for p in batch]
            marks = ",".join("?" * len(ids))
            with self._tx() as db:
                for table in ("bodies", "outputs"):
                    db.execute(f"DELETE FROM {table} WHERE queue_id IN ({marks})", ids)
                db.execute(f"UPDATE recipients SET output_id=NULL WHERE queue_id IN ({marks})",
                           ids)
            progress(len(batch))
        for batch in _chunks(metadata):
            ids = [p.queue_id for p in batch]
            marks = ",".join("?" * len(ids))
            with self._tx() as db:
                for table in ("accepted", "recipients", "messages"):
                    db.execute(f"DELETE FROM {table} WHERE queue_id IN ({marks})", ids)
            progress(len(batch))
        if content or metadata:
            self._after_purge()
        return content + metadata


def _chunks(items: Sequence[Purged]) -> list[Sequence[Purged]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def record_purges(journal: Journal, purged: Sequence[Purged], *, now: float) -> None:
    """A ``purged`` step in each message's trace: what went, under which retention."""
    if not purged:
        return
    at = datetime.fromtimestamp(now, UTC)
    for batch in _chunks(purged):
        journal.record_many([(p.message_id or p.queue_id, "purged", step_record(
            at=at, direction="", queue_id=p.queue_id, reason="retention", purged=p.what,
            retention_days=p.days)) for p in batch])
