"""The translation stage: messages in state ``received`` leased, translated, stored back.

Each of ``[workers] workers`` loops (:meth:`Translation.loop`) leases one message at a time
from the spool, has it translated off the event loop (:class:`~gateway.stages.workers.WorkerPool`:
a worker process, or a thread), then records the trace in the journal and the translation in
the spool in one trip (``received → translated``, per recipient group), and wakes delivery.

A translation that fails moves the message by the failure's fate
(:class:`~gateway.errors.Fate`): ``deferred`` to be tried again (transient), ``bounced`` with
a notice to the sender, or ``quarantined`` for an operator; transient for the whole retry
lifetime becomes quarantine.  Directory aliases that lead nowhere are bounced alone, the rest
of the message goes on.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import DaemonSettings
from gateway.errors import Fate, PasserelleError
from gateway.journal import Journal
from gateway.log import get_logger
from gateway.ops.metrics import Metrics
from gateway.spill import head, read_bytes
from gateway.spool import Direction, RetryPolicy, SqliteSpool, events
from gateway.spool.model import TranslateWork
from gateway.stages.common import HEAD_MAX, Clock, Inflight, run_in
from gateway.stages.notify import About, Notices
from gateway.stages.workers import WorkerPool, translate_stored, worker_translate_stored
from gateway.translate import notices
from gateway.translate.pipeline import Translator, stopped_trace
from gateway.translate.trace import TraceRecord
from gateway.vocabulary import CRYPTO_KINDS, STAGES
from gateway.wakeup import Wakeup

log = get_logger("passerelle.daemon")


class Translation:
    """Leases received messages, translates them in ``pool``, records the outcome."""

    def __init__(self, *, spool: SqliteSpool, journal: Journal, db: Executor, pool: WorkerPool,
                 translator: Translator, clock: Clock, policy: RetryPolicy, metrics: Metrics,
                 notices: Notices, settings: DaemonSettings, name: str, spill: Path,
                 wake_translate: Wakeup, wake_deliver: Wakeup, inflight: Inflight) -> None:
        self.spool = spool
        self.journal = journal
        self.db = db  # the spool's threads
        self.pool = pool
        self.translator = translator  # the one translating in threads (processes: their own)
        self.clock = clock
        self.policy = policy
        self.metrics = metrics
        self.notices = notices
        self.settings = settings
        self.name = name  # this instance, in the spool's leases
        self.spill = spill  # large messages travel to and from the workers as files here
        self.wake_translate = wake_translate
        self.wake_deliver = wake_deliver
        self.inflight = inflight
        self.stopping = False

    def stop(self) -> None:
        """The loops lease nothing more (a drain); what is in flight finishes."""
        self.stopping = True
        self.wake_translate.notify_all()

    async def loop(self, index: int) -> None:
        """Translation loop number ``index``: one message at a time, until stopped."""
        worker = f"{self.name}/t{index}"
        while not self.stopping:
            work = await run_in(  # the envelopes: the worker reads the message itself
                self.db,
                self.spool.lease_translate,
                worker,
                now=self.clock(),
                duration=self.settings.lease,
                limit=1,
                bodies=False,
            )
            if not work:
                await self.wake_translate.wait(self.settings.poll_interval)
                continue
            for item in work:
                await asyncio.shield(self.inflight.start(self.translate_one(item, worker)))

    async def translate_one(self, item: TranslateWork, owner: str) -> None:
        """One message leased by ``owner`` (``item``: its envelope) translated and its
        outcome recorded in the spool: by the worker that translates it when it succeeds
        (the message's bytes go from the spool to the worker and back, never through the
        daemon), here when it fails."""
        now = self.clock()
        try:
            if self.pool.processes:
                done = await self.pool.run(worker_translate_stored, item.queue_id, owner, now,
                                           str(self.spill))
            else:
                done = await self.pool.run(translate_stored, self.translator, self.spool,
                                           self.journal, item.queue_id, owner, now,
                                           str(self.spill))
        except BrokenProcessPool:  # a worker died (killed, out of memory): new workers
            log.error("translation.workers_lost", queue_id=item.queue_id)
            self.pool.renew()
            await self.failed(item, Fate.RETRY, "internal", "worker process lost")
            return
        except PasserelleError as exc:
            await self.failed(item, exc.fate, exc.kind, str(exc), trace=stopped_trace(exc),
                              unverified=exc.unverified)
            return
        except Exception as exc:  # a bug: keep the message, retry later
            log.error("translation.crashed", queue_id=item.queue_id, exc_info=exc)
            await self.failed(item, Fate.RETRY, "internal", type(exc).__name__)
            return
        if done is None:  # gone, or set aside as corrupt when the worker read it
            return
        if not done.stored:  # the lease ran out meanwhile: the one holding it now stores
            log.warning("translation.lease_lost", queue_id=item.queue_id)
            return
        about = About(item.queue_id, done.traces[0].message_id, str(item.direction))
        log.info("message.translated", queue_id=item.queue_id, direction=str(item.direction))
        self.metrics.count_message("translated", str(item.direction))
        for trace in done.traces:
            self._count(trace)
        if done.unresolved:  # directory aliases that lead nowhere: bounced, the rest goes on
            unresolved = done.unresolved
            log.info("translation.unresolved", queue_id=item.queue_id, count=len(unresolved))
            self.metrics.count_message("bounced", str(item.direction), "unknown_address")
            await run_in(
                self.db,
                self.spool.translate_failed,
                item.queue_id,
                fate="bounce",
                reason="unknown_address: " + "; ".join(dict.fromkeys(unresolved.values())),
                now=self.clock(),
            )
            await self.notices.notify(
                item.direction,
                item.mail_from,
                await run_in(self.db, self.spool.head, item.queue_id, HEAD_MAX),
                [notices.Failure(r, "failed", "5.1.1", why) for r, why in unresolved.items()],
                about=about,
            )
        self.wake_deliver.notify()

    def _count(self, trace: Any) -> None:
        """A translation's stage timings, repairs and legacy parts, from its trace."""
        for stage, seconds in trace.timings.items():
            if stage in STAGES:
                self.metrics.observe_stage(stage, seconds)
        for step in trace.steps:
            if step.stage == "repair":
                for kind, n in step.details.get("repairs", {}).items():
                    self.metrics.count_repair(kind, n)
            elif step.stage == "open":
                for tool in step.details.get("verification", {}).get("tools", []):
                    self.metrics.count_legacy_part("opened", str(tool))
                self.metrics.count_verifications(step.details.get("verification", {}))
            elif step.stage == "seal":
                for tool in step.details.get("tools", []):
                    self.metrics.count_legacy_part("sealed", str(tool))

    async def failed(self, item: TranslateWork, fate: Fate, kind: str, reason: str, *,
                     unverified: bool = False, trace: TraceRecord | None = None) -> None:
        """The translation of ``item`` failed with ``fate``: the message moves accordingly,
        with an MDN (error) and a bounce to its sender when it will not be delivered; the
        steps it went through (``trace``, when it got that far) are journaled with it.
        ``unverified``: it failed before its sender was verified; unless the legacy hub
        vouched for the sender (its authenticated session), the bounce then quotes nothing
        the message says (its Message-ID, date, recipients' names are anybody's words).
        ``item`` without its bytes (an envelope leased for a worker): read for it here."""
        if not item.data and not item.path:
            whole = await run_in(self.db, self.spool.translate_work, item.queue_id, self.spill)
            if whole is None:  # gone, or set aside as corrupt by this read
                return
            item = whole
        try:
            await self._failed(item, fate, kind, reason, unverified=unverified, trace=trace)
        finally:  # a large message came as a file: the spool still holds it
            if item.path:
                Path(item.path).unlink(missing_ok=True)

    async def _failed(self, item: TranslateWork, fate: Fate, kind: str, reason: str, *,
                      unverified: bool, trace: TraceRecord | None) -> None:
        if fate is Fate.RETRY and self.policy.covers(  # by the clock and by the schedule
                item.attempts + 1, self.clock() - item.received_at, self.policy.lifetime):
            # transient for the whole lifetime (a bug, a dependency down for days): an
            # operator looks at it rather than the sender waiting for ever
            fate, reason = Fate.QUARANTINE, f"retried for the whole lifetime: {reason}"
        log.info("translation.failed", queue_id=item.queue_id, fate=str(fate), kind=kind)
        event = {Fate.BOUNCE: "bounced", Fate.QUARANTINE: "quarantined"}.get(fate, "deferred")
        self.metrics.count_message(event, str(item.direction), kind)
        if kind in CRYPTO_KINDS:
            self.metrics.count_crypto_failure(kind)
        if fate is Fate.RETRY:
            self.metrics.count_retry(str(item.direction))
        about = None
        if fate is not Fate.RETRY:  # the message's trace says where it stopped, and why
            about = await run_in(self.db, self._journal_failure, item, fate, kind, trace)
        returned = None
        if item.direction is Direction.TO_LEGACY and fate is not Fate.RETRY:
            # an error MDN gives the original back (the agency's guide): read before the
            # spool lets it go
            returned = await run_in(self.db, _whole, item)
        await run_in(
            self.db,
            self.spool.translate_failed,
            item.queue_id,
            fate=str(fate),
            reason=f"{kind}: {reason}",
            now=self.clock(),
        )
        if item.direction is Direction.TO_LEGACY and fate is not Fate.RETRY:
            await self.notices.mdn(item.queue_id, item.mail_from, list(item.rcpts),
                                   error=notices.ERROR_OTHER, returned=returned, about=about)
        if fate is Fate.BOUNCE:
            # an unknown address says which one (the RPPS); anything else only its kind
            said = reason if kind == "unknown_address" else kind
            failures = [notices.Failure(r, "failed", _status(kind), said) for r in item.rcpts]
            anonymous = unverified and not item.hub_auth
            await self.notices.notify(item.direction, item.mail_from,
                                      b"" if anonymous else _head(item), failures,
                                      anonymous=anonymous, queue_id=item.queue_id,
                                      received_at=item.received_at, about=about)

    def _journal_failure(self, item: TranslateWork, fate: Fate, kind: str,
                         trace: TraceRecord | None) -> About | None:
        """In the message's trace: the steps done before it stopped (at least where it
        began: ``received``, once), then ``quarantined`` (and its log line) or ``bounced``."""
        try:
            entry = self.spool.entry(item.queue_id)
        except PasserelleError:  # gone meanwhile (deleted by an operator): nothing to say
            return None
        tid = events.trace_of(entry)
        now = self.clock()
        if trace is None:  # stopped before its first step
            trace = TraceRecord(tid, str(item.direction))
            trace.add_digests("received", datetime.fromtimestamp(now, UTC), entry.digest,
                              entry.digest, size=entry.size, recipients=len(item.rcpts),
                              stamped=datetime.fromtimestamp(item.received_at, UTC))
        trace.message_id = tid  # (the same Message-ID read: under the spool's id whatever)
        self.journal.append_traces([trace], queue_id=item.queue_id)  # received only once
        if fate is Fate.QUARANTINE:
            events.quarantined(self.journal, entry, kind=kind, now=now,
                               recipients=len(item.rcpts))
        else:
            self.journal.record(tid, "bounced", at=datetime.fromtimestamp(now, UTC),
                                direction=str(item.direction), queue_id=item.queue_id,
                                kind=kind, fate=str(fate), dsn=_status(kind),
                                recipients=len(item.rcpts))
        return About(item.queue_id, tid, str(item.direction))


def _status(kind: str) -> str:
    """The DSN status of a translation bounced for ``kind``."""
    if kind == "unknown_address":
        return "5.1.1"
    if "sign" in kind or "crypt" in kind or "key" in kind:
        return "5.7.0"
    return "5.6.0"


def _head(item: TranslateWork) -> bytes:
    """What a notice quotes of a message: its header block (all of it, for a message held
    in memory)."""
    return head(Path(item.path), HEAD_MAX) if item.path else item.data


def _whole(item: TranslateWork) -> bytes | None:
    """The whole message of a work item (None when its spilled file is gone)."""
    if not item.path:
        return bytes(item.data)
    try:
        return read_bytes(Path(item.path))
    except OSError:
        return None
