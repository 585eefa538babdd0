"""The daemon: the stages wired together, with signals, reload, drain and the ops endpoint.

The work itself is done by the stages of :mod:`gateway.stages` (see docs/architecture.md):

* **intake** (:class:`~gateway.stages.intake.Intake`) — the listeners' arrivals stored in the
  spool; ``250`` only after the commit;
* **translation** (:class:`~gateway.stages.translation.Translation`) — received messages
  leased, translated in worker processes (:class:`~gateway.stages.workers.WorkerPool`) and
  stored per recipient group;
* **delivery** (:class:`~gateway.stages.dispatch.Dispatch`) — translated messages sent over
  SMTP, each recipient ending ``delivered``, ``deferred`` (backoff), ``bounced`` or left to
  an operator;
* **notices** (:class:`~gateway.stages.notify.Notices`) — bounces, delay notices and MDNs to
  senders, in their own network and format.

:class:`Gateway` builds them, starts their loops (each restarted when it fails), and owns
what concerns them all: SIGTERM drains (listeners stop accepting, work in flight finishes,
the rest stays in the spool for the next start), SIGHUP reloads the address book, the list
of domains and the CRLs (read again too when a CRL file changes or its nextUpdate passes),
the ops endpoint (metrics, readiness) reports on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import signal
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import uvloop

from gateway.atrest import open_sealer
from gateway.config import Settings
from gateway.crypto.pki import client_tls_context
from gateway.crypto.smime import Smime
from gateway.directory.addresses import AddressBook
from gateway.errors import PasserelleError
from gateway.journal import Journal
from gateway.log import allow_words, get_logger
from gateway.ops import http as ops_http
from gateway.ops.console import Console, ConsoleData
from gateway.ops.metrics import Metrics
from gateway.smtp.delivery import Router
from gateway.smtp.server import Listener
from gateway.spool import RetryPolicy, SqliteSpool, open_journal, open_spool
from gateway.spool.retention import record_purges
from gateway.stages.common import Inflight, run_in
from gateway.stages.dispatch import Dispatch
from gateway.stages.intake import Domains, Intake, hub_anchors, listener_tls, listeners
from gateway.stages.notify import Notices
from gateway.stages.translation import Translation
from gateway.stages.workers import (
    WorkerPool,
    configure_daemon_logging,
    thrifty_malloc,
    worker_seal,
)
from gateway.translate.factory import (
    build_translator,
    directory_resolver,
    domain_list_store,
    trust_anchors,
)
from gateway.translate.pipeline import Translator
from gateway.wakeup import Wakeup

log = get_logger("passerelle.daemon")
allow_words("addresses", "domain_list", "sighup", "changed", "next_update", "forward",
            "backward", "rollback")
allow_words("content", "metadata", "keys")  # what a purge took; a keyring not reloaded
# aiosmtpd warns about every context that demands client certificates: that is our design.
logging.getLogger("mail.log").setLevel(logging.ERROR)


class Gateway:
    """One instance of the gateway: its stages, their loops, and the ops endpoint."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        d = settings.daemon
        t = settings.trust
        self.policy = RetryPolicy(
            d.retry_initial, d.retry_factor, d.retry_max, d.delay_warning_after, d.lifetime
        )
        # messages sealed at rest with the keyring's current key; a key the spool's records
        # need and the keyring lacks (or a wrong one) stops the start here (exit 78)
        self.sealer = open_sealer(settings.keys_file)
        self.spool: SqliteSpool = open_spool(settings.journal_url, policy=self.policy,
                                             sealer=self.sealer)
        self.spool.check_keys()
        self.journal: Journal = open_journal(settings.journal_url)
        self.translator: Translator = build_translator(settings)
        self.anchors = trust_anchors(settings)
        self.hub_anchors = hub_anchors(settings)
        # CRLs: read again on SIGHUP, when a file changes, and when one's nextUpdate passes
        self.crl_check_interval = 30.0
        self._crl_files = self._crl_files_state()
        self._crl_reread_at: datetime | None = None  # the nextUpdate already re-read for
        self._crl_expired: list[tuple[str, datetime]] = []
        self._crl_labels: set[str] = set()
        # the wall clock compared with the monotonic one every second: a step larger than
        # this moves the spool's waits with it (see _clock_loop)
        self.clock_step = 5.0
        self.domains = Domains(domain_list_store(settings))
        self.router = Router(dict(d.routes), mx_lookup=d.mx_lookup)
        self.name = f"{d.hostname}-{uuid.uuid4().hex[:8]}"
        # large messages on their way to a worker or a peer, as files: the state directory
        # is this instance's own, and whatever a crash left here is still in the spool
        self.spill = settings.state_dir / "spill"
        legacy_client_tls = ssl.create_default_context()
        legacy_client_tls.check_hostname = False
        legacy_client_tls.verify_mode = ssl.CERT_NONE  # content is end-to-end sealed
        legacy_client_tls.minimum_version = ssl.TLSVersion.TLSv1_2
        # Spool and journal writes are short: they get their own threads, so that recording a
        # delivery never queues behind a gpg call (the shorter the window between the peer's
        # 250 and our commit, the fewer duplicates after a crash).
        self._db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool")
        self.pool = WorkerPool(settings, self.translator.book, self.anchors)
        self.wake_translate = Wakeup(d.workers)
        self.wake_deliver = Wakeup(1)
        self.metrics = Metrics()
        inflight = self.inflight = Inflight()
        shared: dict[str, Any] = {"spool": self.spool, "db": self._db, "clock": clock,
                                  "metrics": self.metrics}
        self.notices = Notices(**shared, book=self.book, seal=self._seal, hostname=d.hostname,
                               gateway_domain=settings.domain, wake_deliver=self.wake_deliver,
                               journal=self.journal)
        self.intake = Intake(**shared, book=self.book, notices=self.notices,
                             hostname=d.hostname, wake_translate=self.wake_translate,
                             wake_deliver=self.wake_deliver,
                             hub_required=settings.hub.configured)
        self.translation = Translation(
            **shared, journal=self.journal, pool=self.pool, translator=self.translator,
            policy=self.policy, notices=self.notices, settings=d, name=self.name,
            spill=self.spill, wake_translate=self.wake_translate,
            wake_deliver=self.wake_deliver, inflight=inflight)
        self.dispatch = Dispatch(
            **shared, book=self.book, notices=self.notices, settings=d, name=self.name,
            spill=self.spill, router=self.router,
            trust_tls=client_tls_context(t.client_cert, t.client_key, anchors=self.anchors,
                                         ciphers=t.ciphers),
            legacy_tls=legacy_client_tls, wake_deliver=self.wake_deliver, inflight=inflight,
            journal=self.journal)
        self._stopping = False
        self._reseal = asyncio.Event()  # set: records not under the current key sealed again
        self._reseal.set()
        self._tasks: list[asyncio.Task[None]] = []
        self.listeners: list[Listener] = []
        readiness = ops_http.Readiness()
        readiness.add("spool", ops_http.spool_writable(self.spool.ping))
        readiness.add("domain_list", ops_http.domain_list_fresh(self._list_age))
        readiness.add("crl", self._crl_readiness)
        readiness.add("keys", ops_http.keys_loaded(lambda: self.translator is not None))
        readiness.add("peers", ops_http.peers_reachable(lambda: self.dispatch.peer_status))
        self.ops = ops_http.OpsServer(
            self.metrics.registry, readiness, host=d.ops_listen[0], port=d.ops_listen[1]
        )
        self.console: Console | None = None
        if settings.console.enabled:  # the operator console, on its own TLS listener
            self.console = Console(settings.console, ConsoleData(
                spool=self.spool, journal=self.journal, clock=clock,
                domain_list=self.domains.current, directory=settings.directory_target,
                wake=self.wake_translate.notify_all,
                run=functools.partial(run_in, self._db)))

    # -- wiring --------------------------------------------------------------------------

    def book(self) -> AddressBook:
        """The address book in force (SIGHUP replaces it under the running stages)."""
        return self.translator.book

    async def _seal(self, letter: bytes, recipient: str) -> tuple[bytes, Sequence[str]]:
        """A notice to a legacy user sealed for their key, in the translation workers: in a
        worker process by its own translator's legacy crypto (an in-process adapter such as
        rnp holds a C library, which cannot be sent to it), in a thread by the daemon's as
        it is now (a test may replace it)."""
        if self.pool.processes:
            return await self.pool.run(worker_seal, letter, recipient)
        return await self.pool.run(self.translator.legacy.seal_traced, letter,
                                   recipient=recipient)

    def reload(self) -> None:
        """SIGHUP: the address book, the directory, the list of domains and the CRLs are
        read again.  Each is checked before it replaces the one in use: a broken file leaves
        the previous state in the daemon and in its workers (which are given the address
        book the daemon accepted, never the file), and the failure is logged with what
        failed."""
        failed = []
        crl_failure = self.reload_crls(why="sighup", renew=False)  # the workers: below
        if crl_failure is not None:
            failed.append(("crl", crl_failure))
        try:
            book = AddressBook.load(self.settings.addresses)
        except PasserelleError as exc:
            failed.append(("addresses", exc.kind))
            if self.pool.processes and crl_failure is None:  # the new CRLs at least
                self.pool.renew()
        else:
            self.translator.book = book
            self.translator.directory = directory_resolver(self.settings)  # a new import
            if self.pool.processes:  # the workers are given it (and reopen the directory)
                self.pool.renew(book)
        if self.domains.store is not None:
            try:
                self.domains.store.reload()  # refused: the list in force stays
            except PasserelleError as exc:
                failed.append(("domain_list", exc.kind))
        if self.sealer is not None:  # a rotated keyring: new records under its current key
            try:
                sealer = open_sealer(self.settings.keys_file)
                if sealer is not None:  # (a keyring gone is not a reason to store in clear)
                    self.sealer = self.spool.sealer = sealer
                    self._reseal.set()
            except PasserelleError as exc:
                failed.append(("keys", exc.kind))
        for what, kind in failed:
            log.error("config.reload_failed", stage=what, kind=kind)
        if not failed:
            log.info("config.reloaded", outcome="ok")
        self._static_metrics()

    # -- CRLs ------------------------------------------------------------------------------

    def _crl_files_state(self) -> tuple[object, ...]:
        hub = self.hub_anchors.files_state() if self.hub_anchors is not None else ()
        return (self.anchors.files_state(), hub)

    def reload_crls(self, *, why: str, renew: bool = True) -> str | None:
        """Read the anchors and CRLs again and give the listeners TLS contexts built from
        them: the sessions opened from now on are judged by the new CRLs (those already
        open keep theirs).  A file that cannot be read, or a context that cannot be built,
        leaves everything as it was: one log line, and the error's kind returned."""
        self._crl_files = self._crl_files_state()  # tried: again when a file changes again
        try:
            anchors = self.anchors.reloaded()
            hub = hub_anchors(self.settings)
            contexts = listener_tls(self.settings, anchors, hub) if self.listeners else ()
        except PasserelleError as exc:
            log.error("crl.reload_failed", reason=why, kind=exc.kind)
            return exc.kind
        except (OSError, ssl.SSLError) as exc:
            log.error("crl.reload_failed", reason=why, error_type=type(exc).__name__)
            return "config"
        older = anchors.older_crls(self.anchors)
        if hub is not None and self.hub_anchors is not None:
            older += hub.older_crls(self.hub_anchors)
        if older:  # a CRL put back would let certificates revoked since in again
            log.error("crl.reload_failed", reason=why, kind="rollback", count=len(older))
            return "config"
        self.anchors, self.hub_anchors = anchors, hub
        for listener, context in zip(self.listeners, contexts, strict=True):
            listener.tls = context
        # S/MIME chains (ours when signing, a sender's when verifying) by the new CRLs too:
        # here, and in worker processes started afresh (each reads the files itself)
        smime = self.translator.smime
        if isinstance(smime, Smime):
            self.translator.smime = smime.with_anchors(anchors)
        self.pool.anchors = anchors  # the next workers are given these
        if renew and self.pool.processes:
            self.pool.renew()
        log.info("crl.reloaded", reason=why, count=len(anchors.crls))
        self._static_metrics()
        self._judge_crls()
        return None

    def _judge_crls(self) -> None:
        """Which CRLs in force are past their nextUpdate: the metric, the readiness check,
        and one log line when that changes (never one per handshake refused)."""
        at = datetime.fromtimestamp(self.clock(), UTC)
        expired = self.anchors.expired_crls(at)
        if self.hub_anchors is not None and self.hub_anchors.crl_paths != self.anchors.crl_paths:
            expired += self.hub_anchors.expired_crls(at)
        self.metrics.set_crl_expired(len(expired))
        if expired and not self._crl_expired:
            log.error("crl.expired", count=len(expired), outcome="not_ready",
                      seconds=round((at - min(t for _, t in expired)).total_seconds()))
        elif self._crl_expired and not expired:
            log.info("crl.current", outcome="ready")
        self._crl_expired = expired

    def _crl_readiness(self) -> str | None:
        if not self._crl_expired:
            return None
        return "; ".join(
            f"CRL of {issuer!r} expired at {until:%Y-%m-%dT%H:%M:%SZ} (nextUpdate past): "
            "client certificates of that issuer are refused until a new CRL is installed"
            for issuer, until in self._crl_expired)

    async def _crl_loop(self) -> None:
        """Re-read the CRLs when a file changes (a new CRL copied in place) or when the
        earliest nextUpdate passes (the CA's refresh job may have written the same path)."""
        last = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(min(1.0, self.crl_check_interval))
            if time.monotonic() - last < self.crl_check_interval:
                continue
            last = time.monotonic()
            due = self.anchors.next_crl_update()
            at = datetime.fromtimestamp(self.clock(), UTC)
            if self._crl_files_state() != self._crl_files:
                self.reload_crls(why="changed")
            elif due is not None and due < at and self._crl_reread_at != due:
                self._crl_reread_at = due
                self.reload_crls(why="next_update")
            self._judge_crls()

    # -- the wall clock ----------------------------------------------------------------------

    def _horizon(self) -> float:
        """How far ahead of now any time the spool waits for can be: the longest backoff
        or lease, and a margin."""
        d = self.settings.daemon
        return max(self.policy.maximum, d.lease, d.delivery_timeout * 2) + 60.0

    async def _clock_loop(self) -> None:
        """Retry scheduling on a monotonic basis: the wall clock is read against the
        monotonic clock every second, and a step (NTP setting a wrong clock right, an
        operator's date command, a VM resumed) moves the spool's waits with it — a clock
        set back a day does not stall mail for a day.  The lifetime is judged by the retry
        schedule as well as by the clock (``RetryPolicy.covers``): a clock set forward a
        day does not bounce fresh mail."""
        wall, mono = self.clock(), time.monotonic()
        while not self._stopping:
            await asyncio.sleep(1.0)
            now, now_mono = self.clock(), time.monotonic()
            step = (now - wall) - (now_mono - mono)
            if abs(step) >= self.clock_step:
                moved = await run_in(self._db, self.spool.clock_stepped, since=wall,
                                     step=step, horizon=self._horizon())
                log.warning("clock.jump", seconds=round(step, 1), count=moved,
                            direction="backward" if step < 0 else "forward")
                self.wake_translate.notify_all()
                self.wake_deliver.notify_all()
            wall, mono = now, now_mono

    def _list_age(self) -> float | None:
        listing = self.domains.current()
        if not listing.entries:
            return None
        return max(0.0, self.clock() - listing.generated_at.timestamp())

    def _static_metrics(self) -> None:
        """Expiry of every certificate in use, age of the list and of the CRLs."""
        from cryptography.hazmat.primitives import hashes

        from gateway.crypto.x509util import load_certificate

        t = self.settings.trust
        for role, path in (
            ("server", t.server_cert),
            ("client", t.client_cert),
            ("signing", t.signing_cert),
        ):
            if path is not None:
                self.metrics.set_expiry_at(
                    "certificate", role, load_certificate(path).not_valid_after_utc
                )
        for cert in self.anchors.certificates:
            label = "anchor:" + cert.fingerprint(hashes.SHA1()).hex()[:12]
            self.metrics.set_expiry_at("certificate", label, cert.not_valid_after_utc)
        labels = set()
        for crl in self.anchors.crls:
            label = "crl:" + crl.fingerprint(hashes.SHA1()).hex()[:12]
            labels.add(label)
            self.metrics.set_crl_timestamp(label, crl.last_update_utc)
            if crl.next_update_utc is not None:
                self.metrics.set_expiry_at("crl", label, crl.next_update_utc)
        for gone in self._crl_labels - labels:  # replaced by a newer CRL
            self.metrics.drop_crl(gone)
        self._crl_labels = labels
        listing = self.domains.current()
        if listing.entries:
            self.metrics.set_list_timestamp(listing.generated_at, len(listing.entries))

    async def _gauges_loop(self) -> None:
        said = False  # the spool lost: said once
        while not self._stopping:
            problem = await run_in(self._db, self.spool.identity_problem)
            if problem is not None and not said:
                said = True
                log.error("spool.identity_lost", outcome="not_ready",
                          backend="postgresql" if hasattr(self.spool, "url") else "sqlite")
            counts = await run_in(self._db, self.spool.counts)
            self.metrics.set_spool_depth(counts)
            self.metrics.set_oldest_age(
                await run_in(self._db, self.spool.oldest_age, self.clock())
            )
            entries, size = await run_in(self._db, self.journal.size)
            self.metrics.set_journal_size(entries, size)
            await asyncio.sleep(min(5.0, self.settings.daemon.poll_interval * 5))

    async def start(self, *, ops: bool = True) -> None:
        shutil.rmtree(self.spill, ignore_errors=True)
        self.spill.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.spool.recover(now=self.clock())
        self.spool.unstall(now=self.clock(), horizon=self._horizon())  # set back while down
        self._static_metrics()
        self._judge_crls()
        if ops:
            await self.ops.start()
            if self.console is not None:
                await self.console.start()
        directory = self.translator.directory
        self.listeners = listeners(
            self.settings, self.intake, domains=self.domains, anchors=self.anchors,
            directory_alias=directory.is_alias if directory is not None else None,
            spill=self.spill)
        self.pool.warm()
        for listener in self.listeners:
            await listener.start()
        for i in range(self.settings.daemon.workers):
            self._tasks.append(asyncio.create_task(self._forever(self.translation.loop, i)))
        self._tasks.append(asyncio.create_task(self._forever(self.dispatch.loop)))
        self._tasks.append(asyncio.create_task(self._forever(self._gauges_loop)))
        self._tasks.append(asyncio.create_task(self._forever(self._crl_loop)))
        self._tasks.append(asyncio.create_task(self._forever(self._clock_loop)))
        self._tasks.append(asyncio.create_task(self._forever(self._retention_loop)))

    async def _retention_loop(self) -> None:
        """Records not under the keyring's current key (in clear from before, or an older
        key after a rotation) sealed again, a batch at a time; then, every ``[retention]
        interval``, what retention no longer keeps purged and recorded in the trace."""
        while not self._stopping:
            if self._reseal.is_set() and self.sealer is not None:
                self._reseal.clear()
                done, failed = await run_in(self._db, self.spool.reseal)
                if done:
                    log.info("spool.resealed", count=done)
                if failed:
                    log.warning("spool.reseal_failed", count=failed)
            now = self.clock()
            purged = await run_in(self._db, functools.partial(
                self.spool.purge, self.settings.retention, now=now))
            if purged:
                await run_in(self._db, functools.partial(record_purges, self.journal, purged,
                                                         now=now))
                for what in ("content", "metadata"):
                    n = sum(1 for p in purged if p.what == what)
                    if n:
                        log.info("spool.purged", kind=what, count=n)
            with contextlib.suppress(TimeoutError):  # a reload (rotated keys) wakes it
                await asyncio.wait_for(self._reseal.wait(), self.settings.retention.interval)

    async def _forever(self, loop: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a worker loop again when it fails (the spool's database unreachable, its disk
        full, a bug): otherwise the listeners would go on accepting mail nobody handles."""
        while not self._stopping:
            try:
                await loop(*args)
            except PasserelleError as exc:
                log.error("worker.failed", kind=exc.kind, outcome="restarted")
            except Exception as exc:
                log.error("worker.failed", kind="internal", outcome="restarted", exc_info=exc)
            if not self._stopping:
                await asyncio.sleep(1.0)

    async def drain(self, grace: float = 30.0) -> None:
        """Stop accepting, let work in flight finish, leave the rest in the spool."""
        self._stopping = True
        for listener in self.listeners:
            await listener.stop_accepting()
        for listener in self.listeners:  # 421 4.3.2 to sessions in progress
            await listener.close_sessions()
        self.translation.stop()
        self.dispatch.stop()
        await self.inflight.wait(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.dispatch.close()
        await self.ops.stop()
        if self.console is not None:
            await self.console.stop()
        self.pool.shutdown()
        self._db.shutdown(wait=True)


def run(main: Awaitable[int]) -> int:
    """``main`` run to its end on an event loop of uvloop (libuv): the daemon's loop, its
    SMTP sessions, TLS and executors' callbacks cost a third less CPU than on asyncio's own
    loop (bench/README.md)."""
    async def whole() -> int:
        return await main

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(whole())


async def serve(settings: Settings, *, ready: Callable[[Gateway], None] | None = None) -> int:
    """`passerelle serve`: run until SIGTERM/SIGINT (drain) — SIGHUP reloads."""
    configure_daemon_logging(settings)
    thrifty_malloc()
    gateway = Gateway(settings)
    await gateway.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    ports = ", ".join(f"{lis.host}:{lis.port}" for lis in gateway.listeners)
    print(f"passerelle: serving on {ports}; ops on {gateway.ops.url}", flush=True)
    if ready is not None:
        ready(gateway)
    await stop.wait()
    print("passerelle: draining", flush=True)
    await gateway.drain()
    return 0
