"""The ops HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on 127.0.0.1 by default.

A deliberately tiny HTTP/1.1 server on ``asyncio.start_server`` so it runs inside the daemon's
event loop (no thread, no extra dependency): GET and HEAD only, one request per connection,
small header cap and a read timeout, ``Connection: close``.  It is for a Prometheus scraper
and a load balancer's health checks on a trusted network, not for the internet.

Readiness is a set of named checks the daemon registers (`Readiness.add`); each check is a
quick, non-blocking callable returning ``None`` when fine or one line saying what is wrong
(no patient data).  ``/readyz`` answers 200 when every check passes, else 503 listing the
failing ones, one per line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

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
    """Fails when ``spool_ping()`` raises or returns False (it should write and fsync a probe)."""

    def check() -> str | None:
        try:
            ok = spool_ping()
        except Exception as exc:
            return f"spool not writable: {type(exc).__name__}"
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


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}  # fmt: skip


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9325"`` / ``"[::1]:9325"`` / ``":9325"`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {value!r}")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


class OpsServer:
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
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._client, self.host, self._port, limit=MAX_REQUEST_BYTES
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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

    def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = ""
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                response = Response(431, b"request too large\n")
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            else:
                response = self._answer(head)
                method = head.split(b" ", 1)[0].decode("ascii", "replace")
            writer.write(self._encode(response, head_only=method == "HEAD"))
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> Response:
        if len(head) > MAX_REQUEST_BYTES:
            return Response(431, b"request too large\n")
        line = head.split(b"\r\n", 1)[0].decode("ascii", "replace")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return Response(400, b"bad request\n")
        return self.respond(parts[0], parts[1])

    @staticmethod
    def _encode(r: Response, *, head_only: bool) -> bytes:
        head = (
            f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'Unknown')}\r\n"
            f"Content-Type: {r.content_type}\r\n"
            f"Content-Length: {len(r.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        return head if head_only else head + r.body
