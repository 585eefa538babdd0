"""Translation workers: where a queued message is translated, and the processes that do it.

:func:`translate` turns one leased :class:`~gateway.spool.model.TranslateWork` into groups of
recipients with their translated bytes and trace.  It runs in a thread of the daemon
(``[workers] processes = 0``) or in a worker process of a :class:`WorkerPool`: each process
builds its own translator and opens its own connections to the spool and the journal once
(:func:`worker_init`), and is handed message ids through :func:`worker_translate_stored`: it
reads the message from the spool, translates it and stores the translation itself
(:func:`translate_stored`) — the message's bytes never go through the pipe to the daemon,
either way.  Those entry points are top-level functions of this module because a process
pool started with ``spawn`` pickles them by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.atrest import MissingKey, open_sealer
from gateway.config import Settings
from gateway.crypto.pki import TrustAnchors
from gateway.directory.addresses import AddressBook
from gateway.journal import Journal
from gateway.log import configure as configure_logging
from gateway.mail.handover import Handover
from gateway.spill import read_bytes
from gateway.spool import Direction, SqliteSpool, open_journal, open_spool
from gateway.spool.model import TranslateWork
from gateway.stages.common import run_in
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translator

T = TypeVar("T")
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3  # mallopt(3)


@dataclass(frozen=True)
class TranslatedGroup:
    """Translated bytes for some recipients of a message."""

    rcpts: tuple[str, ...]
    data: bytes
    trace: Any
    routes: dict[str, str] = field(default_factory=dict)  # directory alias -> mailbox
    unresolved: dict[str, str] = field(default_factory=dict)  # directory alias -> why


def translate(translator: Translator, item: TranslateWork, now_ts: float
              ) -> list[TranslatedGroup]:
    """One queued message translated: groups of recipients with their bytes and trace."""
    now = datetime.fromtimestamp(now_ts, UTC)
    received = datetime.fromtimestamp(item.received_at, UTC)  # the trace's received step
    envelope = Envelope(item.mail_from, item.rcpts, item.hub_auth, received)
    if item.direction is Direction.TO_TRUST:
        # a message in a file is read from it in slices, never whole (see Handover)
        t = translator.to_trust(Handover.of_file(Path(item.path)) if item.path else item.data,
                                envelope, now=now)
        return [TranslatedGroup(t.recipients, t.message, t.trace, t.routes, t.unresolved)]
    data = read_bytes(Path(item.path)) if item.path else item.data
    out: list[TranslatedGroup] = []
    for rcpt in item.rcpts:
        results = translator.to_legacy(data, Envelope(item.mail_from, (rcpt,),
                                                      received_at=received), now=now)
        out.append(TranslatedGroup((rcpt,), results[0].message, results[0].trace))
    return out


@dataclass(frozen=True)
class Stored:
    """What the daemon is told of a message translated and stored by a worker: the facts
    it logs, counts and acts on — never the message's bytes, which stay in the spool."""

    stored: bool  # False: the lease was lost meanwhile (another translation stores it)
    traces: tuple[Any, ...]  # one per recipient group (its stage timings and steps)
    routes: dict[str, str] = field(default_factory=dict)  # directory alias -> mailbox
    unresolved: dict[str, str] = field(default_factory=dict)  # directory alias -> why


def open_stores(settings: Settings) -> tuple[SqliteSpool, Journal]:
    """The spool and the journal of ``settings`` (one database by default) as a translation
    worker process opens them: its own connections, the schema as the daemon made it (no
    DDL while the daemon serves: on PostgreSQL it would deadlock with live transactions)."""
    url = settings.journal_url
    # the keyring as it is now: one rotated since is read again when a record needs it
    spool = open_spool(url, migrate=False, sealer=open_sealer(settings.keys_file))
    return spool, open_journal(url, migrate=False)


def translate_stored(translator: Translator, spool: SqliteSpool, journal: Journal,
                     queue_id: str, owner: str, now_ts: float, spill: str) -> Stored | None:
    """The message ``queue_id``, leased by ``owner``, read from the spool, translated, and
    its trace and translation written back — the trace first, then the translation per
    recipient group, stored only while ``owner`` still holds the lease.  None when the
    message is not there to translate: gone, set aside as corrupt by the read, or no longer
    ``owner``'s (the work waited for a worker longer than the lease, and another took and
    maybe translated it meanwhile).  A failure raises, with nothing written."""
    item = spool.translate_work(queue_id, Path(spill), lease_owner=owner)
    if item is None:
        return None
    try:
        groups = translate(translator, item, now_ts)
    finally:  # a large message came as a file: the spool still holds it
        if item.path:
            Path(item.path).unlink(missing_ok=True)
    # neither commit waits for an fsync: the delivery lease that takes the translation is
    # a synced commit to the same database, made before anything is sent, and it syncs both
    # (lost in a power cut before it, both are, and the message is translated again: see
    # SqliteSpool.store_translated; a message translated again — released — keeps its one
    # received step)
    journal.append_traces([g.trace for g in groups], synced_by_next=True, queue_id=queue_id)
    routes = {r: a for g in groups for r, a in g.routes.items()}
    stored = spool.store_translated(queue_id, [(g.rcpts, g.data) for g in groups],
                                    now=now_ts, routes=routes, lease_owner=owner,
                                    durable=False)
    return Stored(stored, tuple(g.trace for g in groups), routes,
                  {r: why for g in groups for r, why in g.unresolved.items()})


# -- in a worker process ----------------------------------------------------------------------

_WORKER: Translator | None = None  # in a translation worker process
_STORES: tuple[SqliteSpool, Journal] | None = None  # its own connections to them
_SETTINGS: Settings | None = None


def worker_init(settings: Settings, daemon_pid: int, book: AddressBook | None = None,
                anchors: TrustAnchors | None = None) -> None:
    """A worker process starts: it ignores the signals the daemon decides on, watches the
    daemon, logs like it, builds its translator and opens the spool and the journal."""
    global _WORKER, _STORES, _SETTINGS
    _SETTINGS = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watch_parent(daemon_pid)
    configure_daemon_logging(settings)  # to the daemon's stream (inherited), redacted alike
    thrifty_malloc()
    _WORKER = build_translator(settings, book=book, anchors=anchors)
    _STORES = open_stores(settings)


def worker_ready() -> bool:
    """Submitted once per process to start the pool's processes now (see WorkerPool.warm)."""
    return _WORKER is not None


def worker_seal(letter: bytes, recipient: str) -> tuple[bytes, tuple[str, ...]]:
    """In a worker process: a notice sealed for a legacy ``recipient`` by this worker's own
    legacy crypto (the daemon's cannot be sent here when it holds a C library: rnp)."""
    assert _WORKER is not None, "translation worker not initialised"
    sealed, tools = _WORKER.legacy.seal_traced(letter, recipient=recipient)
    return sealed, tuple(tools)


def worker_translate_stored(queue_id: str, owner: str, now_ts: float, spill: str
                            ) -> Stored | None:
    """:func:`translate_stored` in a worker process, with its own translator and
    connections: only the message's id goes through the pipe, and only ids and small
    facts come back."""
    assert _WORKER is not None and _STORES is not None, "translation worker not initialised"
    try:
        return translate_stored(_WORKER, *_STORES, queue_id, owner, now_ts, spill)
    except MissingKey:  # sealed under a key added since this worker started (keys rotate)
        spool = _STORES[0]
        if _SETTINGS is None or spool.sealer is None:
            raise
        spool.sealer = open_sealer(_SETTINGS.keys_file)
        return translate_stored(_WORKER, *_STORES, queue_id, owner, now_ts, spill)


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


# -- in the daemon ----------------------------------------------------------------------------

class WorkerPool:
    """Where translations (and the sealing of notices) run: threads of the daemon when
    ``[workers] processes = 0``, else worker processes each holding its own translator
    (built once from the settings), so that translation uses every core."""

    def __init__(self, settings: Settings, book: AddressBook | None = None,
                 anchors: TrustAnchors | None = None) -> None:
        self.settings = settings
        # the address book the daemon accepted last: a worker started later (a reload, a
        # worker lost) is given it, and never reads a file the daemon refused
        self.book = book
        # the anchors and CRLs the daemon accepted last (None: read from the files)
        self.anchors = anchors
        self.executor: Executor = self._new()

    @property
    def processes(self) -> bool:
        return isinstance(self.executor, ProcessPoolExecutor)

    def _new(self) -> Executor:
        d = self.settings.daemon
        if d.processes == 0:
            return ThreadPoolExecutor(max_workers=max(1, d.workers), thread_name_prefix="translate")
        return ProcessPoolExecutor(
            max_workers=d.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_init,
            initargs=(self.settings, os.getpid(), self.book, self.anchors),
        )

    def warm(self) -> None:
        """Start every worker process now — each imports the translation stack and builds
        its translator, about a second — rather than when the first messages arrive and
        wait for it.  Does not wait: the listeners open meanwhile."""
        if isinstance(self.executor, ProcessPoolExecutor):
            for _ in range(self.settings.daemon.processes):
                self.executor.submit(worker_ready)

    def renew(self, book: AddressBook | None = None) -> None:
        """New workers in place of these (the tables reloaded: ``book``, or a worker lost);
        the old pool finishes what it holds."""
        if book is not None:
            self.book = book
        old, self.executor = self.executor, self._new()
        old.shutdown(wait=False)
        self.warm()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in(self.executor, fn, *args, **kwargs)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
