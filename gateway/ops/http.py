"""The ops HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on 127.0.0.1 by default.

Served by aiohttp inside the daemon's event loop (no thread): GET and HEAD only, a small
header cap, ``Connection: close`` and ``Cache-Control: no-store``.  It is for a Prometheus
scraper and a load balancer's health checks on a trusted network, not for the internet.  The
operator console (:mod:`gateway.ops.console`) is a separate aiohttp application on its own TLS
listener; `serve` below runs either.

Readiness is a set of named checks the daemon registers (`Readiness.add`); each check is a
quick, non-blocking callable returning ``None`` when fine or one line saying what is wrong
(no patient data).  ``/readyz`` answers 200 when every check passes, else 503 listing the
failing ones, one per line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], "str | None"]

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT = 5.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9325


class Readiness:
    """Named readiness checks; order of registration is the order of the report."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    def names(self) -> list[str]:
        return list(self._checks)

    def failures(self) -> list[str]:
        """One line per failing check; a check that raises fails with the exception's type."""
        out: list[str] = []
        for name, check in self._checks.items():
            try:
                reason = check()
            except Exception as exc:  # a broken check means "not ready", never a crash
                reason = f"{name}: check failed ({type(exc).__name__})"
            if reason is not None:
                out.append(" ".join(str(reason).split()) or name)
        return out


# --- ready-made checks ------------------------------------------------------------------------


def spool_writable(spool_ping: Callable[[], object]) -> Check:
    """Fails when ``spool_ping()`` raises, returns False, or returns a reason (a string: what
    the spool's own ``ping`` returns when it cannot write, or is no longer the spool the
    daemon opened); it should write and fsync a probe."""

    def check() -> str | None:
        try:
            ok = spool_ping()
        except Exception as exc:
            return f"spool not writable: {type(exc).__name__}"
        if isinstance(ok, str) and ok:
            return ok if ok.startswith("spool") else f"spool not writable: {ok}"
        return None if ok is not False else "spool not writable"

    return check


def domain_list_fresh(
    age_seconds_fn: Callable[[], float | None], max_age: float = 48 * 3600
) -> Check:
    """Fails when no list of domains is loaded or the one in force is older than ``max_age``."""

    def check() -> str | None:
        age = age_seconds_fn()
        if age is None:
            return "domain list not loaded"
        if age > max_age:
            return f"domain list stale: {age / 3600:.0f} h old (max {max_age / 3600:.0f} h)"
        return None

    return check


def keys_loaded(fn: Callable[[], bool | Iterable[str]]) -> Check:
    """``fn`` returns True/False, or the names of the keys that are missing (empty: all there)."""

    def check() -> str | None:
        result = fn()
        if result is True:
            return None
        if result is False:
            return "keys not loaded"
        missing = sorted(result)
        return f"keys not loaded: {', '.join(missing)}" if missing else None

    return check


def peers_reachable(
    fn: Callable[[], Mapping[str, bool]], *, required: Iterable[str] = ()
) -> Check:
    """``fn`` returns the last probe result per peer (``host:port`` → reachable).

    Not ready when a ``required`` peer (the legacy hub) is down, or when every peer is down:
    one trust operator being down is that operator's problem, and taking this instance out of
    the load balancer would not help.
    """
    needed = tuple(required)

    def check() -> str | None:
        status = dict(fn())
        down = sorted(p for p, ok in status.items() if not ok)
        missing = [p for p in needed if not status.get(p, False)]
        if missing:
            return f"peers unreachable: {', '.join(sorted(set(missing) | set(down)))}"
        if status and len(down) == len(status):
            return f"peers unreachable: {', '.join(down)}"
        return None

    return check


# --- the server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9325"`` / ``"[::1]:9325"`` / ``":9325"`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {value!r}")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


class Site:
    """One aiohttp application on one listener: ``await start()`` then ``await stop()``.
    `stop` does not wait for idle clients."""

    def __init__(self, app: web.Application | None, *, host: str, port: int,
                 ssl_context: Any = None) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._ssl = ssl_context
        self._runner: web.BaseRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None)
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    @property
    def _clients(self) -> list[Any]:
        """The open client connections (for tests: a connection was taken)."""
        if self._runner is None or self._runner.server is None:
            return []
        return list(self._runner.server.connections)

    def _make_runner(self) -> web.BaseRunner:
        assert self.app is not None
        return web.AppRunner(self.app, handle_signals=False, access_log=None,
                             shutdown_timeout=0.5, max_line_size=MAX_REQUEST_BYTES,
                             max_field_size=MAX_REQUEST_BYTES, keepalive_timeout=READ_TIMEOUT)

    async def start(self) -> None:
        self._runner = self._make_runner()
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self._port, ssl_context=self._ssl)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner, self._site = self._runner, None, None
        await runner.cleanup()


class _Handler(RequestHandler):
    """A malformed or oversized request gets one short line (431 for a head over the cap),
    and is not logged with a traceback: a port scanner is not an incident."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already sent")
        if isinstance(exc, LineTooLong) or "too many headers" in str(exc).lower():
            status, text = 431, "request too large\n"
        elif status < 500:
            text = "bad request\n"
        else:
            text = "internal error\n"
        response = web.Response(status=status, text=text)
        response.headers["Cache-Control"] = "no-store"
        response.force_close()
        return response


class _Server(web.Server):
    """Every answer says HTTP/1.1 (aiohttp would echo an HTTP/1.0 client's version)."""

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)

    def _make_request(self, message: RawRequestMessage, payload: StreamReader,
                      protocol: RequestHandler, writer: AbstractStreamWriter,
                      task: asyncio.Task[None]) -> BaseRequest:
        return BaseRequest(message._replace(version=HttpVersion11), payload, protocol, writer,
                           task, self._loop)


class OpsServer(Site):
    """``/metrics``, ``/healthz``, ``/readyz``; ``await start()`` then ``await stop()``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
    ) -> None:
        self.registry = registry
        self.readiness = readiness if readiness is not None else Readiness()
        super().__init__(None, host=host, port=port)

    def _make_runner(self) -> web.BaseRunner:
        server = _Server(self._handle, access_log=None, max_line_size=MAX_REQUEST_BYTES,
                         max_field_size=MAX_REQUEST_BYTES, keepalive_timeout=READ_TIMEOUT)
        return web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        r = self.respond(request.method, request.path)
        response = web.Response(status=r.status, body=r.body,
                                headers={"Content-Type": r.content_type,
                                         "Cache-Control": "no-store", "Server": "passerelle"})
        response.force_close()
        return response

    def respond(self, method: str, path: str) -> Response:
        """The answer to one request (no I/O: easy to test on its own)."""
        path = path.split("?", 1)[0]
        if path not in ("/metrics", "/healthz", "/readyz"):
            return Response(404, b"not found\n")
        if method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n")
        if path == "/metrics":
            return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return Response(200, b"ok\n")
        failures = self.readiness.failures()
        if failures:
            return Response(503, ("\n".join(failures) + "\n").encode("utf-8"))
        return Response(200, b"ready\n")
