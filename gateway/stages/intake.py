"""The intake stage: what the two SMTP listeners hand over, stored in the spool.

The listeners (:mod:`gateway.smtp.server`) check the envelope and call :meth:`Intake.accept`
with an :class:`~gateway.smtp.server.Arrival`; their ``250`` is sent only once it returns, that
is once message and envelope are committed to the spool (state ``received``).  A message with
a null sender from the legacy hub is a delivery status notification about a message we
delivered there: it is not translated but passed back to the trust-space sender as a DSN
(:meth:`Intake.hub_notice`).

:func:`listeners` builds the two listeners around an intake; :class:`Domains` is the list of
domains as they see it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.crypto.domainlist import DomainList, DomainListStore
from gateway.crypto.pki import TrustAnchors, server_tls_context
from gateway.errors import (
    ConfigError,
    PasserelleError,
    RelayDenied,
    TrustListError,
    UnmatchedReport,
)
from gateway.log import get_logger
from gateway.ops.metrics import Metrics
from gateway.smtp.server import Arrival, HubGate, LegacyHandler, Limits, Listener, TrustHandler
from gateway.spill import head, read_bytes
from gateway.spill import size as data_size
from gateway.spool import Direction, SqliteSpool, State
from gateway.stages.common import HEAD_MAX, Book, Clock, message_id_of, run_in
from gateway.stages.notify import About, Notices
from gateway.translate import notices
from gateway.wakeup import Wakeup

log = get_logger("passerelle.daemon")


class Domains:
    """The list of domains as the listeners see it (reloadable, fail-closed: a list that
    cannot be read lists nothing, and is as old as can be)."""

    def __init__(self, store: DomainListStore | None) -> None:
        self.store = store

    def current(self) -> DomainList:
        if self.store is None:
            return DomainList(generated_at=datetime.now(UTC))
        try:
            return self.store.current()
        except TrustListError:
            log.error("domain_list.unreadable", outcome="refused")
            return DomainList(generated_at=datetime(1970, 1, 1, tzinfo=UTC))


Accepted = tuple[Direction, str, tuple[str, ...], Any, str, str, State, str]  # accept_many's


class GroupCommit:
    """Arrivals stored together: while one transaction is being committed (its fsync), the
    messages that arrive wait and go into the next one, all of them — one commit and one
    fsync for as many messages as came meanwhile, and none waits for more than the commit
    in progress and its own.  Each waiter learns of its own message only once the commit
    that holds it is durable (the listener's ``250`` comes after that, never before).  A
    commit of several that fails is tried again one message at a time, so that one
    message's failure is its own."""

    def __init__(self, spool: SqliteSpool, db: Executor, clock: Clock) -> None:
        self.spool = spool
        self.db = db
        self.clock = clock
        self._pending: list[tuple[Accepted, asyncio.Future[tuple[str, bool]]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed (the tests and the benchmark read it)

    async def accept(self, item: Accepted) -> tuple[str, bool]:
        """Store ``item`` durably with whatever arrives meanwhile: (queue id, duplicate?)."""
        future: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all())
        return await future

    async def _commit_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await run_in(self.db, self.spool.accept_many,
                                       [item for item, _ in batch], now=self.clock())
                self.commits += 1
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                for item, future in batch:  # one at a time: each its own outcome
                    try:
                        alone = await run_in(self.db, self.spool.accept_many, [item],
                                             now=self.clock())
                        self.commits += 1
                    except Exception as one:
                        _settle(future, one)
                    else:
                        _settle(future, alone[0])
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)


def _settle(future: asyncio.Future[tuple[str, bool]], outcome: tuple[str, bool] | Exception
            ) -> None:
    """A waiter told its outcome (unless it went away: its session was closed)."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Intake:
    """Arrivals into the spool; the translation stage is woken for each."""

    def __init__(self, *, spool: SqliteSpool, db: Executor, clock: Clock, book: Book,
                 metrics: Metrics, notices: Notices, hostname: str,
                 wake_translate: Wakeup, wake_deliver: Wakeup,
                 hub_required: bool = False) -> None:
        self.spool = spool
        self.db = db  # the spool's threads
        self.clock = clock
        self.book = book
        self.metrics = metrics
        self.notices = notices
        self.hostname = hostname  # the reporting MTA of the DSNs passed back
        self.wake_translate = wake_translate
        self.wake_deliver = wake_deliver  # the hub's DSNs passed back are ready to send
        # [legacy.hub] configured: a report is believed only from the hub's own session
        self.hub_required = hub_required
        self.commits = GroupCommit(spool, db, clock)  # arrivals meanwhile share one fsync

    async def accept(self, arrival: Arrival) -> str:
        """Store ``arrival`` durably (state ``received``): its queue id, for the ``250``.
        The same message from the same peer twice is stored once."""
        started = time.monotonic()
        if arrival.side == "legacy" and not arrival.mail_from:
            return await self.hub_notice(arrival)
        direction = Direction.TO_TRUST if arrival.side == "legacy" else Direction.TO_LEGACY
        queue_id, duplicate = await self.commits.accept((
            direction, arrival.mail_from, tuple(arrival.rcpt_tos), arrival.data,
            message_id_of(head(arrival.data, HEAD_MAX)), arrival.peer, State.RECEIVED,
            arrival.hub_auth))
        log.info(
            "message.accepted",
            queue_id=queue_id,
            direction=str(direction),
            size=data_size(arrival.data),
            outcome="duplicate" if duplicate else "stored",
            peer=arrival.peer,
        )
        self.metrics.count_message("received", str(direction), "duplicate" if duplicate else "ok")
        self.metrics.observe_stage("accept", time.monotonic() - started)
        self.wake_translate.notify()
        return queue_id

    async def hub_notice(self, arrival: Arrival) -> str:
        """A delivery status notification from the legacy hub about a message we delivered
        there: passed back to the trust-space sender as an RFC 3464 DSN naming the
        addresses they wrote to.  Anything else with a null sender is refused."""
        if self.hub_required and not arrival.hub_auth:
            # anybody may reach the legacy listener: a report that would tell a trust-space
            # sender their delivered message failed is taken only from the hub itself
            raise RelayDenied("delivery reports are accepted only over the legacy hub's "
                              "authenticated session")
        data = arrival.data
        parsed = notices.read_dsn(read_bytes(data) if isinstance(data, Path) else bytes(data))
        if parsed is None:
            raise RelayDenied("with a null sender this gateway accepts only delivery status "
                              "notifications")
        message_id, failures = parsed
        carried: dict[str, str] = {}  # trust-space sender -> the queue id of their message
        for rcpt in arrival.rcpt_tos:
            queue_id = await run_in(self.db, self.spool.carried_to_legacy, message_id, rcpt) \
                if message_id else None
            if queue_id is None:
                raise RelayDenied("this notification does not report on a message carried by "
                                  "this gateway from that sender")
            carried[rcpt] = queue_id
        book = self.book()
        shown = []
        for f in failures:
            try:  # the legacy address the hub names becomes the alias the sender wrote to
                alias = book.by_legacy(f.recipient).trust_address
            except PasserelleError:
                alias = f.recipient
            shown.append(notices.Failure(alias, f.action, f.status, f.diagnostic))
        # each recipient it reports on must be one we handed that message to: a report on
        # someone else (or on nobody) would tell the sender of a failure that never was
        for rcpt in arrival.rcpt_tos:
            for f in shown if shown else [notices.Failure("", "", "", "")]:
                if not f.recipient or not await run_in(
                        self.db, self.spool.handed_to_legacy, message_id, rcpt, f.recipient):
                    log.warning("hub_notice.unmatched", reason="report_unmatched",
                                peer=arrival.peer or None, count=len(shown))
                    raise UnmatchedReport("this report names a recipient this gateway did "
                                          "not hand that message to")
        now = datetime.fromtimestamp(self.clock(), UTC)
        queue_ids = []
        for rcpt in arrival.rcpt_tos:
            dsn = notices.build_dsn(
                f"Message-ID: {message_id}\r\n\r\n".encode(),
                sender=rcpt,
                failures=shown,
                reporting_mta=self.hostname,
                now=now,
            )
            queue_ids.append(await self.notices.queue(rcpt, dsn, peer=arrival.peer))
            # the hub's report, passed back, and the message it reports on: linked
            await self.notices.link(About(carried[rcpt], message_id, str(Direction.TO_LEGACY)),
                                    queue_ids[-1], dsn, "hub_dsn")
        log.info("hub_notice.accepted", queue_id=queue_ids[0], count=len(shown))
        self.wake_deliver.notify()
        return queue_ids[0]


def hub_anchors(settings: Settings) -> TrustAnchors | None:
    """The anchors and CRLs the legacy hub's client certificate is verified against
    (``[legacy.hub]``), None when the hub does not prove itself by certificate."""
    hub = settings.hub
    return TrustAnchors.load(hub.anchors, hub.crls) if hub.certificate else None


def listener_tls(settings: Settings, anchors: TrustAnchors, hub: TrustAnchors | None
                 ) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server contexts of the legacy and the trust listener, built from the anchors and
    CRLs as they are now (built again when a CRL is reloaded: a context holds the CRLs it
    was given)."""
    t = settings.trust
    if t.server_cert is None or t.server_key is None:
        raise ConfigError("trust.server_cert and trust.server_key are required to serve")
    legacy_tls = server_tls_context(
        t.server_cert, t.server_key, require_client_cert=False, ciphers=t.ciphers,
        anchors=hub, request_client_cert=hub is not None,
    )
    trust_tls = server_tls_context(
        t.server_cert, t.server_key, anchors=anchors, require_client_cert=True,
        ciphers=t.ciphers,
    )
    return legacy_tls, trust_tls


def listeners(settings: Settings, intake: Intake, *, domains: Domains, anchors: TrustAnchors,
              directory_alias: Callable[[str], bool] | None, spill: Path) -> list[Listener]:
    """The legacy listener (STARTTLS offered) and the trust listener (STARTTLS and a client
    certificate verified against ``anchors`` required), both handing arrivals to ``intake``;
    large messages are received into files of ``spill``."""
    d = settings.daemon
    limits = Limits(d.max_message_size, d.max_recipients, timeout=d.idle_timeout,
                    max_connections=d.max_connections,
                    max_connections_per_client=d.max_connections_per_client)
    common: dict[str, Any] = {
        "book": intake.book,
        "domains": domains.current,
        "accept": intake.accept,
        "limits": limits,
        "gateway_domain": settings.domain,
        "directory_alias": directory_alias,
        "metrics": intake.metrics,
    }
    hub = settings.hub  # the legacy hub may prove itself: [legacy.hub]
    legacy_tls, trust_tls = listener_tls(settings, anchors, hub_anchors(settings))
    return [
        Listener(LegacyHandler(**common, hub=HubGate.load(
                     subject=hub.client_subject, fingerprint=hub.client_fingerprint,
                     auth_file=hub.auth_file)), host=d.legacy_listen[0], port=d.legacy_listen[1],
                 tls=legacy_tls, require_starttls=False, hostname=d.hostname, limits=limits,
                 spill=spill),
        Listener(TrustHandler(**common), host=d.trust_listen[0], port=d.trust_listen[1],
                 tls=trust_tls, require_starttls=True, hostname=d.hostname, limits=limits,
                 spill=spill),
    ]
