"""The delivery stage: translated messages sent to the next hop, and each outcome recorded.

One loop (:meth:`Dispatch.loop`) leases up to 32 translated outputs at a time and delivers
them concurrently (:func:`gateway.smtp.delivery.deliver`, sessions reused per destination, at
most ``[delivery] per_destination`` at once).  Per recipient, the peer's answer moves the
recipient ``translated → delivered`` (2xx; an MDN if the trust-space sender asked for one),
``deferred`` (4xx or no answer: backoff, a delay notice after ``delay_warning_after``,
``bounced`` once the lifetime is over) or ``bounced`` (5xx, or no route): a bounce goes to the
sender through the notices stage.

An output whose earlier attempt was cut off after the peer may have taken it (a crash
between its ``250`` and our record) is sent again flagged ``X-Passerelle-Possible-Duplicate``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import DaemonSettings
from gateway.directory.addresses import domain_of
from gateway.errors import Fate, PasserelleError
from gateway.journal import Journal, step_record
from gateway.log import clean_reply, get_logger
from gateway.ops.metrics import Metrics
from gateway.smtp.delivery import (
    NO_ROUTE,
    DestinationLimiter,
    FileMessage,
    Outcome,
    Router,
    SessionCache,
    deliver,
)
from gateway.spool import Direction, SqliteSpool
from gateway.spool.model import DeliverWork
from gateway.stages.common import Book, Clock, Inflight, run_in
from gateway.stages.notify import About, Notices
from gateway.translate import notices
from gateway.translate.trace import trace_id
from gateway.wakeup import Wakeup

log = get_logger("passerelle.daemon")

STATUS = {None: "sent", Fate.RETRY: "deferred", Fate.BOUNCE: "bounced"}
"""An outcome's fate as the log's ``status`` word (Postfix's)."""


class Dispatch:
    """Leases translated outputs, delivers them, records per recipient what the peer said."""

    def __init__(self, *, spool: SqliteSpool, db: Executor, clock: Clock, book: Book,
                 metrics: Metrics, notices: Notices, settings: DaemonSettings, name: str,
                 spill: Path, router: Router, trust_tls: ssl.SSLContext,
                 legacy_tls: ssl.SSLContext, wake_deliver: Wakeup, inflight: Inflight,
                 journal: Journal | None = None) -> None:
        self.journal = journal  # each attempt is a step of the message's trace
        self.spool = spool
        self.db = db  # the spool's threads
        self.clock = clock
        self.book = book
        self.metrics = metrics
        self.notices = notices
        self.settings = settings
        self.name = name  # this instance, in the spool's leases
        self.spill = spill  # large translated bytes are sent from files here
        self.router = router
        self.trust_tls = trust_tls  # our client certificate, the peer's checked
        self.legacy_tls = legacy_tls
        self.limiter = DestinationLimiter(settings.per_destination)
        self.sessions = SessionCache(per_destination=settings.per_destination)
        self.wake_deliver = wake_deliver
        self.inflight = inflight
        # Last delivery attempt per next hop: did the peer answer at all? (readiness)
        self.peer_status: dict[str, bool] = {}
        self.stopping = False

    def stop(self) -> None:
        """The loop leases nothing more (a drain); deliveries in flight finish."""
        self.stopping = True
        self.wake_deliver.notify_all()

    def close(self) -> None:
        """The SMTP sessions kept open for reuse are closed."""
        self.sessions.close_all()

    async def loop(self) -> None:
        worker = f"{self.name}/d"
        while not self.stopping:
            work = await run_in(
                self.db,
                self.spool.lease_deliver,
                worker,
                now=self.clock(),
                duration=max(self.settings.lease, self.settings.delivery_timeout * 2),
                limit=32,
                spill=self.spill,
            )
            if not work:
                self.sessions.expire()
                await self.wake_deliver.wait(self.settings.poll_interval)
                continue
            tasks = [self.inflight.start(self.deliver_one(item)) for item in work]
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):  # a bug: the lease expires, work is redone
                    log.error("delivery.crashed", exc_info=result)

    def target(self, item: DeliverWork, rcpt: str) -> tuple[str, str, bool]:
        """(domain to route on, address to send to, is it the legacy side?)"""
        book = self.book()
        if rcpt in item.routes:  # a directory alias, resolved when translated
            return domain_of(item.routes[rcpt]), item.routes[rcpt], False
        if item.direction is Direction.TO_LEGACY:
            user = book.by_trust(rcpt)
            return domain_of(user.legacy_address), user.legacy_address, True
        legacy = book.is_legacy(rcpt)
        return domain_of(rcpt), rcpt, legacy

    async def deliver_one(self, item: DeliverWork) -> None:
        """One leased output delivered and its outcome recorded."""
        try:
            await self._deliver_and_record(item)
        finally:
            if item.path:  # large translated bytes: the spool has them
                Path(item.path).unlink(missing_ok=True)

    async def _deliver_and_record(self, item: DeliverWork) -> None:
        flag = b""
        if item.in_doubt:
            # an earlier attempt was cut off after the peer may have taken the message (a
            # crash between its 250 and our record): say so, outside the signed part, so
            # that the receiving side can recognise the copy (RFC 5321 §6.1 duplicates)
            # (its line end is CRLF: every line is put in that form on the wire anyway)
            flag = b"X-Passerelle-Possible-Duplicate: " + item.queue_id.encode() + b"\r\n"
            log.warning("delivery.in_doubt", queue_id=item.queue_id, output_id=item.output_id)
        # large translated bytes are sent from their file (every line end CRLF on the way)
        data = FileMessage(Path(item.path), flag) if item.path else flag + item.data
        by_route: dict[tuple[str, bool], list[tuple[str, str]]] = {}
        outcomes: dict[str, Outcome] = {}
        relays: dict[str, str] = {}
        ended: dict[str, float] = {}  # when each recipient's attempt ended
        for rcpt in item.rcpts:
            try:
                domain, address, legacy = self.target(item, rcpt)
            except PasserelleError:
                outcomes[rcpt] = NO_ROUTE
                continue
            by_route.setdefault((domain, legacy), []).append((rcpt, address))
        for rcpt, outcome in outcomes.items():  # no route: no attempt on the wire
            self.log_attempt(item, rcpt, outcome, relay=None, seconds=0.0)
        for (domain, legacy), pairs in by_route.items():
            route = self.router.route(domain) if legacy else await self.router.resolve(domain)
            if route is None or isinstance(route, Outcome):
                outcomes.update(dict.fromkeys((r for r, _ in pairs), route or NO_ROUTE))
                for rcpt, _ in pairs:
                    self.log_attempt(item, rcpt, route or NO_ROUTE, relay=None, seconds=0.0)
                continue
            if legacy:
                route = type(route)(route.host, route.port, require_tls=False)
            started = time.monotonic()
            async with self.limiter(f"{route.host}:{route.port}"):
                got = await deliver(
                    data,  # with the in-doubt flag when an earlier attempt was cut off
                    mail_from=item.mail_from,
                    rcpts=[a for _, a in pairs],
                    route=route,
                    tls=self.legacy_tls if legacy else self.trust_tls,
                    timeout=self.settings.delivery_timeout,
                    helo=self.settings.hostname,
                    cache=self.sessions,
                )
            self.peer_status[f"{route.host}:{route.port}"] = any(
                o.fate is None or not o.status.startswith(("4.4.", "4.7.")) for o in got.values()
            )
            seconds = time.monotonic() - started
            self.metrics.observe_stage("deliver", seconds)
            for outcome in set(got.values()):
                if outcome.status in ("4.7.5", "4.7.4"):
                    self.metrics.count_tls_failure(
                        domain,
                        "starttls_unsupported"
                        if outcome.status == "4.7.4"
                        else "certificate_unknown",
                    )
            now = self.clock()
            for rcpt, address in pairs:
                outcomes[rcpt] = got[address]
                self.log_attempt(item, rcpt, got[address], relay=f"{route.host}:{route.port}",
                                 seconds=seconds)
                relays[rcpt] = f"{route.host}:{route.port}"
                ended[rcpt] = now
        await self.record(item, outcomes, relays, ended)

    async def trace_id(self, item: DeliverWork) -> str:
        """The id the message's trace is journaled under (a message without a Message-ID:
        the one the translator made of its digest)."""
        if item.message_id:
            return item.message_id
        try:
            entry = await run_in(self.db, self.spool.entry, item.queue_id)
        except PasserelleError:
            return item.queue_id
        return trace_id(entry.message_id, entry.digest)

    async def trace(self, item: DeliverWork, outcomes: dict[str, Outcome],
                    relays: dict[str, str], ended: dict[str, float] | None = None) -> None:
        """One ``delivery`` step per recipient in the message's trace, at the time its
        attempt ended: where, what the peer said (masked as in the log), and what becomes of
        the message."""
        if self.journal is None or not outcomes:
            return
        now = self.clock()
        tid = await self.trace_id(item)
        steps = [(tid, "delivery", step_record(
            at=datetime.fromtimestamp((ended or {}).get(rcpt, now), UTC),
            direction=str(item.direction), queue_id=item.queue_id,
            recipient_domain=rcpt.rpartition("@")[2].lower(),
            relay=relays.get(rcpt, "none"), status=STATUS.get(o.fate, "bounced"),
            dsn=o.status, reply=clean_reply(o.reason), attempt=item.attempts + 1,
        )) for rcpt, o in outcomes.items()]
        # after the spool's record of the outcome (see record): a crash between the two
        # loses this attempt's step, never sends a copy again
        await run_in(self.db, self.journal.record_many, steps)

    async def expired(self, item: DeliverWork, rcpts: list[str], reason: str) -> None:
        """The lifetime of ``rcpts`` of ``item`` ran out: a ``bounced`` step each."""
        if self.journal is None:
            return
        at = datetime.fromtimestamp(self.clock(), UTC)
        tid = await self.trace_id(item)
        steps = [(tid, "bounced", step_record(
            at=at, direction=str(item.direction), queue_id=item.queue_id, kind="expired",
            fate="bounce", dsn="4.4.7", recipient_domain=rcpt.rpartition("@")[2].lower(),
            reply=clean_reply(reason))) for rcpt in rcpts]
        await run_in(self.db, self.journal.record_many, steps)

    async def about(self, item: DeliverWork) -> About | None:
        """The message of ``item`` as a notice about it names it (None for a notice: never
        a notice about a notice)."""
        if item.direction is Direction.NOTICE:
            return None
        return About(item.queue_id, await self.trace_id(item), str(item.direction))

    def log_attempt(self, item: DeliverWork, rcpt: str, outcome: Outcome, *,
                    relay: str | None, seconds: float) -> None:
        """One line per recipient and attempt, as Postfix writes it: who, where, how long
        since acceptance, what the peer said, and what becomes of the message."""
        status = STATUS.get(outcome.fate, "bounced")
        line = log.info if status == "sent" else log.warning
        delay = round(max(0.0, self.clock() - item.received_at), 3)
        line("delivery.attempt", queue_id=item.queue_id, direction=str(item.direction),
             recipient=rcpt, relay=relay or "none", status=status, dsn=outcome.status,
             reply=outcome.reason, delay_seconds=delay, seconds=round(seconds, 4),
             attempt=item.attempts + 1)

    async def record(self, item: DeliverWork, outcomes: dict[str, Outcome],
                     relays: dict[str, str], ended: dict[str, float]) -> None:
        """What the peers said about each recipient of ``item``, into the spool, then into
        its trace; the notices it calls for (MDN, delay notice, bounce) queued."""
        now = self.clock()
        delivered = [r for r, o in outcomes.items() if o.fate is None]
        bounced = [r for r, o in outcomes.items() if o.fate is Fate.BOUNCE]
        deferred = [r for r, o in outcomes.items() if o.fate is Fate.RETRY]
        if delivered:
            # first of all: from the peer's 250 to this commit, a crash leaves a copy in
            # doubt (sent again, flagged); nothing else may lengthen that window — on
            # PostgreSQL the journal's lock is shared with every other instance
            await run_in(self.db, self.spool.mark_delivered, item.output_id, delivered, now=now)
        await self.trace(item, outcomes, relays, ended)
        if delivered:
            log.info("message.delivered", queue_id=item.queue_id, count=len(delivered))
            if item.direction is Direction.TO_LEGACY:
                await self.notices.mdn(item.queue_id, item.mail_from, delivered,
                                       about=await self.about(item))
            direction = str(item.direction)
            for _ in delivered:
                self.metrics.count_message(
                    "delivered", direction, "in_doubt" if item.in_doubt else "ok"
                )
                self.metrics.observe_end_to_end(direction, max(0.0, now - item.received_at))
        failures: list[notices.Failure] = []
        for _ in bounced:
            self.metrics.count_message("bounced", str(item.direction), "peer_permanent")
        for _ in deferred:
            self.metrics.count_message("deferred", str(item.direction), "peer_temporary")
            self.metrics.count_retry(str(item.direction))
        if bounced:
            await run_in(
                self.db,
                self.spool.mark_bounced,
                item.output_id,
                bounced,
                now=now,
                reason="; ".join(outcomes[r].reason for r in bounced),
            )
            failures += [
                notices.Failure(r, "failed", outcomes[r].status, outcomes[r].reason)
                for r in bounced
            ]
        if deferred:
            reason = outcomes[deferred[0]].reason
            _, warn, expired = await run_in(
                self.db, self.spool.mark_deferred, item.output_id, deferred, now=now,
                reason=reason
            )
            if expired:
                await run_in(
                    self.db,
                    self.spool.mark_bounced,
                    item.output_id,
                    deferred,
                    now=now,
                    reason=f"lifetime over: {reason}",
                )
                failures += [
                    notices.Failure(r, "failed", "4.4.7", f"expired: {reason}") for r in deferred
                ]
                await self.expired(item, deferred, reason)
            elif warn:
                await self.notices.notify(
                    item.direction,
                    item.mail_from,
                    await self.notices.original(item.queue_id),
                    [
                        notices.Failure(r, "delayed", outcomes[r].status, outcomes[r].reason)
                        for r in deferred
                    ],
                    delayed=True,
                    about=await self.about(item),
                )
        if failures:
            original = await self.notices.original(item.queue_id)
            await self.notices.notify(item.direction, item.mail_from, original, failures,
                                      about=await self.about(item))
