"""Delivery: one message to one destination over SMTP, and what each failure means.

Routes come from the configuration (``[routes]``: a domain, a ``.suffix`` or ``*`` →
``host:port``); a domain without a route is not delivered (health data never goes to an
address we were not told about).  Trust-space destinations require STARTTLS with our client
certificate and a verified server: a peer that does not offer STARTTLS is *deferred*, never
sent in the clear.

The failure table (every delivery failure → retry or bounce), tested in
``tests/smtp/test_delivery.py``:

| failure | fate | status |
|---|---|---|
| connection refused / reset, DNS-less route host down | retry | 4.4.1 |
| timeout at any stage (connect, banner, DATA, peer hangs) | retry | 4.4.2 |
| TLS handshake failed, server certificate not trusted | retry | 4.7.5 |
| STARTTLS not offered where required | retry | 4.7.4 |
| 421 / any 4xx reply (banner, MAIL, RCPT, DATA) | retry | the peer's |
| 5xx reply at MAIL or DATA | bounce | the peer's |
| 5xx reply at RCPT (that recipient) | bounce | the peer's |
| connection dropped in the middle of DATA | retry | 4.4.2 |
| no route for the domain | bounce | 5.4.4 |
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import aiosmtplib

from gateway import spill
from gateway.errors import Fate


@dataclass(frozen=True)
class Outcome:
    fate: Fate | None  # None = delivered
    status: str
    reason: str


DELIVERED = Outcome(None, "2.0.0", "delivered")


@dataclass(frozen=True)
class Route:
    host: str
    port: int
    require_tls: bool = True


@dataclass
class Router:
    routes: dict[str, str] = field(default_factory=dict)
    tls_required: bool = True
    mx_lookup: bool = True
    dns_timeout: float = 5.0

    async def resolve(self, domain: str) -> Route | Outcome | None:
        """The static route, else the domain's best MX (port 25); an Outcome when DNS is
        temporarily failing (deferred), None when the domain has no mail host (bounced)."""
        route = self.route(domain)
        if route is not None or not self.mx_lookup:
            return route
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        try:
            answer = await dns.asyncresolver.resolve(domain, "MX", lifetime=self.dns_timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.DNSException, OSError):
            return Outcome(Fate.RETRY, "4.4.3", "DNS lookup failed")
        best = min(answer, key=lambda r: r.preference)
        host = str(best.exchange).rstrip(".")
        return Route(host, 25, self.tls_required) if host else None

    def route(self, domain: str) -> Route | None:
        domain = domain.lower().rstrip(".")
        target = self.routes.get(domain)
        if target is None:
            parts = domain.split(".")
            for i in range(1, len(parts)):
                target = self.routes.get("." + ".".join(parts[i:]))
                if target is not None:
                    break
        if target is None:
            target = self.routes.get("*")
        if target is None:
            return None
        host, _, port = target.rpartition(":")
        return Route(host or target, int(port or 25), self.tls_required)


def _status_of(code: int, text: str) -> str:
    words = text.split()
    if words and words[0][:1] in "245" and words[0].count(".") == 2:
        return words[0]
    return f"{str(code)[0]}.0.0"


def classify(exc: BaseException) -> Outcome:
    """The one table: any delivery exception → retry or bounce, with a status."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        worst = max((r.code for r in exc.recipients), default=450)
        fate = Fate.BOUNCE if worst >= 500 else Fate.RETRY
        return Outcome(fate, f"{str(worst)[0]}.1.0", "all recipients refused")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return Outcome(Fate.RETRY, "4.4.2", "timed out")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Outcome(Fate.RETRY, "4.4.2", "connection lost")
    if isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionError):
        return Outcome(Fate.RETRY, "4.4.1", "cannot connect")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Outcome(Fate.RETRY, "4.7.5", f"TLS failed ({type(exc).__name__})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        if code == -1:
            return Outcome(Fate.RETRY, "4.4.2", "connection lost")
        status = _status_of(code, exc.message)
        fate = Fate.BOUNCE if code >= 500 else Fate.RETRY
        return Outcome(fate, status, f"{code} {exc.message[:200]}")
    if isinstance(exc, aiosmtplib.SMTPException):
        text = str(exc)
        if "STARTTLS" in text or "TLS" in text:
            return Outcome(Fate.RETRY, "4.7.4", "STARTTLS not available")
        return Outcome(Fate.RETRY, "4.4.0", text[:200])
    if isinstance(exc, spill.SpillError):  # an OSError, but ours, not the network's
        return Outcome(Fate.RETRY, "4.3.0", "local spill file unreadable (SpillError)")
    if isinstance(exc, OSError):
        return Outcome(Fate.RETRY, "4.4.1", f"network error ({type(exc).__name__})")
    return Outcome(Fate.RETRY, "4.3.0", f"internal error ({type(exc).__name__})")


NO_ROUTE = Outcome(Fate.BOUNCE, "5.4.4", "no route to the recipient's domain")


@dataclass(frozen=True)
class MemoryMessage:
    """A message held in memory, sent as DATA carries it."""

    data: bytes
    from_thread = False  # its wire form is made at once, not read from a disk

    @cached_property
    def _lines(self) -> bytes:
        """Every line end CRLF, ending with one (made once: SIZE and DATA both need it)."""
        out = _wire(self.data, stuffed=False, at_line_start=True)
        return out if out.endswith(b"\n") else out + b"\r\n"

    def wire(self, *, stuffed: bool) -> Generator[bytes, None, None]:
        """The message as DATA carries it (see :meth:`FileMessage.wire`), in one piece."""
        yield _stuff(self._lines, at_line_start=True) if stuffed else self._lines

    def size(self) -> int:
        """RFC 1870 SIZE: the octets of the message with CRLF line ends, before stuffing."""
        return len(self._lines)


@dataclass(frozen=True)
class FileMessage:
    """A message too large to hold in memory, sent from its file in pieces."""

    path: Path
    prefix: bytes = b""  # header lines sent before the file's bytes
    from_thread = True  # its pieces are read (and converted) in a thread

    def wire(self, *, stuffed: bool) -> Generator[bytes, None, None]:
        """The message as DATA carries it, in pieces: every line end CRLF, ending with one;
        ``stuffed``: a dot doubled at the start of a line (RFC 5321 4.5.2)."""
        carry = b""
        at_line_start = True
        last = b""  # the last byte sent
        with contextlib.closing(spill.pieces(self.path)) as opened:  # sealed: opened as it is read
            for raw in _chain(self.prefix, opened):
                buf = carry + raw
                cut = buf.rfind(b"\n") + 1  # whole lines; the rest waits for its end
                if cut == 0 and len(buf) > _PIECE:  # a line that long: sent as it comes,
                    cut = len(buf) - (buf[-1:] == b"\r")  # a CR kept back for its LF
                carry = buf[cut:]
                if cut:
                    piece = _wire(buf[:cut], stuffed=stuffed, at_line_start=at_line_start)
                    at_line_start, last = buf[cut - 1:cut] == b"\n", piece[-1:]
                    yield piece
        if carry:
            piece = _wire(carry, stuffed=stuffed, at_line_start=at_line_start)
            last = piece[-1:]
            yield piece
        if last != b"\n":
            yield b"\r\n"

    def size(self) -> int:
        """RFC 1870 SIZE: the octets of the message with CRLF line ends, before stuffing."""
        return sum(len(p) for p in self.wire(stuffed=False))


_PIECE = 1 << 16
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _wire(text: bytes, *, stuffed: bool, at_line_start: bool) -> bytes:
    # Counted before anything is rewritten: the gateway's own messages (S/MIME, the sealed
    # legacy form) already end every line with CRLF, and three counts cost a tenth of the
    # substitution aiosmtplib would run (twice: once more for SIZE) on every message.
    crlf = text.count(b"\r\n")
    out = text if crlf == text.count(b"\n") == text.count(b"\r") else (
        _LINE_ENDS.sub(b"\r\n", text))
    return _stuff(out, at_line_start=at_line_start) if stuffed else out


def _stuff(lines: bytes, *, at_line_start: bool) -> bytes:
    """A dot doubled at the start of each line of a text whose line ends are all CRLF."""
    out = lines.replace(b"\n.", b"\n..")
    return b"." + out if at_line_start and out[:1] == b"." else out


class _Client(aiosmtplib.SMTP):
    """Knows whether DATA was started: a session from the cache that fails before DATA is
    retried at once on a fresh one (the peer cannot have the message); after, it cannot.
    Sends a :class:`FileMessage` from its file, never whole in memory, and puts any message
    in its wire form once (aiosmtplib's ``sendmail`` rewrote every line end twice)."""

    data_started = False

    async def data(self, message: Any, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        if isinstance(message, FileMessage | MemoryMessage):
            return await self._data_from(message, kwargs.get("timeout", self.timeout))
        return await super().data(message, **kwargs)

    async def send(self, sender: str, recipients: list[str],
                   message: FileMessage | MemoryMessage
                   ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """``sendmail``: MAIL (with the message's SIZE), RCPT each, DATA."""
        await self._ehlo_or_helo_if_needed()
        options: list[str] = []
        if self.supports_extension("size"):
            size = (await asyncio.to_thread(message.size) if message.from_thread
                    else message.size())
            options.append(f"SIZE={size}")
        errors: dict[str, aiosmtplib.SMTPResponse] = {}
        try:
            await self.mail(sender, options=options)
            refused = []
            for rcpt in recipients:
                try:
                    await self.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    errors[rcpt] = aiosmtplib.SMTPResponse(exc.code, exc.message)
                    refused.append(exc)
            if len(refused) == len(recipients):
                raise aiosmtplib.SMTPRecipientsRefused(refused)
            response = await self.data(message)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
                await self.rset()  # the next message on this session starts clean
            raise
        return errors, response.message

    async def _data_from(self, message: FileMessage | MemoryMessage, timeout: float | None
                         ) -> aiosmtplib.SMTPResponse:
        protocol = self.protocol
        if protocol is None or protocol._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            async with protocol._command_lock:
                protocol._response_pending = True
                protocol.write(b"DATA\r\n")
                start = await protocol.read_response(timeout=timeout)
                if start.code != aiosmtplib.SMTPStatus.start_input:
                    raise aiosmtplib.SMTPDataError(start.code, start.message)
                pieces = message.wire(stuffed=True)
                try:  # a file's read and converted in a thread, written as the peer takes them
                    while piece := (await asyncio.to_thread(next, pieces, b"")
                                    if message.from_thread else next(pieces, b"")):
                        protocol.write(piece)
                        await asyncio.wait_for(protocol._drain_helper(), timeout)
                finally:
                    pieces.close()
                protocol._response_pending = True
                protocol.write(b".\r\n")
                response = await protocol.read_response(timeout=timeout)
                if response.code != aiosmtplib.SMTPStatus.completed:
                    raise aiosmtplib.SMTPDataError(response.code, response.message)
                return response
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, TimeoutError,
                ConnectionError):
            self.close()
            raise


class SessionCache:
    """Idle SMTP sessions kept per destination for a few seconds and reused for the next
    message (like Postfix's connection cache): no new TCP and TLS handshake per message.

    A session idle for more than ``check_after`` seconds is checked with NOOP before reuse;
    an expired or broken one is closed.  One given back a moment ago (the next message of a
    busy destination) goes straight to MAIL: the NOOP cost a round trip and a TLS record
    each way per message, and a session the peer dropped meanwhile fails before DATA, which
    :func:`deliver` retries at once on a fresh session — as it does a ``421`` (the peer's
    idle timeout) in answer to that MAIL."""

    def __init__(self, *, idle: float = 5.0, per_destination: int = 4,
                 check_after: float = 1.0) -> None:
        self.idle = idle
        self.per_destination = per_destination
        self.check_after = check_after
        self._idle: dict[tuple[str, int, bool], list[tuple[float, _Client]]] = {}

    async def take(self, key: tuple[str, int, bool]) -> _Client | None:
        sessions = self._idle.get(key, [])
        loop = asyncio.get_running_loop()
        while sessions:
            since, client = sessions.pop()
            idle = loop.time() - since
            if idle > self.idle or not client.is_connected:
                _close_later(client)
                continue
            if idle <= self.check_after:
                return client
            try:
                await client.noop(timeout=5)
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                client.close()
                continue
            return client
        return None

    def give(self, key: tuple[str, int, bool], client: _Client) -> None:
        sessions = self._idle.setdefault(key, [])
        sessions.append((asyncio.get_running_loop().time(), client))
        while len(sessions) > self.per_destination:
            _close_later(sessions.pop(0)[1])

    def expire(self) -> None:
        """Close sessions idle too long (called now and then by the delivery loop)."""
        now = asyncio.get_running_loop().time()
        for sessions in self._idle.values():
            for item in [x for x in sessions if now - x[0] > self.idle]:
                sessions.remove(item)
                _close_later(item[1])

    def close_all(self) -> None:
        for sessions in self._idle.values():
            for _, client in sessions:
                _close_later(client)
        self._idle.clear()


async def deliver(message: bytes | FileMessage, *, mail_from: str, rcpts: list[str],
                  route: Route,
                  tls: ssl.SSLContext | None, timeout: float, helo: str,
                  cache: SessionCache | None = None) -> dict[str, Outcome]:
    """Send; per recipient, what happened (never raises)."""
    key = (route.host, route.port, tls is not None)
    client = await cache.take(key) if cache is not None else None
    reused = client is not None
    if client is None:
        client = _Client(hostname=route.host, port=route.port, timeout=timeout,
                         local_hostname=helo, tls_context=tls,
                         start_tls=True if route.require_tls else None,
                         validate_certs=tls is not None)
    try:
        if not reused:
            await client.connect()
        client.data_started = False
        errors, reply = await client.send(
            mail_from, rcpts,
            message if isinstance(message, FileMessage) else MemoryMessage(message))
    except BaseException as exc:
        client.close()
        if isinstance(exc, asyncio.CancelledError):
            raise
        if reused and not client.data_started and (_closing(exc) or not isinstance(
                exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused)):
            # the cached session died (or the peer closes it: 421) before the peer could
            # have the message: a fresh one
            return await deliver(message, mail_from=mail_from, rcpts=rcpts, route=route,
                                 tls=tls, timeout=timeout, helo=helo, cache=None)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            return {r.recipient: classify(aiosmtplib.SMTPResponseException(r.code, r.message))
                    for r in exc.recipients}
        return dict.fromkeys(rcpts, classify(exc))
    # The peer has the message: keep the session for the next one, or say goodbye in the
    # background, so that the caller records the delivery at once (the shorter that window,
    # the fewer duplicates after a crash).
    if cache is not None:
        cache.give(key, client)
    else:
        _close_later(client)
    sent = Outcome(None, _status_of(250, reply), f"250 {reply}"[:200]) if reply else DELIVERED
    out = dict.fromkeys(rcpts, sent)
    for rcpt, response in errors.items():
        out[rcpt] = classify(aiosmtplib.SMTPResponseException(response.code, response.message))
    return out


def _closing(exc: BaseException) -> bool:
    """A 421: the peer closes the session (its idle timeout, a restart), not a verdict on
    the message."""
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421


_GOODBYES: set[asyncio.Task[None]] = set()


def _close_later(client: aiosmtplib.SMTP) -> None:
    task = asyncio.create_task(_goodbye(client))
    _GOODBYES.add(task)
    task.add_done_callback(_GOODBYES.discard)


async def _goodbye(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except BaseException:
        client.close()


class DestinationLimiter:
    """At most N concurrent sessions per destination host."""

    def __init__(self, per_destination: int = 4) -> None:
        self.per_destination = per_destination
        self._sems: dict[str, asyncio.Semaphore] = {}

    def __call__(self, destination: str) -> asyncio.Semaphore:
        sem = self._sems.get(destination)
        if sem is None:
            sem = self._sems[destination] = asyncio.Semaphore(self.per_destination)
        return sem
