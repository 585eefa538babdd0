"""The two SMTP listeners: thin aiosmtpd handlers that check, store and answer.

* **legacy listener** — the legacy hub relays here every message for a recipient outside the
  legacy network.  STARTTLS is offered.  Only mapped legacy senders, writing to listed
  trust-space domains (or to a mapped user's trust-space alias) are accepted: no open relay.
  When ``[legacy.hub]`` is configured the hub may authenticate its session — a client
  certificate verified against the hub's anchors and matching the configured subject and/or
  fingerprint, or SMTP AUTH with the configured credentials, offered only after STARTTLS
  (:class:`HubGate`) — and that fact is stored with each message it sends (``hub_auth``):
  only such a message may carry a first-generation (v1) user's unsigned parts.
* **trust listener** — trust-space operators deliver here.  STARTTLS is required before MAIL;
  the TLS layer demands and verifies a client certificate (anchors + CRL); at MAIL FROM its
  subject DN must be the one the list of domains publishes for the sender's domain;
  recipients must be mapped legacy users.

Handlers never translate: they check the envelope, hand message + envelope to the spool
(``accept``, which returns only once both are durably stored) and answer.  Every failure is a
:class:`~gateway.errors.PasserelleError` whose reply is decided in ``gateway/errors.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import errno
import hmac
import re
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from gateway.directory.addresses import AddressBook, domain_of
from gateway.errors import (
    BadRecipientAddress,
    ConfigError,
    DomainNotListed,
    MessageFormatError,
    MessageTooBig,
    PasserelleError,
    PolicyError,
    RelayDenied,
    SenderMismatch,
    SpoolFull,
    UnknownAddress,
)
from gateway.log import allow_words, get_logger
from gateway.smtp.dataread import PieceDataSMTP
from gateway.spill import LARGE, Data, Writer, create, new_path
from gateway.spill import head as data_head
from gateway.spill import size as data_size
from gateway.translate import senders
from gateway.vocabulary import SMTP_REJECT_REASONS, tls_reason

log = get_logger("passerelle.smtp")
allow_words(*SMTP_REJECT_REASONS, "helo", "ehlo", "mail", "rcpt", "data", "rset",
            "noop", "quit", "vrfy", "expn", "auth", "help")

# aiosmtpd's own refusals, by the start of their text: the reason word they are counted under.
_OWN_REASONS = (
    ("530 5.7.0 Must issue a STARTTLS command with", "no_client_certificate"),
    ("530", "starttls_required"),
    ("552", "too_big"),
    ("553", "malformed_address"),
    ("452 4.5.3", "too_many_recipients"),
    ("421", "shutdown"),
    ("535", "auth_failed"),
)


def _reject_reason(status: str, hint: str | None) -> str:
    """The word a refusal is logged and counted under: the handler's (``hint``) when it gave
    one, else read from the reply (aiosmtpd's own refusals: syntax, sequence, STARTTLS)."""
    if hint in SMTP_REJECT_REASONS:
        return hint
    if hint:  # an error kind of no listed reason: what the sender is told to do
        return "transient" if status[:1] == "4" else "policy"
    for prefix, reason in _OWN_REASONS:
        if status.startswith(prefix):
            return reason
    if status.startswith(("500", "501", "502", "503", "504", "555")):
        return "syntax"
    return "transient" if status.startswith("4") else "internal"


def _note(session: Session, reason: str, **fields: str) -> None:
    """What the handler knows of the refusal it is about to answer (read by `_Smtp.push`)."""
    session.passerelle_reject = (reason, fields)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Limits:
    max_message_size: int = 30 * 1024 * 1024
    max_recipients: int = 100
    timeout: float = 300.0  # seconds a session may stay silent (limits.idle_timeout)
    max_connections: int = 1000  # sessions open at once on one listener
    max_connections_per_client: int = 50  # of them, from one client address


class Burst:
    """One log line when a run of the same trouble starts, not one per occurrence: the
    next line comes once ``quiet`` seconds have passed without it, and says how many
    occurrences the previous run held (``count``)."""

    def __init__(self, event: str, quiet: float = 60.0) -> None:
        self.event = event
        self.quiet = quiet
        self.last = -float("inf")
        self.held = 0  # occurrences since the last line

    def hit(self, **fields: Any) -> bool:
        """Note one occurrence; True when it was logged (the start of a run)."""
        now = time.monotonic()
        started = now - self.last > self.quiet
        self.last = now
        if not started:
            self.held += 1
            return False
        log.warning(self.event, count=self.held, **fields)
        self.held = 0
        return True


class ConnectionGate:
    """The sessions open on one listener, in all and per client address."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: dict[str, int] = {}

    def admit(self, client: str) -> str:
        """"" when a session from ``client`` may open (it is then counted), else the
        limit it would pass ("total", "per_client")."""
        if self.total >= self.limits.max_connections:
            return "total"
        if self.per_client.get(client, 0) >= self.limits.max_connections_per_client:
            return "per_client"
        self.total += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1
        return ""

    def release(self, client: str) -> None:
        self.total -= 1
        left = self.per_client.get(client, 0) - 1
        if left > 0:
            self.per_client[client] = left
        else:
            self.per_client.pop(client, None)


_ACCEPT_ERRORS = {errno.EMFILE: "emfile", errno.ENFILE: "enfile", errno.ENOBUFS: "enobufs",
                  errno.ENOMEM: "enomem"}
allow_words(*_ACCEPT_ERRORS.values(), "total", "per_client", "too_many_connections",
            "idle_timeout", "accept_failed")


def watch_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop's failures to accept a connection (no file descriptor left, no
    memory) logged once per burst, not once per attempt with a traceback each (the loop
    tries again every second, for as long as the trouble lasts); anything else goes to the
    handler that was there."""
    if getattr(loop, "_passerelle_accept_watch", False):
        return
    previous = loop.get_exception_handler()
    burst = Burst("smtp.accept_failed")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and ("accept" in str(context.get("message", "")).lower()
                                         or exc.errno in _ACCEPT_ERRORS):
            burst.hit(reason=_ACCEPT_ERRORS.get(exc.errno or 0, "other"),
                      error_type=type(exc).__name__)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._passerelle_accept_watch = True  # type: ignore[attr-defined]


_HEAD_MAX = 256 * 1024  # the header block a listener reads the From of
# what a null sender may carry on the trust side: a report (DSN, MDN), signed or not (a
# signed one is checked again on its verified content when translated)
_REPORT_TYPES = ("multipart/report", "multipart/signed", "application/pkcs7-mime")


@dataclass(frozen=True)
class Arrival:
    """What a listener hands to the spool: the envelope as received and the bytes."""

    side: str  # "legacy" or "trust"
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: Data  # in memory, or in a file of the spill directory when large
    peer: str
    tls: str | None  # negotiated protocol, when any
    client_subject: str | None  # trust side: the verified client certificate's subject
    # legacy side: how the legacy hub authenticated this session ("certificate" or
    # "smtp-auth"), "" when it did not — a fact of the session, never of the content
    hub_auth: str = ""


HUB_AUTH = ("certificate", "smtp-auth")


@dataclass(frozen=True)
class HubGate:
    """How the legacy hub is recognised on the legacy listener (``[legacy.hub]``)."""

    subject: str = ""  # the hub's client certificate subject DN (any order, case, spacing)
    fingerprint: str = ""  # the SHA-256 of the hub's certificate (64 hex digits)
    login: bytes = b""
    password: bytes = b""

    @property
    def certificate(self) -> bool:
        return bool(self.subject or self.fingerprint)

    @property
    def smtp_auth(self) -> bool:
        return bool(self.login)

    @classmethod
    def load(cls, *, subject: str = "", fingerprint: str = "",
             auth_file: Path | None = None) -> HubGate:
        """The gate; the credentials read from ``auth_file`` (one line ``login:password``,
        lines starting with ``#`` ignored).  An unreadable or malformed file is a
        :class:`ConfigError` (never a gate that lets anybody in)."""
        login = password = b""
        if auth_file is not None:
            try:
                lines = [line.strip() for line in auth_file.read_bytes().splitlines()]
            except OSError as exc:
                raise ConfigError(f"legacy.hub.auth_file {auth_file}: cannot read "
                                  f"({exc.strerror})") from None
            lines = [line for line in lines if line and not line.startswith(b"#")]
            if len(lines) != 1 or b":" not in lines[0]:
                raise ConfigError(f"legacy.hub.auth_file {auth_file}: must hold one line "
                                  "login:password")
            login, _, password = lines[0].partition(b":")
            if not login or not password:
                raise ConfigError(f"legacy.hub.auth_file {auth_file}: empty login or password")
        return cls(subject, fingerprint.lower(), login, password)

    def certificate_matches(self, der: bytes | None) -> bool:
        """Whether ``der`` (a client certificate the TLS layer verified) is the hub's: every
        configured check must hold."""
        if not der or not self.certificate:
            return False
        import hashlib

        from cryptography import x509

        from gateway.crypto.x509util import dn_key, dn_string

        if self.fingerprint and not hmac.compare_digest(
                hashlib.sha256(der).hexdigest(), self.fingerprint):
            return False
        if self.subject:
            try:
                subject = dn_string(x509.load_der_x509_certificate(der).subject)
            except ValueError:
                return False
            if dn_key(subject) != dn_key(self.subject):
                return False
        return True

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's authenticator: the hub's login and password, compared in constant
        time (AUTH is offered only after STARTTLS)."""
        if (self.smtp_auth and isinstance(auth_data, LoginPassword)
                and hmac.compare_digest(auth_data.login, self.login)
                and hmac.compare_digest(auth_data.password, self.password)):
            return AuthResult(success=True, auth_data="hub")
        log.info("smtp.auth_refused", listener="legacy")
        return AuthResult(success=False, handled=False)

    def session_auth(self, session: Session) -> str:
        """How the hub authenticated ``session``: "certificate", "smtp-auth" or ""."""
        ssl_info: dict[str, Any] = session.ssl or {}
        ssl_obj = ssl_info.get("ssl_object")
        if self.certificate and isinstance(ssl_obj, ssl.SSLObject) and \
                self.certificate_matches(ssl_obj.getpeercert(binary_form=True)):
            return "certificate"
        if self.smtp_auth and session.authenticated and session.auth_data == "hub":
            return "smtp-auth"
        return ""


AcceptFn = Callable[[Arrival], Awaitable[str]]


class Counts(Protocol):
    """What the listeners count (`gateway.ops.metrics.Metrics` has it)."""

    def count_smtp_rejection(self, listener: str, code: int | str, reason: str) -> None: ...

    def count_tls_failure(self, peer_domain: str, reason: str,
                          direction: str = "outbound") -> None: ...


class DomainPolicy(Protocol):
    """What the listeners need from the list of domains."""

    def is_listed(self, domain: str) -> bool: ...

    def check_client(self, domain: str, der_certificate: bytes) -> str: ...


class _Handler:
    side = ""

    def __init__(self, *, book: Callable[[], AddressBook], domains: Callable[[], DomainPolicy],
                 accept: AcceptFn, limits: Limits, gateway_domain: str,
                 directory_alias: Callable[[str], bool] | None = None,
                 hub: HubGate | None = None, metrics: Counts | None = None) -> None:
        self.hub = hub or HubGate()
        self.metrics = metrics  # rejections and inbound TLS failures are counted there
        self.book = book  # callables: SIGHUP swaps the tables under running listeners
        # rpps-<11 digits>@ and hprim@ the gateway domain: resolved when translated
        self.directory_alias = directory_alias
        self.domains = domains
        self.accept = accept
        self.limits = limits
        self.gateway_domain = gateway_domain

    @staticmethod
    def _reply(exc: PasserelleError) -> str:
        return exc.smtp_reply()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            _note(session, "too_many_recipients", recipient=address)
            return "452 4.5.3 Too many recipients"
        try:
            address = idn_recipient(address)
            key = self.recipient_key(address)
            if any(self.recipient_key(a) == key for a in envelope.rcpt_tos):
                # given twice (the domain in any case, or another spelling of the same
                # user's address): one recipient, one translation
                return "250 2.1.5 OK (duplicate recipient)"
            self.check_recipient(address)
        except PasserelleError as exc:
            _note(session, exc.kind, recipient=address)
            return self._reply(exc)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def check_recipient(self, address: str) -> None:
        raise NotImplementedError

    def recipient_key(self, address: str) -> str:
        """What makes two recipients one: the local part as written, the domain without
        case (RFC 5321 2.4: only the receiving host may read the local part without case)."""
        return _recipient_key(address)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data: Data = envelope.original_content or b""
        if isinstance(data, str):  # aiosmtpd gives bytes unless decode_data: never here
            data = data.encode("utf-8", "surrogateescape")
        if data_size(data) > self.limits.max_message_size:
            _note(session, "too_big")
            return self._reply(MessageTooBig(
                f"message size exceeds {self.limits.max_message_size} bytes"))
        ssl_info: dict[str, Any] = session.ssl or {}
        ssl_obj = ssl_info.get("ssl_object")
        arrival = Arrival(
            side=self.side,
            mail_from="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            peer=str(session.peer[0]) if session.peer else "",
            tls=ssl_obj.version() if isinstance(ssl_obj, ssl.SSLObject) else None,
            client_subject=getattr(session, "passerelle_client_subject", None),
            hub_auth=self.hub.session_auth(session) if self.side == "legacy" else "",
        )
        started = time.monotonic()
        try:
            queue_id = await self.accept(arrival)
        except PasserelleError as exc:
            _note(session, exc.kind)
            return self._reply(exc)
        except Exception as exc:  # never a 5xx for our own failure: the sender retries
            log.error("smtp.accept_crashed", listener=self.side, exc_info=exc)
            _note(session, "internal")
            return f"451 4.3.0 Internal error ({type(exc).__name__}), try again later"
        log.debug("smtp.accepted", listener=self.side, queue_id=queue_id,
                  seconds=round(time.monotonic() - started, 4))
        return f"250 2.0.0 OK queued as {queue_id}"


def _recipient_key(address: str) -> str:
    """What makes two recipients one: the local part as written (quoting that changes
    nothing taken away: ``"dr.x"@`` is ``dr.x@``), the domain without case."""
    local, sep, domain = address.rpartition("@")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        inner = re.sub(r"\\(.)", r"\1", local[1:-1])
        if re.fullmatch(rf"{_ATOM}(?:\.{_ATOM})*", inner):
            local = inner
    return f"{local}{sep}{domain.lower()}" if sep else address


def idn_recipient(address: str) -> str:
    """A recipient whose domain is written in U-labels, in A-labels (IDNA 2008): the form
    the list of domains, the address book and the next hop know.  A domain that is no valid
    internationalised name is refused here (553 5.1.3), never accepted and then deferred."""
    local, sep, domain = address.rpartition("@")
    if not sep or domain.isascii():
        return address
    try:
        return f"{local}@{senders.a_label(domain)}"
    except PolicyError as exc:
        raise BadRecipientAddress(
            f"recipient domain cannot be written in A-labels: {exc}") from None


class LegacyHandler(_Handler):
    side = "legacy"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if address in ("", "<>"):
            # the hub's own delivery status notifications: accepted only when they report on
            # a message this gateway carried from that trust-space sender (checked at DATA)
            envelope.mail_from = "<>"  # (not "": aiosmtpd would think MAIL was never given)
            envelope.mail_options.extend(mail_options)
            return "250 2.1.0 OK"
        try:
            self.book().by_legacy(address)
        except PasserelleError:
            _note(session, "unknown_sender", sender=address)
            return "550 5.7.1 Sender is not a legacy user served by this gateway"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    def check_recipient(self, address: str) -> None:
        book = self.book()
        domain = domain_of(address)
        if domain == self.gateway_domain:
            if self.directory_alias is not None and self.directory_alias(address):
                return
            book.by_trust(address)  # a legacy user's trust alias: UnknownAddress otherwise
            return
        if book.is_legacy(address):
            raise RelayDenied("recipient is in the legacy network: not relayed back")
        if not self.domains().is_listed(domain):
            raise DomainNotListed(f"domain {domain} is not on the list of trust-space domains")


class TrustHandler(_Handler):
    side = "trust"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        ssl_info: dict[str, Any] = session.ssl or {}
        ssl_obj = ssl_info.get("ssl_object")
        der = ssl_obj.getpeercert(binary_form=True) if isinstance(ssl_obj, ssl.SSLObject) else None
        if not der:
            _note(session, "starttls_required" if ssl_obj is None else "no_client_certificate",
                  sender=address)
            return "530 5.7.0 Must issue a STARTTLS command with a client certificate first"
        # A null sender (a DSN or MDN) has no domain: the certificate must then be the
        # published one of some listed operator.
        if address == "<>":
            address = ""
        try:
            domain = domain_of(address) if address else ""
        except UnknownAddress:  # e.g. MAIL FROM:a — a path, but no e-mail address
            _note(session, "malformed_address")
            return "553 5.1.7 Sender address is malformed"
        try:
            if domain and not self.domains().is_listed(domain):
                raise DomainNotListed(f"domain {domain} is not on the list")
            subject = self.domains().check_client(domain, der)
        except PasserelleError as exc:
            _note(session, exc.kind, sender=address)
            return self._reply(exc)
        session.passerelle_client_subject = subject  # type: ignore[attr-defined]
        session.passerelle_client_der = der  # type: ignore[attr-defined]
        envelope.mail_from = address or "<>"  # aiosmtpd needs a truthy reverse-path
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data: Data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        try:
            self.check_sender(data_head(data, _HEAD_MAX), envelope,
                              getattr(session, "passerelle_client_der", b""))
        except PasserelleError as exc:
            log.info("sender refused", extra={"side": self.side, "kind": exc.kind})
            return self._reply(exc)
        return await super().handle_DATA(server, session, envelope)

    def check_sender(self, head: bytes, envelope: Envelope, der: bytes) -> None:
        """The ``From`` belongs to the party that authenticated: its one mailbox's domain is
        one the list publishes for the client certificate (the envelope sender's was checked
        at MAIL).  A null envelope sender carries only a report (DSN, MDN)."""
        if b"\n\r\n" not in head and b"\n\n" not in head and len(head) >= _HEAD_MAX:
            # a header block too large to read here: the translation bounces it
            # (message_format), and checks the From there (the signer, the report)
            return
        block = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0] + b"\r\n\r\n"
        try:
            address = senders.from_address(block)
        except PolicyError as exc:
            raise SenderMismatch(str(exc)) from None
        if not der:
            raise SenderMismatch("no client certificate")
        try:
            self.domains().check_client(senders.domain_part(address), der)
        except PasserelleError:
            raise SenderMismatch("From is not in a domain the list publishes for the client "
                                 "certificate") from None
        if envelope.mail_from in (None, "", "<>"):
            msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
                block, headersonly=True)
            ctype = msg.get_content_type() if msg.get_all("Content-Type") else ""
            if len(msg.get_all("Content-Type") or []) != 1 or ctype not in _REPORT_TYPES:
                raise SenderMismatch("a null sender carries only delivery or disposition "
                                     "reports")

    def recipient_key(self, address: str) -> str:
        """Our own users: the one legacy user an address maps to (the address book reads
        addresses without case), whatever its spelling."""
        try:
            return "user:" + self.book().by_trust(address).legacy_address.lower()
        except PasserelleError:
            return _recipient_key(address)

    def check_recipient(self, address: str) -> None:
        domain = domain_of(address)
        if domain != self.gateway_domain:
            raise RelayDenied(f"relay to {domain} denied")
        try:
            self.book().by_trust(address)
        except UnknownAddress:
            raise UnknownAddress("no such user here") from None


class _Smtp(PieceDataSMTP):
    """aiosmtpd's protocol, with the refusals it answers by itself brought into our table.

    aiosmtpd refuses an oversize message, an over-long text line and a transaction before
    STARTTLS itself, without the enhanced status code (RFC 3463) every other reply carries;
    those few lines are rewritten here, their codes taken from ``gateway/errors.py``."""

    def __init__(self, handler: _Handler, *, spill: Path | None = None,
                 gate: ConnectionGate | None = None, refusals: Burst | None = None,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.spill = spill
        self.gate = gate  # the listener's count of open sessions
        self.refusals = refusals  # the listener's log of sessions refused over the limits
        self.client: str | None = None  # the address counted in the gate, once admitted
        self.turned_away = False
        too_big = MessageTooBig(
            f"message size exceeds {handler.limits.max_message_size} bytes").smtp_reply()
        self._own = {
            "552 Error: Too much mail data": too_big,
            "552 Error: message size exceeds fixed maximum message size": too_big,
            "500 Line too long (see RFC5321 4.5.3.1.6)": MessageFormatError(
                "text line longer than 1000 octets (RFC 5321 4.5.3.1.6)").smtp_reply(),
            "530 Must issue a STARTTLS command first":
                "530 5.7.0 Must issue a STARTTLS command first",
        }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A new session, unless the listener holds as many as it may in all or from this
        client address: that one is answered ``421 4.7.0`` and closed at once, before
        any TLS or command is read."""
        if self.gate is not None and self.transport is None and self.client is None:
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if peer else ""
            over = self.gate.admit(client)
            if over:
                self.turned_away = True
                handler: _Handler = self.event_handler
                if isinstance(transport, asyncio.WriteTransport):
                    with contextlib.suppress(Exception):
                        transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
                transport.close()
                if self.refusals is not None:
                    self.refusals.hit(listener=handler.side, reason=over, peer=client)
                if handler.metrics is not None:
                    handler.metrics.count_smtp_rejection(handler.side, 421,
                                                         "too_many_connections")
                return
            self.client = client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.turned_away:
            return  # no session was made
        if self.gate is not None and self.client is not None:
            self.gate.release(self.client)
            self.gate = None  # released once, whatever calls this again
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self.turned_away:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        if not self.turned_away:
            super().data_received(data)

    def _timeout_cb(self) -> None:
        """A session silent for ``limits.idle_timeout``: told ``421 4.4.2`` and closed."""
        handler: _Handler = self.event_handler
        peer = self.session.peer[0] if self.session is not None and self.session.peer else None
        log.info("smtp.idle_timeout", listener=handler.side, peer=peer)
        if isinstance(self.transport, asyncio.WriteTransport) and \
                not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.transport.write(b"421 4.4.2 Idle for too long, closing\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def _read_data(self, cleanup: contextlib.ExitStack) -> tuple[Data, str]:
        """DATA's text up to the final dot, and the refusal it deserves ("" if none), the
        text into one buffer, and into a file of the spill directory once it is larger than
        ``LARGE`` (aiosmtpd held about four times the message: 118 MB for 25 MB).  The file
        is removed when ``cleanup`` closes."""
        data = bytearray()
        file: Writer | None = None
        path: Path | None = None
        reading = self._data_reader()
        failed = ""  # the spill file could not be written: the sender tries again later
        async for piece in reading.pieces():
            # the idle timeout is idle time: lines arriving keep a long transfer alive
            self._reset_timeout()
            if failed:
                continue
            try:
                if file is not None:
                    file.write(piece)
                    continue
                data += piece
                if self.spill is not None and len(data) > LARGE:  # the rest to a file
                    path = new_path(self.spill, "received")
                    cleanup.callback(path.unlink, missing_ok=True)
                    file = cleanup.enter_context(create(path))  # sealed as written
                    file.write(data)
                    data = bytearray()
            except OSError as exc:  # the disk is full, or the directory gone
                log.error("smtp.spill_failed", listener=self.event_handler.side,
                          error_type=type(exc).__name__)
                failed = SpoolFull("cannot hold the message now").smtp_reply()
                data = bytearray()
        refused = failed or reading.refused  # a write fails only before any refusal
        if file is None or refused:
            return (bytearray() if refused else data), refused
        assert path is not None
        try:
            file.close()
        except OSError:
            return data, SpoolFull("cannot hold the message now").smtp_reply()
        return path, refused

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = self._own.get(status, status)
            if status[:1] in ("4", "5"):
                self._rejected(status)
        await super().push(status)

    def _rejected(self, status: str) -> None:
        """One log line and one count for each refusal, ours or aiosmtpd's own."""
        handler: _Handler = self.event_handler
        session = self.session
        hint, fields = getattr(session, "passerelle_reject", None) or ("", {})
        if session is not None:
            session.passerelle_reject = None  # type: ignore[attr-defined]
        reason = _reject_reason(status, hint)
        code, _, rest = status.partition(" ")
        enhanced = rest.split(" ", 1)[0] if rest[:2] in ("4.", "5.") else None
        peer = session.peer[0] if session is not None and session.peer else None
        log.info("smtp.rejected", listener=handler.side, code=code, enhanced=enhanced,
                 reason=reason, kind=hint or None, peer=peer, **fields)
        if handler.metrics is not None:
            handler.metrics.count_smtp_rejection(handler.side, code, reason)

    async def handle_exception(self, error: Exception) -> str:
        """A failed STARTTLS handshake is one log line and one count, not a traceback;
        anything else is logged by type and place, answered 451 (the sender tries again)."""
        handler: _Handler = self.event_handler
        peer = self.session.peer[0] if self.session is not None and self.session.peer else None
        if isinstance(error, TLSSetupException):
            cause = error.__cause__ or error
            reason = tls_reason(cause)
            log.warning("tls.handshake_failed", direction="inbound", listener=handler.side,
                        reason=reason, error_type=type(cause).__name__, peer=peer)
            if handler.metrics is not None:
                handler.metrics.count_tls_failure("", reason, direction="inbound")
            return "421 4.7.0 TLS handshake failed"
        log.error("smtp.session_error", listener=handler.side, peer=peer, exc_info=error)
        if self.session is not None:
            _note(self.session, "internal")
        return "451 4.3.0 Internal error, try again later"

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The path of MAIL or RCPT; None when malformed, which aiosmtpd answers 553 5.1.3.
        Its parser (the email package's) fails outright on some paths — ``<`` raises
        IndexError, ``<@[ `` UnboundLocalError, ``<.b@[\\[<`` AttributeError — which aiosmtpd
        would answer "500 Error: (…) …" after logging a traceback: malformed paths too."""
        simple = _SIMPLE_PATH.match(arg)
        if simple is not None and (not self.local_part_limit
                                   or len(simple["local"]) <= self.local_part_limit):
            # what nearly every client sends, read as the parser would read it (a tenth of
            # the parser's cost, twice per message; tests/smtp/test_paths.py holds them equal)
            return simple["address"], simple["rest"]
        try:
            return super()._getaddr(arg)
        except Exception:  # the parser's own failures on hostile input, whatever their type
            return None, None


# ``<local@domain>`` and what follows it (the parameters), where local is a dot-atom and the
# domain dot-separated letters, digits and hyphens: the parser reads these as they are, the
# blanks after ``>`` skipped (a comment there is left to the parser).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"<(?P<address>(?P<local>{_ATOM}(?:\.{_ATOM})*)@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"[ \t]*(?P<rest>(?:[!-'*-~][ -~]*)?)\Z")


class Listener:
    """One listening socket running one handler (aiosmtpd protocol per connection)."""

    def __init__(self, handler: _Handler, *, host: str, port: int,
                 tls: ssl.SSLContext | None, require_starttls: bool, hostname: str,
                 limits: Limits, spill: Path | None = None) -> None:
        self.handler = handler
        # SMTP AUTH only where the hub's credentials are configured, and only after STARTTLS
        gate = handler.hub
        self.authenticator = gate.authenticate if gate.smtp_auth else None
        self.spill = spill  # where a large message is received (else: in memory)
        self.host = host
        self.port = port
        self.tls = tls
        self.require_starttls = require_starttls
        self.hostname = hostname
        self.limits = limits
        self._server: asyncio.base_events.Server | None = None
        self._sessions: weakref.WeakSet[_Smtp] = weakref.WeakSet()
        self.gate = ConnectionGate(limits)
        self.refusals = Burst("smtp.too_many_connections")

    def _protocol(self) -> SMTP:
        session = _Smtp(
            self.handler,
            spill=self.spill,
            gate=self.gate,
            refusals=self.refusals,
            data_size_limit=self.limits.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,
            ident="passerelle",
            tls_context=self.tls,
            require_starttls=self.require_starttls,
            timeout=self.limits.timeout,
            **({"authenticator": self.authenticator, "auth_require_tls": True}
               if self.authenticator is not None else {}),
        )
        self._sessions.add(session)
        return session

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        watch_accept_errors(loop)
        self._server = await loop.create_server(self._protocol, host=self.host, port=self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.port

    async def stop_accepting(self) -> None:
        """Close the listening socket; sessions already open finish (SIGTERM drain)."""
        if self._server is not None:
            self._server.close()

    async def close_sessions(self) -> None:
        """Answer ``421 4.3.2`` to every open session and close it (SIGTERM); a message being
        stored gets its ``250`` first."""
        await asyncio.gather(*(s.shut() for s in list(self._sessions)),
                             return_exceptions=True)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
