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
import ssl
from dataclasses import dataclass, field

import aiosmtplib

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
    if isinstance(exc, OSError):
        return Outcome(Fate.RETRY, "4.4.1", f"network error ({type(exc).__name__})")
    return Outcome(Fate.RETRY, "4.3.0", f"internal error ({type(exc).__name__})")


NO_ROUTE = Outcome(Fate.BOUNCE, "5.4.4", "no route to the recipient's domain")


async def deliver(message: bytes, *, mail_from: str, rcpts: list[str], route: Route,
                  tls: ssl.SSLContext | None, timeout: float, helo: str
                  ) -> dict[str, Outcome]:
    """Send; per recipient, what happened (never raises)."""
    client = aiosmtplib.SMTP(hostname=route.host, port=route.port, timeout=timeout,
                             local_hostname=helo, tls_context=tls,
                             start_tls=True if route.require_tls else None,
                             validate_certs=tls is not None)
    try:
        await client.connect()
        errors, _ = await client.sendmail(mail_from, rcpts, message)
    except BaseException as exc:
        client.close()
        if isinstance(exc, asyncio.CancelledError):
            raise
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            return {r.recipient: classify(aiosmtplib.SMTPResponseException(r.code, r.message))
                    for r in exc.recipients}
        return dict.fromkeys(rcpts, classify(exc))
    # The peer has the message: say goodbye in the background, so that the caller records
    # the delivery at once (the shorter that window, the fewer duplicates after a crash).
    task = asyncio.create_task(_goodbye(client))
    _GOODBYES.add(task)
    task.add_done_callback(_GOODBYES.discard)
    out = dict.fromkeys(rcpts, DELIVERED)
    for rcpt, response in errors.items():
        out[rcpt] = classify(aiosmtplib.SMTPResponseException(response.code, response.message))
    return out


_GOODBYES: set[asyncio.Task[None]] = set()


async def _goodbye(client: aiosmtplib.SMTP) -> None:
    try:
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
