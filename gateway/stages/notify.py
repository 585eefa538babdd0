"""The notices stage: what the gateway writes itself and queues for delivery.

* a **bounce** or a **delay notice** about a message it could not deliver (or translate),
  to its sender in the sender's own network and format: a sealed French letter for a legacy
  user (:func:`gateway.translate.notices.legacy_notice`), an RFC 3464 DSN for a trust-space
  sender (:func:`gateway.translate.notices.build_dsn`);
* an **MDN** (RFC 8098) when a trust-space sender asked for one, once the message is
  delivered to the legacy side or could not be (error ``900``).

Each notice is stored in the spool as a message of direction ``notice``, already in state
``translated`` and with a null sender: the delivery stage sends it as it is, and nothing is
ever written about a notice (no bounce loops).  A notice that cannot be written (the sender's
key missing, a bug) is logged and let go: the original's own state is never touched here.

A notice and the message it is about are linked in the journal both ways: the message's
trace gets a ``notice`` step (the notice's trace id and queue id, what kind of notice) and the
notice's own trace begins with a ``written`` step naming the message (its trace id and queue
id); the notice's delivery attempts follow under its own id.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.errors import PasserelleError
from gateway.journal import Journal, step_record
from gateway.log import get_logger
from gateway.ops.metrics import Metrics
from gateway.spool import Direction, SqliteSpool, State
from gateway.stages.common import HEAD_MAX, Book, Clock, message_id_of, run_in
from gateway.translate import notices
from gateway.translate.trace import sha256, trace_id
from gateway.wakeup import Wakeup

log = get_logger("passerelle.daemon")

# Seal a letter for a legacy user's key: (the sealed message, the tool that sealed each part).
Seal = Callable[[bytes, str], Awaitable[tuple[bytes, Sequence[str]]]]


@dataclass(frozen=True)
class About:
    """The message a notice is about, as the journal knows it."""

    queue_id: str
    trace_id: str
    direction: str


class Notices:
    """Writes bounces, delay notices and MDNs, and queues them for delivery."""

    def __init__(self, *, spool: SqliteSpool, db: Executor, clock: Clock, book: Book,
                 seal: Seal, metrics: Metrics, hostname: str, gateway_domain: str,
                 wake_deliver: Wakeup, journal: Journal | None = None) -> None:
        self.spool = spool
        self.journal = journal  # a notice and its message linked in their traces
        self.db = db  # the spool's threads
        self.clock = clock
        self.book = book
        self.seal = seal
        self.metrics = metrics
        self.hostname = hostname  # the reporting MTA of a DSN, the reporting UA of an MDN
        self.gateway_domain = gateway_domain
        self.wake_deliver = wake_deliver

    async def notify(self, direction: Direction, sender: str, original: bytes,
                     failures: list[notices.Failure], *, delayed: bool = False,
                     anonymous: bool = False, queue_id: str = "",
                     received_at: float = 0.0, about: About | None = None) -> None:
        """Tell ``sender`` of a message of ``direction`` (``original``: its header block;
        ``about``: the message, linked to the notice in the journal) what became of some of
        its recipients: failed, or still ``delayed``.  ``anonymous``: a legacy message whose
        sender was never verified — the letter names it by our queue id and time of arrival
        only, and quotes nothing it says (see :func:`notices.legacy_notice`)."""
        if not sender or direction is Direction.NOTICE:
            return  # never a notice about a notice (no bounce loops)
        now = datetime.fromtimestamp(self.clock(), UTC)
        try:
            if direction is Direction.TO_TRUST:  # the sender is a legacy user
                user = self.book().by_legacy(sender)
                letter = notices.legacy_notice(
                    original,
                    sender=user.legacy_address,
                    failures=failures,
                    gateway_domain=self.gateway_domain,
                    now=now,
                    delayed=delayed,
                    charset=user.charset,
                    unverified=(queue_id, datetime.fromtimestamp(received_at, UTC))
                    if anonymous else None,
                )
                data, tools = await self.seal(letter, user.legacy_fingerprint)
                for tool in tools:
                    self.metrics.count_legacy_part("sealed", tool)
                rcpt = user.legacy_address
            else:
                data = notices.build_dsn(
                    original,
                    sender=sender,
                    failures=failures,
                    reporting_mta=self.hostname,
                    now=now,
                )
                rcpt = sender
        except PasserelleError as exc:
            log.error("notice.failed", kind=exc.kind)
            return
        except Exception as exc:  # a bug must not lose the original's state
            log.error("notice.failed", exc_info=exc)
            return
        notice_id = await self.queue(rcpt, data)
        if anonymous:
            log.info("notice.unverified", queue_id=queue_id)
        await self.link(about, notice_id, data, "delay" if delayed else "bounce")
        self.wake_deliver.notify()

    async def link(self, about: About | None, queue_id: str, data: bytes, kind: str) -> None:
        """The notice ``queue_id`` (``data``) and the message ``about`` it, linked in their
        traces: ``notice`` in the message's, ``written`` first in the notice's."""
        if about is None or self.journal is None:
            return
        at = datetime.fromtimestamp(self.clock(), UTC)
        digest = sha256(data)
        notice = trace_id(message_id_of(data), digest)
        steps = [
            (about.trace_id, "notice", step_record(
                at=at, direction=about.direction, queue_id=about.queue_id, kind=kind,
                notice=notice, notice_queue_id=queue_id)),
            (notice, "written", step_record(
                at=at, direction=str(Direction.NOTICE), queue_id=queue_id, kind=kind,
                about=about.trace_id, about_queue_id=about.queue_id, digest=digest,
                size=len(data))),
        ]
        journal = self.journal
        try:
            await run_in(self.db, journal.record_many, steps)
        except PasserelleError as exc:  # the notice is queued: its trace is not worth losing it
            log.error("notice.unjournaled", queue_id=queue_id, kind=exc.kind)

    async def queue(self, rcpt: str, data: bytes, *, peer: str = "") -> str:
        """A message we wrote ourselves (bounce, delay notice, DSN, MDN): queued ready for
        delivery as it is, with a null sender (never a notice about a notice).  The caller
        wakes the delivery stage."""
        queue_id, _ = await run_in(
            self.db,
            self.spool.accept,
            direction=Direction.NOTICE,
            mail_from="",
            rcpts=(rcpt,),
            data=data,
            message_id=message_id_of(data),
            now=self.clock(),
            peer=peer,
            state=State.TRANSLATED,
        )
        return queue_id

    async def mdn(self, queue_id: str, return_path: str, rcpts: Sequence[str], *,
                  error: str | None = None, returned: bytes | None = None,
                  about: About | None = None) -> None:
        """Answer an MDN request of a trust-space sender (trust-space spec, RFC 8098; codes,
        subject and what is returned as the agency's guide has them): the message
        ``queue_id`` was delivered to ``rcpts`` (or, with ``error``, could not be, and
        ``returned`` is given back)."""
        try:
            original = await run_in(self.db, self.spool.head, queue_id, HEAD_MAX)
        except PasserelleError:
            return
        notify = notices.mdn_requested(original, return_path)
        if notify is None:
            return
        now = datetime.fromtimestamp(self.clock(), UTC)
        for rcpt in rcpts:
            data = await run_in(self.db, functools.partial(
                notices.build_mdn, original, notify=notify, final_recipient=rcpt,
                reporting_ua=self.hostname, now=now, error=error, returned=returned))
            notice_id = await self.queue(notify, data)
            await self.link(about, notice_id, data, "mdn")
        self.wake_deliver.notify()

    async def original(self, queue_id: str) -> bytes:
        """What a notice quotes of a stored message: its header block (b"" when the spool
        no longer has it)."""
        try:
            data: bytes = await run_in(self.db, self.spool.head, queue_id, HEAD_MAX)
        except PasserelleError:
            return b""
        return data
