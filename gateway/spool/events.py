"""What becomes of a stored message outside its translation and delivery, each said twice: one
step in its trace (the journal, under its trace id) and one log line, Postfix-style.

* :func:`quarantined` — the gateway set it aside for an operator (``message.quarantined``);
* :func:`released` — an operator sent it back to work (``message.released``);
* :func:`purged` — it left the spool: an operator deleted it, or retention removed it
  (``message.purged``).

Both the step and the line carry ids, digests, sizes and reason kinds only: never an address,
a name or a word of the message.  The trace id is the one the translator files its steps
under (:func:`gateway.translate.trace.trace_id`), so that ``passerelle trace show`` lists them
with the rest.  :func:`released` and :func:`purged` take several messages at once (a bulk
action): their steps are journaled in one transaction.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.journal import Journal, JournalEntry, step_record
from gateway.log import allow_words, get_logger
from gateway.spool.model import QueueEntry, State
from gateway.translate.trace import trace_id

log = get_logger("passerelle.spool")

PURGE_REASONS = ("operator", "retention")
"""Why a message left the spool: an operator deleted it, or its retention time ended."""

allow_words(*PURGE_REASONS, "purged")


def trace_of(entry: QueueEntry) -> str:
    """The trace id of a stored message."""
    return trace_id(entry.message_id, entry.digest)


def local_operator() -> str:
    """Who runs a command on this box, as the console names its operators (``via:name``):
    the user behind sudo, else the user the command runs as."""
    name = os.environ.get("SUDO_USER") or ""
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = str(os.getuid())
    return f"unix:{name}"


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def quarantined(journal: Journal, entry: QueueEntry, *, kind: str, now: float,
                recipients: int) -> JournalEntry:
    """``entry`` set aside (its translation failed for ``kind``): the trace's
    ``quarantined`` step and the ``message.quarantined`` line."""
    step = journal.record(trace_of(entry), "quarantined", at=_at(now),
                          direction=entry.direction, queue_id=entry.queue_id, kind=kind,
                          fate="quarantine", digest=entry.digest, size=entry.size,
                          recipients=recipients)
    log.warning("message.quarantined", queue_id=entry.queue_id, direction=entry.direction,
                kind=kind, digest=entry.digest, size=entry.size, count=recipients)
    return step


def _set_aside(entry: QueueEntry) -> tuple[str, int]:
    """(the state a release takes ``entry`` out of, how many of its recipients are in it)."""
    counts = {s: sum(1 for r in entry.recipients if r.state is s)
              for s in (State.QUARANTINED, State.HELD)}
    was = State.QUARANTINED if counts[State.QUARANTINED] else State.HELD
    return str(was), counts[State.QUARANTINED] + counts[State.HELD]


def released(journal: Journal, entries: Sequence[QueueEntry], *, operator: str,
             now: float) -> list[JournalEntry]:
    """``entries`` (as they were before the release) sent back to work by ``operator``: per
    message, the trace's ``released`` step (the state it left, how many recipients) and the
    ``message.released`` line.  Each is translated again: that translation's steps follow,
    its ``received`` is not repeated."""
    steps = []
    for entry in entries:
        was, n = _set_aside(entry)
        if not n:
            continue  # nothing of it was set aside: the release did not touch it
        steps.append((trace_of(entry), "released", step_record(
            at=_at(now), direction=entry.direction, queue_id=entry.queue_id,
            operator=operator, was=was, recipients=n, digest=entry.digest)))
        log.info("message.released", queue_id=entry.queue_id, direction=entry.direction,
                 operator=operator, state=was, count=n, digest=entry.digest)
    return journal.record_many(steps) if steps else []


def purged(journal: Journal, entries: Sequence[QueueEntry], *, reason: str, now: float,
           operator: str = "") -> list[JournalEntry]:
    """``entries`` removed from the spool, for ``reason`` (:data:`PURGE_REASONS`; by
    ``operator`` when one acted): per message, the trace's ``purged`` step — the trace
    outlives the message — and the ``message.purged`` line.  Call it once they are gone,
    with what the spool said of them before (:meth:`~gateway.spool.sqlite.SqliteSpool.entry`)."""
    if reason not in PURGE_REASONS:
        raise ValueError(f"purge reason {reason!r} is not one of {PURGE_REASONS}")
    steps = []
    for entry in entries:
        states = sorted({str(r.state) for r in entry.recipients})
        steps.append((trace_of(entry), "purged", step_record(
            at=_at(now), direction=entry.direction, queue_id=entry.queue_id, reason=reason,
            operator=operator, digest=entry.digest, size=entry.size, states=states,
            recipients=len(entry.recipients))))
        log.info("message.purged", queue_id=entry.queue_id, direction=entry.direction,
                 reason=reason, digest=entry.digest, size=entry.size,
                 count=len(entry.recipients), **({"operator": operator} if operator else {}))
    return journal.record_many(steps) if steps else []
