"""The daemon: listeners, spool, translation workers, delivery, notices, ops; graceful drain.

Flow: a listener checks the envelope and stores message + envelope in the spool (``250``
only after the commit) → a translation worker leases it, translates it off the event loop and
stores the result per recipient group → a delivery task leases it and sends it over SMTP →
each recipient ends ``delivered``, ``deferred`` (backoff), ``bounced`` (a notice goes to the
sender in their own network and format) or ``quarantined`` (an operator looks).

SIGTERM drains: listeners stop accepting, work in flight finishes, the rest stays in the
spool for the next start.  SIGHUP reloads the address book and the list of domains.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import email.utils
import functools
import logging
import multiprocessing
import os
import re
import shutil
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import Settings
from gateway.crypto.domainlist import DomainList, DomainListStore
from gateway.crypto.pki import client_tls_context, server_tls_context
from gateway.errors import Fate, PasserelleError, RelayDenied, TrustListError
from gateway.journal import Journal, open_journal
from gateway.ops import http as ops_http
from gateway.ops.logging import configure as configure_logging
from gateway.ops.logging import get_logger
from gateway.ops.metrics import CRYPTO_KINDS, STAGES, Metrics
from gateway.smtp import notices
from gateway.smtp.delivery import (
    NO_ROUTE,
    DestinationLimiter,
    FileMessage,
    Outcome,
    Router,
    SessionCache,
    deliver,
)
from gateway.smtp.server import (
    Arrival,
    LegacyHandler,
    Limits,
    Listener,
    TrustHandler,
)
from gateway.spill import LARGE, create, head, new_path
from gateway.spill import size as data_size
from gateway.spool import Direction, RetryPolicy, SqliteSpool, State, open_spool
from gateway.spool.model import DeliverWork, TranslateWork
from gateway.translate.addresses import AddressBook, domain_of
from gateway.translate.factory import build_translator, domain_list_store, trust_anchors
from gateway.translate.handover import Handover
from gateway.translate.pipeline import Envelope, Translator
from gateway.wakeup import Wakeup

log = get_logger("passerelle.daemon")
T = TypeVar("T")
# aiosmtpd warns about every context that demands client certificates: that is our design.
logging.getLogger("mail.log").setLevel(logging.ERROR)
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3  # mallopt(3)
_HEAD_MAX = 256 * 1024  # a header block longer than this is not read for its Message-ID
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class TranslatedGroup:
    """Translated bytes for some recipients of a message."""

    rcpts: tuple[str, ...]
    data: bytes
    trace: Any
    routes: dict[str, str] = field(default_factory=dict)  # directory alias -> mailbox
    unresolved: dict[str, str] = field(default_factory=dict)  # directory alias -> why
    path: str = ""  # large translated bytes are in this file, ``data`` empty


def translate(translator: Translator, item: TranslateWork, now_ts: float
              ) -> list[TranslatedGroup]:
    """One queued message translated: groups of recipients with their bytes and trace."""
    now = datetime.fromtimestamp(now_ts, UTC)
    envelope = Envelope(item.mail_from, item.rcpts)
    if item.direction is Direction.TO_TRUST:
        # a message in a file is read from it in slices, never whole (see Handover)
        t = translator.to_trust(Handover.of_file(Path(item.path)) if item.path else item.data,
                                envelope, now=now)
        return [TranslatedGroup(t.recipients, t.message, t.trace, t.routes, t.unresolved)]
    data = Path(item.path).read_bytes() if item.path else item.data
    out: list[TranslatedGroup] = []
    for rcpt in item.rcpts:
        results = translator.to_legacy(data, Envelope(item.mail_from, (rcpt,)), now=now)
        out.append(TranslatedGroup((rcpt,), results[0].message, results[0].trace))
    return out


_WORKER: Translator | None = None  # in a translation worker process


def _worker_init(settings: Settings, daemon_pid: int) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watch_parent(daemon_pid)
    configure_daemon_logging(settings)  # to the daemon's stream (inherited), redacted alike
    thrifty_malloc()
    _WORKER = build_translator(settings)


def configure_daemon_logging(settings: Settings) -> None:
    """JSON lines on stdout at ``[logging] level``: the daemon's, and its workers' (which
    inherit the daemon's stdout)."""
    configure_logging(str(settings.raw.get("logging", {}).get("level", "info")))


def watch_parent(daemon_pid: int) -> None:
    """This worker process ends when the daemon ``daemon_pid`` is no longer its parent (the
    daemon was killed: kill -9, out of memory), checked every second.  The daemon's pid is
    given, not read here: a daemon killed while this worker was still starting (importing
    the translation stack takes a second) would otherwise be missed — the worker would take
    init, its new parent, for the daemon and linger for ever (hundreds of them piled up under
    repeated kill -9 tests)."""
    def orphaned() -> None:
        while os.getppid() == daemon_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphaned, name="parent-watch", daemon=True).start()


def thrifty_malloc() -> None:
    """How the daemon's and its workers' C allocator is set (glibc; elsewhere nothing
    changes).  Left as they are, glibc's defaults cost a large message's worth of memory
    twice over:

    * each thread that allocates gets its own arena, and memory freed in one is not reused
      by another (gpg's output was read by python-gnupg's threads; the daemon's spool
      threads read and write large messages in pieces): one arena — its lock costs little
      where threads take turns on the GIL anyway (no measurable CPU per message);
    * blocks from 128 KiB are given their own pages, but after each such block is freed the
      threshold rises, up to 32 MiB, and the next large buffers grow inside the heap and
      leave holes there: the threshold stays at 1 MiB."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def _worker_ready() -> bool:
    return _WORKER is not None


def _worker_translate(item: TranslateWork, now_ts: float, spill: str
                      ) -> list[TranslatedGroup]:
    """In a worker process: large translated bytes come back as a file in ``spill`` (sent
    through the pipe, they would be copied twice on each side)."""
    assert _WORKER is not None, "translation worker not initialised"
    groups = translate(_WORKER, item, now_ts)
    out = []
    for g in groups:
        if len(g.data) > LARGE:
            path = new_path(Path(spill), item.queue_id)
            with open(create(path), "wb") as f:
                f.write(g.data)
            g = replace(g, data=b"", path=str(path))
        out.append(g)
    return out


def _head(item: TranslateWork) -> bytes:
    """What a notice quotes of a message: its header block (all of it, for a message held
    in memory)."""
    return head(Path(item.path), _HEAD_MAX) if item.path else item.data


def message_id_of(data: bytes | bytearray) -> str:
    head = data[:_HEAD_MAX].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    m = _MESSAGE_ID.search(head)
    return m.group(1).decode("ascii", "replace").strip() if m else ""


class _Domains:
    """The list of domains as the listeners see it (reloadable, fail-closed)."""

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


class Gateway:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        d = settings.daemon
        self.policy = RetryPolicy(
            d.retry_initial, d.retry_factor, d.retry_max, d.delay_warning_after, d.lifetime
        )
        self.spool: SqliteSpool = open_spool(settings.journal_url, policy=self.policy)
        self.journal: Journal = open_journal(settings.journal_url)
        self.translator: Translator = build_translator(settings)
        self.anchors = trust_anchors(settings)
        t = settings.trust
        self.domains = _Domains(domain_list_store(settings))
        self.router = Router(dict(d.routes), mx_lookup=d.mx_lookup)
        self.limiter = DestinationLimiter(d.per_destination)
        self.sessions = SessionCache(per_destination=d.per_destination)
        self.name = f"{d.hostname}-{uuid.uuid4().hex[:8]}"
        # large messages on their way to a worker or a peer, as files: the state directory
        # is this instance's own, and whatever a crash left here is still in the spool
        self.spill = settings.state_dir / "spill"
        self.trust_client_tls = client_tls_context(
            t.client_cert, t.client_key, anchors=self.anchors, ciphers=t.ciphers
        )
        self.legacy_client_tls = ssl.create_default_context()
        self.legacy_client_tls.check_hostname = False
        self.legacy_client_tls.verify_mode = ssl.CERT_NONE  # content is end-to-end sealed
        self.legacy_client_tls.minimum_version = ssl.TLSVersion.TLSv1_2
        # Spool and journal writes are short: they get their own threads, so that recording a
        # delivery never queues behind a gpg call (the shorter the window between the peer's
        # 250 and our commit, the fewer duplicates after a crash).
        self._db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool")
        self._cpu: Executor = self._translation_pool()
        self._wake_translate = Wakeup(settings.daemon.workers)
        self._wake_deliver = Wakeup(1)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self.listeners: list[Listener] = []
        self.metrics = Metrics()
        readiness = ops_http.Readiness()
        readiness.add("spool", ops_http.spool_writable(self.spool.ping))
        readiness.add("domain_list", ops_http.domain_list_fresh(self._list_age))
        readiness.add("keys", ops_http.keys_loaded(lambda: self.translator is not None))
        # Last delivery attempt per next hop: did the peer answer at all?
        self.peer_status: dict[str, bool] = {}
        readiness.add("peers", ops_http.peers_reachable(lambda: self.peer_status))
        self.ops = ops_http.OpsServer(
            self.metrics.registry, readiness, host=d.ops_listen[0], port=d.ops_listen[1]
        )

    # -- wiring --------------------------------------------------------------------------

    def _translation_pool(self) -> Executor:
        """Threads of this process, or worker processes each holding its own translator
        (built once from the settings) so that translation uses every core."""
        d = self.settings.daemon
        if d.processes == 0:
            return ThreadPoolExecutor(max_workers=max(1, d.workers), thread_name_prefix="translate")
        return ProcessPoolExecutor(
            max_workers=d.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(self.settings, os.getpid()),
        )

    def _new_translation_pool(self) -> None:
        """New workers in place of these (the tables reloaded, or a worker lost); the old
        pool finishes what it holds."""
        old, self._cpu = self._cpu, self._translation_pool()
        old.shutdown(wait=False)
        self._warm()

    def _warm(self) -> None:
        """Start every translation worker process now — each imports the translation stack
        and builds its translator, about a second — rather than when the first messages
        arrive and wait for it.  Does not wait: the listeners open meanwhile."""
        if isinstance(self._cpu, ProcessPoolExecutor):
            for _ in range(self.settings.daemon.processes):
                self._cpu.submit(_worker_ready)

    async def _in(
        self, pool: Executor, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    def book(self) -> AddressBook:
        return self.translator.book

    def reload(self) -> None:
        """SIGHUP: the address book and the list of domains are read again."""
        try:
            self.translator.book = AddressBook.load(self.settings.addresses)
            if isinstance(self._cpu, ProcessPoolExecutor):  # the workers read it again too
                self._new_translation_pool()
            if self.domains.store is not None:
                self.domains.store.reload()
            log.info("config.reloaded", outcome="ok")
            self._static_metrics()
        except PasserelleError as exc:
            log.error("config.reload_failed", kind=exc.kind)

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
        for crl in self.anchors.crls:
            label = "crl:" + crl.fingerprint(hashes.SHA1()).hex()[:12]
            self.metrics.set_crl_timestamp(label, crl.last_update_utc)
            if crl.next_update_utc is not None:
                self.metrics.set_expiry_at("crl", label, crl.next_update_utc)
        listing = self.domains.current()
        if listing.entries:
            self.metrics.set_list_timestamp(listing.generated_at, len(listing.entries))

    async def _gauges_loop(self) -> None:
        while not self._stopping:
            counts = await self._in(self._db, self.spool.counts)
            self.metrics.set_spool_depth(counts)
            self.metrics.set_oldest_age(
                await self._in(self._db, self.spool.oldest_age, self.clock())
            )
            entries, size = await self._in(self._db, self.journal.size)
            self.metrics.set_journal_size(entries, size)
            await asyncio.sleep(min(5.0, self.settings.daemon.poll_interval * 5))

    async def start(self, *, ops: bool = True) -> None:
        shutil.rmtree(self.spill, ignore_errors=True)
        self.spill.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.spool.recover(now=self.clock())
        self._static_metrics()
        if ops:
            await self.ops.start()
        d = self.settings.daemon
        t = self.settings.trust
        limits = Limits(d.max_message_size, d.max_recipients)
        common: dict[str, Any] = {
            "book": self.book,
            "domains": self.domains.current,
            "accept": self.accept,
            "limits": limits,
            "gateway_domain": self.settings.domain,
            "directory_alias": self.translator.directory.is_alias
            if self.translator.directory is not None
            else None,
        }
        if t.server_cert is None or t.server_key is None:
            from gateway.errors import ConfigError

            raise ConfigError("trust.server_cert and trust.server_key are required to serve")
        legacy_tls = server_tls_context(
            t.server_cert, t.server_key, anchors=None, require_client_cert=False, ciphers=t.ciphers
        )
        trust_tls = server_tls_context(
            t.server_cert,
            t.server_key,
            anchors=self.anchors,
            require_client_cert=True,
            ciphers=t.ciphers,
        )
        self.listeners = [
            Listener(
                LegacyHandler(**common),
                host=d.legacy_listen[0],
                port=d.legacy_listen[1],
                tls=legacy_tls,
                require_starttls=False,
                hostname=d.hostname,
                limits=limits,
                spill=self.spill,
            ),
            Listener(
                TrustHandler(**common),
                host=d.trust_listen[0],
                port=d.trust_listen[1],
                tls=trust_tls,
                require_starttls=True,
                hostname=d.hostname,
                limits=limits,
                spill=self.spill,
            ),
        ]
        self._warm()
        for listener in self.listeners:
            await listener.start()
        for i in range(d.workers):
            self._tasks.append(asyncio.create_task(self._forever(self._translate_loop, i)))
        self._tasks.append(asyncio.create_task(self._forever(self._deliver_loop)))
        self._tasks.append(asyncio.create_task(self._forever(self._gauges_loop)))

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
        self._wake_translate.notify_all()
        self._wake_deliver.notify_all()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sessions.close_all()
        await self.ops.stop()
        self._cpu.shutdown(wait=True)
        self._db.shutdown(wait=True)

    # -- accepting -----------------------------------------------------------------------

    async def accept(self, arrival: Arrival) -> str:
        started = time.monotonic()
        if arrival.side == "legacy" and not arrival.mail_from:
            return await self._hub_notice(arrival)
        direction = Direction.TO_TRUST if arrival.side == "legacy" else Direction.TO_LEGACY
        queue_id, duplicate = await self._in(
            self._db,
            self.spool.accept,
            direction=direction,
            mail_from=arrival.mail_from,
            rcpts=arrival.rcpt_tos,
            data=arrival.data,
            message_id=message_id_of(head(arrival.data, _HEAD_MAX)),
            now=self.clock(),
            peer=arrival.peer,
        )
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
        self._wake_translate.notify()
        return queue_id

    async def _hub_notice(self, arrival: Arrival) -> str:
        """A delivery status notification from the legacy hub about a message we delivered
        there: passed back to the trust-space sender as an RFC 3464 DSN naming the
        addresses they wrote to.  Anything else with a null sender is refused."""
        data = arrival.data
        parsed = notices.read_dsn(data.read_bytes() if isinstance(data, Path) else bytes(data))
        if parsed is None:
            raise RelayDenied("with a null sender this gateway accepts only delivery status "
                              "notifications")
        message_id, failures = parsed
        for rcpt in arrival.rcpt_tos:
            if not message_id or not await self._in(
                self._db, self.spool.sent_to_legacy, message_id, rcpt
            ):
                raise RelayDenied("this notification does not report on a message carried by "
                                  "this gateway from that sender")
        book = self.book()
        shown = []
        for f in failures:
            try:  # the legacy address the hub names becomes the alias the sender wrote to
                alias = book.by_legacy(f.recipient).trust_address
            except PasserelleError:
                alias = f.recipient
            shown.append(notices.Failure(alias, f.action, f.status, f.diagnostic))
        now = datetime.fromtimestamp(self.clock(), UTC)
        queue_ids = []
        for rcpt in arrival.rcpt_tos:
            data = notices.build_dsn(
                f"Message-ID: {message_id}\r\n\r\n".encode(),
                sender=rcpt,
                failures=shown,
                reporting_mta=self.settings.daemon.hostname,
                now=now,
            )
            queue_ids.append(await self._queue_notice(rcpt, data, peer=arrival.peer))
        log.info("hub_notice.accepted", queue_id=queue_ids[0], count=len(shown))
        self._wake_deliver.notify()
        return queue_ids[0]

    # -- translation ---------------------------------------------------------------------

    async def _translate_loop(self, index: int) -> None:
        worker = f"{self.name}/t{index}"
        while not self._stopping:
            work = await self._in(
                self._db,
                self.spool.lease_translate,
                worker,
                now=self.clock(),
                duration=self.settings.daemon.lease,
                limit=1,
                spill=self.spill,
            )
            if not work:
                await self._wake_translate.wait(self.settings.daemon.poll_interval)
                continue
            for item in work:
                task = asyncio.create_task(self._translate_one(item))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                await asyncio.shield(task)

    async def _translate_one(self, item: TranslateWork) -> None:
        groups: list[TranslatedGroup] = []
        try:
            await self._translate_stored(item, groups)
        finally:  # the files of a large message: the spool holds it (and now its translation)
            for name in (item.path, *(g.path for g in groups)):
                if name:
                    Path(name).unlink(missing_ok=True)

    async def _translate_stored(self, item: TranslateWork, groups: list[TranslatedGroup]
                                ) -> None:
        now = self.clock()
        try:
            if isinstance(self._cpu, ProcessPoolExecutor):
                groups += await self._in(self._cpu, _worker_translate, item, now,
                                         str(self.spill))
            else:
                groups += await self._in(self._cpu, translate, self.translator, item, now)
        except BrokenProcessPool:  # a worker died (killed, out of memory): new workers
            log.error("translation.workers_lost", queue_id=item.queue_id)
            self._new_translation_pool()
            await self._translation_failed(item, Fate.RETRY, "internal", "worker process lost")
            return
        except PasserelleError as exc:
            await self._translation_failed(item, exc.fate, exc.kind, str(exc))
            return
        except Exception as exc:  # a bug: keep the message, retry later
            log.error("translation.crashed", queue_id=item.queue_id, exc_info=exc)
            await self._translation_failed(item, Fate.RETRY, "internal", type(exc).__name__)
            return
        at = datetime.fromtimestamp(now, UTC)

        def record() -> None:  # the trace first, then the translation: one trip to a thread
            # the journal is in the spool's database: the spool's commit syncs both
            self.journal.append_traces([g.trace for g in groups], at=at, synced_by_next=True)
            self.spool.store_translated(
                item.queue_id,
                [(g.rcpts, Path(g.path) if g.path else g.data) for g in groups],
                now=self.clock(),
                routes={r: a for g in groups for r, a in g.routes.items()},
            )

        await self._in(self._db, record)
        log.info("message.translated", queue_id=item.queue_id, direction=str(item.direction))
        self.metrics.count_message("translated", str(item.direction))
        for g in groups:
            for stage, seconds in g.trace.timings.items():
                if stage in STAGES:
                    self.metrics.observe_stage(stage, seconds)
            for step in g.trace.steps:
                if step.stage == "repair":
                    for kind, n in step.details.get("repairs", {}).items():
                        self.metrics.count_repair(kind, n)
                elif step.stage == "open":
                    for tool in step.details.get("verification", {}).get("tools", []):
                        self.metrics.count_legacy_part("opened", str(tool))
                elif step.stage == "seal":
                    for tool in step.details.get("tools", []):
                        self.metrics.count_legacy_part("sealed", str(tool))
        unresolved = {r: why for g in groups for r, why in g.unresolved.items()}
        if unresolved:  # directory aliases that lead nowhere: bounced, the rest goes on
            log.info("translation.unresolved", queue_id=item.queue_id, count=len(unresolved))
            self.metrics.count_message("bounced", str(item.direction), "unknown_address")
            await self._in(
                self._db,
                self.spool.translate_failed,
                item.queue_id,
                fate="bounce",
                reason="unknown_address: " + "; ".join(dict.fromkeys(unresolved.values())),
                now=self.clock(),
            )
            await self._notify(
                item.direction,
                item.mail_from,
                _head(item),
                [notices.Failure(r, "failed", "5.1.1", why) for r, why in unresolved.items()],
            )
        self._wake_deliver.notify()

    async def _translation_failed(
        self, item: TranslateWork, fate: Fate, kind: str, reason: str
    ) -> None:
        if fate is Fate.RETRY and self.clock() - item.received_at >= self.policy.lifetime:
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
        await self._in(
            self._db,
            self.spool.translate_failed,
            item.queue_id,
            fate=str(fate),
            reason=f"{kind}: {reason}",
            now=self.clock(),
        )
        if item.direction is Direction.TO_LEGACY and fate is not Fate.RETRY:
            await self._mdn(item.queue_id, item.mail_from, list(item.rcpts), error="900")
        if fate is Fate.BOUNCE:
            failures = [
                notices.Failure(
                    r,
                    "failed",
                    "5.1.1"
                    if kind == "unknown_address"
                    else "5.7.0"
                    if "sign" in kind or "crypt" in kind or "key" in kind
                    else "5.6.0",
                    reason if kind == "unknown_address" else kind,  # says which RPPS
                )
                for r in item.rcpts
            ]
            await self._notify(item.direction, item.mail_from, _head(item), failures)

    # -- notices -------------------------------------------------------------------------

    async def _notify(
        self,
        direction: Direction,
        sender: str,
        original: bytes,
        failures: list[notices.Failure],
        *,
        delayed: bool = False,
    ) -> None:
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
                    gateway_domain=self.settings.domain,
                    now=now,
                    delayed=delayed,
                    charset=user.charset,
                )
                data, tools = await self._in(
                    self._cpu,
                    self.translator.legacy.seal_traced,
                    letter,
                    recipient=user.legacy_fingerprint,
                )
                for tool in tools:
                    self.metrics.count_legacy_part("sealed", tool)
                rcpt = user.legacy_address
            else:
                data = notices.build_dsn(
                    original,
                    sender=sender,
                    failures=failures,
                    reporting_mta=self.settings.daemon.hostname,
                    now=now,
                )
                rcpt = sender
        except PasserelleError as exc:
            log.error("notice.failed", kind=exc.kind)
            return
        except Exception as exc:  # a bug must not lose the original's state
            log.error("notice.failed", exc_info=exc)
            return
        await self._queue_notice(rcpt, data)
        self._wake_deliver.notify()

    async def _queue_notice(self, rcpt: str, data: bytes, *, peer: str = "") -> str:
        """A message we wrote ourselves (bounce, delay notice, DSN, MDN): queued ready for
        delivery as it is, with a null sender (never a notice about a notice)."""
        queue_id, _ = await self._in(
            self._db,
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

    async def _mdn(self, queue_id: str, return_path: str, rcpts: Sequence[str], *,
                   error: str | None = None) -> None:
        """Answer an MDN request of a trust-space sender (trust-space spec, RFC 8098)."""
        try:
            original = await self._in(self._db, self.spool.head, queue_id, _HEAD_MAX)
        except PasserelleError:
            return
        notify = notices.mdn_requested(original, return_path)
        if notify is None:
            return
        now = datetime.fromtimestamp(self.clock(), UTC)
        for rcpt in rcpts:
            data = notices.build_mdn(original, notify=notify, final_recipient=rcpt,
                                     reporting_ua=self.settings.daemon.hostname, now=now,
                                     error=error)
            await self._queue_notice(notify, data)
        self._wake_deliver.notify()

    # -- delivery ------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        worker = f"{self.name}/d"
        while not self._stopping:
            work = await self._in(
                self._db,
                self.spool.lease_deliver,
                worker,
                now=self.clock(),
                duration=max(self.settings.daemon.lease, self.settings.daemon.delivery_timeout * 2),
                limit=32,
                spill=self.spill,
            )
            if not work:
                self.sessions.expire()
                await self._wake_deliver.wait(self.settings.daemon.poll_interval)
                continue
            tasks = []
            for item in work:
                task = asyncio.create_task(self._deliver_one(item))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                tasks.append(task)
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):  # a bug: the lease expires, work is redone
                    log.error("delivery.crashed", exc_info=result)

    def _target(self, item: DeliverWork, rcpt: str) -> tuple[str, str, bool]:
        """(domain to route on, address to send to, is it the legacy side?)"""
        book = self.book()
        if rcpt in item.routes:  # a directory alias, resolved when translated
            return domain_of(item.routes[rcpt]), item.routes[rcpt], False
        if item.direction is Direction.TO_LEGACY:
            user = book.by_trust(rcpt)
            return domain_of(user.legacy_address), user.legacy_address, True
        legacy = book.is_legacy(rcpt)
        return domain_of(rcpt), rcpt, legacy

    async def _deliver_one(self, item: DeliverWork) -> None:
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
        for rcpt in item.rcpts:
            try:
                domain, address, legacy = self._target(item, rcpt)
            except PasserelleError:
                outcomes[rcpt] = NO_ROUTE
                continue
            by_route.setdefault((domain, legacy), []).append((rcpt, address))
        for (domain, legacy), pairs in by_route.items():
            route = self.router.route(domain) if legacy else await self.router.resolve(domain)
            if route is None or isinstance(route, Outcome):
                outcomes.update(dict.fromkeys((r for r, _ in pairs), route or NO_ROUTE))
                continue
            if legacy:
                route = type(route)(route.host, route.port, require_tls=False)
            tls = self.legacy_client_tls if legacy else self.trust_client_tls
            started = time.monotonic()
            async with self.limiter(f"{route.host}:{route.port}"):
                got = await deliver(
                    data,  # with the in-doubt flag when an earlier attempt was cut off
                    mail_from=item.mail_from
                    if item.direction is not Direction.TO_LEGACY
                    else self._legacy_sender(item),
                    rcpts=[a for _, a in pairs],
                    route=route,
                    tls=tls,
                    timeout=self.settings.daemon.delivery_timeout,
                    helo=self.settings.daemon.hostname,
                    cache=self.sessions,
                )
            self.peer_status[f"{route.host}:{route.port}"] = any(
                o.fate is None or not o.status.startswith(("4.4.", "4.7.")) for o in got.values()
            )
            seconds = time.monotonic() - started
            self.metrics.observe_stage("deliver", seconds)
            log.info(
                "delivery.attempt",
                queue_id=item.queue_id,
                peer=route.host,
                seconds=round(seconds, 4),
            )
            for outcome in set(got.values()):
                if outcome.status in ("4.7.5", "4.7.4"):
                    self.metrics.count_tls_failure(
                        domain,
                        "starttls_unsupported"
                        if outcome.status == "4.7.4"
                        else "certificate_unknown",
                    )
            for rcpt, address in pairs:
                outcomes[rcpt] = got[address]
        await self._record(item, outcomes)

    def _legacy_sender(self, item: DeliverWork) -> str:
        return item.mail_from

    async def _record(self, item: DeliverWork, outcomes: dict[str, Outcome]) -> None:
        now = self.clock()
        delivered = [r for r, o in outcomes.items() if o.fate is None]
        bounced = [r for r, o in outcomes.items() if o.fate is Fate.BOUNCE]
        deferred = [r for r, o in outcomes.items() if o.fate is Fate.RETRY]
        if delivered:
            await self._in(self._db, self.spool.mark_delivered, item.output_id, delivered, now=now)
            log.info("message.delivered", queue_id=item.queue_id, count=len(delivered))
            if item.direction is Direction.TO_LEGACY:
                await self._mdn(item.queue_id, item.mail_from, delivered)
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
            await self._in(
                self._db,
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
            _, warn, expired = await self._in(
                self._db, self.spool.mark_deferred, item.output_id, deferred, now=now, reason=reason
            )
            if expired:
                await self._in(
                    self._db,
                    self.spool.mark_bounced,
                    item.output_id,
                    deferred,
                    now=now,
                    reason=f"lifetime over: {reason}",
                )
                failures += [
                    notices.Failure(r, "failed", "4.4.7", f"expired: {reason}") for r in deferred
                ]
            elif warn:
                original = await self._original(item)
                await self._notify(
                    item.direction,
                    item.mail_from,
                    original,
                    [
                        notices.Failure(r, "delayed", outcomes[r].status, outcomes[r].reason)
                        for r in deferred
                    ],
                    delayed=True,
                )
        if failures:
            original = await self._original(item)
            await self._notify(item.direction, item.mail_from, original, failures)

    async def _original(self, item: DeliverWork) -> bytes:
        """What a notice quotes of the original: its header block."""
        try:
            data: bytes = await self._in(self._db, self.spool.head, item.queue_id, _HEAD_MAX)
        except PasserelleError:
            return b""
        return data


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


def parse_addresses(values: Sequence[str]) -> list[str]:
    return [a for _, a in email.utils.getaddresses(list(values)) if a]
