"""Finding messages in the spool and acting on many at once (`passerelle queue …`, the console).

One filter (:class:`QueueFilter`) serves the listing, the summary and the bulk actions, on
SQLite and on PostgreSQL alike (portable SQL; :class:`gateway.spool.pg.PgSpool` inherits it):

* :meth:`SpoolSearch.search` — one page of messages and the total that match (the CLI's
  ``queue list`` oldest first, the console's search newest first);
* :meth:`SpoolSearch.summary` — counts by state, by destination domain and by age (qshape);
* :meth:`SpoolSearch.bulk` — ``retry``, ``hold``, ``release`` or ``delete`` every match.

A message matches when one of its recipients matches every recipient condition (state,
recipient, domain) and the message the others.  Without a state and without ``everything``,
recipients in a final state (delivered, bounced) do not match: the queue shows what still
needs the bridge or an operator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.errors import UsageError
from gateway.spool.model import FINAL, QueueEntry, RecipientState, State

if TYPE_CHECKING:
    from gateway.journal import Conn

AGE_BUCKETS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800)  # qshape's, in seconds
"""Upper bounds of the age buckets of :meth:`SpoolSearch.summary` (the last bucket is open)."""

_CHUNK = 500  # ids per statement and per transaction in a bulk action


@dataclass(frozen=True)
class QueueFilter:
    """What an operator asks for; every field empty matches every unfinished message."""

    state: str | None = None
    direction: str | None = None
    sender: str | None = None  # an address, or a domain ("x.example" or "@x.example")
    rcpt: str | None = None  # likewise, for a recipient
    domain: str | None = None  # the recipient's domain
    since: float | None = None  # received at or after (epoch seconds)
    until: float | None = None  # received before (epoch seconds)
    message_id: str | None = None
    any_domain: str | None = None  # the sender's or any recipient's domain
    everything: bool = False  # delivered and bounced recipients too

    def where(self, rcpt_column: Callable[[str], str] = lambda c: f"r.{c}",
              ) -> tuple[str, list[Any], str, list[Any]]:
        """(recipient conditions, their parameters, message conditions, theirs); the
        recipient conditions name columns through ``rcpt_column``."""
        rc: list[str] = []
        rp: list[Any] = []
        if self.state:
            rc.append(f"{rcpt_column('state')} = ?")
            rp.append(self.state)
        elif not self.everything:
            rc.append(f"{rcpt_column('state')} NOT IN ({','.join('?' * len(FINAL))})")
            rp.extend(str(s) for s in FINAL)
        if self.rcpt:
            sql, value = _address(rcpt_column("rcpt"), self.rcpt)
            rc.append(sql)
            rp.append(value)
        if self.domain:
            sql, value = _address(rcpt_column("rcpt"), "@" + self.domain.lstrip("@"))
            rc.append(sql)
            rp.append(value)
        mc: list[str] = []
        mp: list[Any] = []
        if self.direction:
            mc.append("m.direction = ?")
            mp.append(self.direction)
        if self.sender:
            sql, value = _address("m.mail_from", self.sender)
            mc.append(sql)
            mp.append(value)
        if self.since is not None:
            mc.append("m.received_at >= ?")
            mp.append(self.since)
        if self.until is not None:
            mc.append("m.received_at < ?")
            mp.append(self.until)
        if self.any_domain:
            sender, value = _address("m.mail_from", "@" + self.any_domain.lstrip("@"))
            rcpt, _ = _address("a.rcpt", "@" + self.any_domain.lstrip("@"))
            mc.append(f"({sender} OR EXISTS (SELECT 1 FROM recipients a WHERE "
                      f"a.queue_id = m.queue_id AND {rcpt}))")
            mp.extend((value, value))
        if self.message_id:
            bare = self.message_id.strip().strip("<>")
            mc.append("m.message_id IN (?, ?)")
            mp.extend((bare, f"<{bare}>"))
        return " AND ".join(rc) or "1=1", rp, " AND ".join(mc) or "1=1", mp


def _address(column: str, value: str) -> tuple[str, str]:
    """An address matches itself (case aside); a domain (``x.example`` or ``@x.example``)
    every address at it."""
    value = value.strip().lower()
    local, at, domain = value.rpartition("@")
    if at and local:
        return f"lower({column}) = ?", value
    escaped = re.sub(r"([!%_])", r"!\1", domain)
    return f"lower({column}) LIKE ? ESCAPE '!'", f"%@{escaped}"


_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, *, now: float | None = None) -> float:
    """``30m``, ``2h``, ``3d``, ``1w`` (that long ago) or an ISO date or date-time (local
    time unless it names its zone) → epoch seconds."""
    now = time.time() if now is None else now
    m = _SINCE.match(text.strip().lower())
    if m:
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration (30m, 2h, 3d, 1w) or a date "
                         "(2026-12-01 or 2026-12-01T08:00)") from None
    return when.astimezone().timestamp() if when.tzinfo is None else when.timestamp()


@dataclass(frozen=True)
class Summary:
    """Counts of recipients (qshape counts recipients too): by state, by destination domain
    (each with its counts by age bucket), and by age bucket over all."""

    messages: int
    recipients: int
    by_state: dict[str, int]
    by_domain: dict[str, list[int]]  # domain -> [total, bucket 0, bucket 1, …]
    by_age: list[int]


def _chunks(items: Sequence[str], n: int = _CHUNK) -> Iterator[Sequence[str]]:
    for at in range(0, len(items), n):
        yield items[at:at + n]


_BULK = {
    # action: (recipient states it applies to, the UPDATE's SET clause, its parameters)
    "retry": (("deferred",), "next_attempt=?", ("now",)),
    "hold": (("received", "translated", "deferred"), "state='held', updated_at=?", ("now",)),
    "release": (("held", "quarantined"),
                "state='received', output_id=NULL, next_attempt=?, attempts=0, "
                "first_deferred=NULL, warned=0, reason='released', lease_owner=NULL, "
                "updated_at=?", ("now", "now")),
}
BULK_ACTIONS = (*_BULK, "delete")


class SpoolSearch:
    """Search, summary and bulk actions; mixed into the spool classes."""

    if TYPE_CHECKING:
        def _read(self) -> AbstractContextManager[Conn]: ...
        def _tx(self, *, durable: bool = True) -> AbstractContextManager[Conn]: ...

    def _matching(self, f: QueueFilter) -> tuple[str, list[Any]]:
        rc, rp, mc, mp = f.where()
        return (f"FROM messages m WHERE {mc} AND EXISTS (SELECT 1 FROM recipients r WHERE "
                f"r.queue_id = m.queue_id AND {rc})", [*mp, *rp])

    def search(self, f: QueueFilter, limit: int = 50, offset: int = 0, *,
               newest_first: bool = False) -> tuple[list[QueueEntry], int]:
        """One page of the messages ``f`` matches, oldest first (``newest_first``: the
        other way), and how many match in all.  Each entry carries all its recipients (not
        only those that matched).  The one search of the spool: ``passerelle queue`` and the
        operator console both call it."""
        frm, params = self._matching(f)
        order = "m.received_at DESC, m.queue_id" if newest_first else "m.received_at, m.queue_id"
        with self._read() as db:
            total = int(db.execute(f"SELECT COUNT(*) {frm}", params).fetchone()[0])
            rows = db.execute(
                "SELECT m.queue_id, m.direction, m.message_id, m.mail_from, m.size, m.digest, "
                f"m.received_at {frm} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset]).fetchall()
            rcpts: dict[str, list[RecipientState]] = {r[0]: [] for r in rows}
            for ids in _chunks([r[0] for r in rows]):
                for qid, rcpt, state, attempts, nxt, reason in db.execute(
                        "SELECT queue_id, rcpt, state, attempts, next_attempt, reason FROM "
                        f"recipients WHERE queue_id IN ({','.join('?' * len(ids))}) ORDER BY id",
                        list(ids)).fetchall():
                    rcpts[qid].append(RecipientState(rcpt, State(state), attempts, nxt, reason))
        entries = [QueueEntry(qid, direction, message_id, mail_from.rpartition("@")[2], size,
                              digest, received_at, tuple(rcpts[qid]))
                   for qid, direction, message_id, mail_from, size, digest, received_at in rows]
        return entries, total

    def search_ids(self, f: QueueFilter) -> list[str]:
        """Every queue id ``f`` matches, oldest first."""
        frm, params = self._matching(f)
        with self._read() as db:
            return [r[0] for r in db.execute(
                f"SELECT m.queue_id {frm} ORDER BY m.received_at, m.queue_id",
                params).fetchall()]

    def summary(self, f: QueueFilter, *, now: float, domains: int = 20) -> Summary:
        """Recipients ``f`` matches counted by state, by domain (the ``domains`` largest;
        the rest under ``(other)``) and by age (:data:`AGE_BUCKETS`)."""
        rc, rp, mc, mp = f.where()
        by_state: dict[str, int] = {}
        by_domain: dict[str, list[int]] = {}
        by_age = [0] * (len(AGE_BUCKETS) + 1)
        messages: set[str] = set()
        with self._read() as db:
            for qid, rcpt, state, received_at in db.execute(
                    "SELECT m.queue_id, r.rcpt, r.state, m.received_at FROM messages m JOIN "
                    f"recipients r ON r.queue_id = m.queue_id WHERE {mc} AND {rc}",
                    [*mp, *rp]).fetchall():
                messages.add(qid)
                by_state[state] = by_state.get(state, 0) + 1
                age = now - received_at
                bucket = next((i for i, top in enumerate(AGE_BUCKETS) if age < top),
                              len(AGE_BUCKETS))
                by_age[bucket] += 1
                row = by_domain.setdefault(rcpt.rpartition("@")[2].lower(),
                                           [0] * (len(AGE_BUCKETS) + 2))
                row[0] += 1
                row[bucket + 1] += 1
        ranked = sorted(by_domain.items(), key=lambda kv: (-kv[1][0], kv[0]))
        top = dict(ranked[:domains])
        if len(ranked) > domains:
            other = [0] * (len(AGE_BUCKETS) + 2)
            for _, counts in ranked[domains:]:
                other = [a + b for a, b in zip(other, counts, strict=True)]
            top["(other)"] = other
        return Summary(len(messages), sum(by_state.values()), by_state, top, by_age)

    def bulk(self, action: str, ids: Sequence[str], f: QueueFilter, *, now: float,
             progress: Callable[[int], object] = lambda n: None) -> int:
        """Apply ``action`` to the messages ``ids`` (found with ``f``), ``_CHUNK`` at a time
        (one transaction each); ``progress(n)`` after each chunk.  ``retry``, ``hold`` and
        ``release`` change the recipients ``f`` matches that are in a state the action
        applies to; ``delete`` removes whole messages.  Returns the number of recipients
        changed (``delete``: of messages removed)."""
        done = 0
        if action == "delete":
            for ids_ in _chunks(ids):
                marks = ",".join("?" * len(ids_))
                with self._tx() as db:
                    done += int(db.execute(f"DELETE FROM messages WHERE queue_id IN ({marks})",
                                           list(ids_)).rowcount)
                    for table in ("bodies", "recipients", "outputs"):
                        db.execute(f"DELETE FROM {table} WHERE queue_id IN ({marks})",
                                   list(ids_))
                progress(len(ids_))
            return done
        if action not in _BULK:
            raise UsageError(f"unknown action {action}")
        states, assignments, values = _BULK[action]
        rc, rp, _, _ = f.where(lambda c: c)
        for ids_ in _chunks(ids):
            marks = ",".join("?" * len(ids_))
            with self._tx() as db:
                if action == "release":
                    db.execute("UPDATE messages SET next_translate=0, translate_attempts=0, "
                               f"lease_owner=NULL WHERE queue_id IN ({marks}) AND queue_id IN "
                               "(SELECT queue_id FROM recipients WHERE state IN "
                               f"('held','quarantined') AND {rc})", [*ids_, *rp])
                kept = ("AND queue_id IN (SELECT queue_id FROM bodies) " if action == "release"
                        else "")  # a message whose content was purged has nothing to release
                done += int(db.execute(
                    f"UPDATE recipients SET {assignments} WHERE queue_id IN ({marks}) {kept}AND "
                    f"state IN ({','.join('?' * len(states))}) AND {rc}",
                    [*(now for _ in values), *ids_, *states, *rp]).rowcount)
            progress(len(ids_))
        return done
