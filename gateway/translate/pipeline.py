"""The translation pipeline both ways: exactly what the daemon and `passerelle translate` run.

Legacy → trust: check sender → open (decrypt + verify signer = envelope sender) → compose
(text repair, documents, addresses, note, trace part) → S/MIME sign → verify our own signature.
Trust → legacy: verify the S/MIME signature when present (policy decides on unsigned mail) →
per recipient: compose (XDM → HPRIM, charset) → seal for the recipient.

Pure given its collaborators (keys, address book, tables) and the time passed in.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any, Protocol

from gateway.directory.addresses import AddressBook, LegacyUser, domain_of
from gateway.directory.resolve import DirectoryResolver
from gateway.documents import hprim
from gateway.documents.codes import CodeTables
from gateway.errors import (
    MessageFormatError,
    PasserelleError,
    PolicyError,
    RelayDenied,
    SenderMismatch,
    UnknownAddress,
)
from gateway.mail import mime
from gateway.mail.handover import Handover
from gateway.translate import legacy_to_trust, senders, trust_to_legacy
from gateway.translate.strings import StringRepairs
from gateway.translate.trace import TraceRecord, sha256


class LegacyCryptoLike(Protocol):
    """Opening and sealing on the legacy side (see gateway.crypto.legacy): ``open`` returns
    the opened message as ``handed`` (a :class:`Handover`) or ``message`` (bytes)."""

    def open(self, raw: bytes | Handover, *, expected_signer: str) -> Any:
        """With ``unsigned_ok=True`` (passed only when the sender may send unsigned parts:
        a v1 user over the hub's authenticated session), parts decrypted without any
        signature are accepted and the verification says so."""
        ...

    def seal_traced(self, message: bytes | Handover, *, recipient: str
                    ) -> tuple[bytes, tuple[str, ...]]:
        """The sealed message, and which tool sealed each part."""
        ...


class SmimeLike(Protocol):
    """Signing and verification on the trust side (see gateway.crypto.smime)."""

    def sign(self, message: bytes | Handover) -> bytes: ...

    def verify(self, message: bytes, *, at: datetime) -> tuple[Handover, str]: ...

    def verify_signer(self, message: bytes, *, at: datetime
                      ) -> tuple[Handover, str, tuple[str, ...]]: ...

    def is_signed(self, message: bytes) -> bool: ...

    @property
    def signer_subject(self) -> str: ...


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    # how the legacy hub authenticated the session the message came over ("certificate" or
    # "smtp-auth"), "" when it did not: stored with the message by the listener, never read
    # from its content
    hub_auth: str = ""
    # when the listener stored it (the trace's ``received`` step); None: translated now
    received_at: datetime | None = None


@dataclass
class Translation:
    """One translated message for one or more recipients, with what was done."""

    message: bytes
    recipients: tuple[str, ...]
    trace: TraceRecord
    direction: str
    repairs: int = 0
    encoding: str = ""
    documents: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    # directory aliases: envelope recipient -> the mailbox it resolved to
    routes: dict[str, str] = field(default_factory=dict)
    # directory aliases that resolved to nothing: envelope recipient -> why (bounced)
    unresolved: dict[str, str] = field(default_factory=dict)


def _hprim_recipients(decrypted: Handover, charset: str | None) -> list[tuple[str, str]]:
    """(code, name) of the recipient line of each HPRIM report in the message body."""
    from gateway.text import normalize

    # the tree open kept for compose (see to_handover), read and left for it; else the
    # bytes, read and not let go
    inner = decrypted.kept() or mime.parse(b"".join(decrypted.slices()))
    body = next((p for p in mime.leaves(inner)
                 if p.content_type == "text/plain" and not p.is_attachment), None)
    if body is None:
        return []
    text = normalize(body.data, hint=charset).text
    if not hprim.looks_like_hprim(text):
        return []
    documents = hprim.repair_headers(hprim.parse(text).documents,
                                     StringRepairs(hint=charset).text)
    return [(d.header.recipient_code, d.header.recipient_name) for d in documents]


# A Message-ID field as nearly every mailer writes it: one line, one plain <token>; and what
# the email package's parser takes for a header line (a field, a continuation, a From_ line).
_SIMPLE_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[!-~]+>)[ \t]*\r?$", re.I | re.M)
_ANY_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:", re.I | re.M)
_HEADER_LINE = re.compile(rb"[!-9;-~]*:|[ \t]|From ")


def _message_id(raw: bytes | Handover) -> str:
    if isinstance(raw, Handover):
        return _message_id_of(raw.head(), raw.digest)
    return _message_id_of(raw, lambda: sha256(raw))


def _message_id_of(raw: bytes, digest: Callable[[], str]) -> str:
    return header_message_id(raw) or f"<{digest()[:32]}@passerelle>"


def header_message_id(raw: bytes) -> str:
    """The Message-ID of a message (or of its header block), "" when it has none: read the
    same by the translator, the spool and the notices, so that a message's steps are all
    journaled under one id (:func:`gateway.translate.trace.trace_id`)."""
    # the header block only: parsing the whole message (bodies, attachments) just to read
    # one header cost a full parse per message
    # and the header block without splitting the message: the split copied the body
    end = raw.find(b"\r\n\r\n")
    head = raw[: end if end >= 0 else None]
    end = head.find(b"\n\n")
    head = head[: end if end >= 0 else None]
    value = _simple_message_id(head)
    if value is None:  # folded, encoded, odd or absent: what the header parser reads
        try:  # (the header block alone: its multipart Content-Type has no parts here)
            value = mime.header(email.parser.BytesParser(policy=email.policy.compat32)
                                .parsebytes(head + b"\r\n\r\n", headersonly=True),
                                "Message-ID")
        except Exception:
            value = ""
    return value.strip()


def _simple_message_id(head: bytes) -> str | None:
    """The Message-ID of a header block read without the email package, when its first
    Message-ID field is a plain one-line ``<token>`` after well-formed header lines (the
    parser would read the same); else None."""
    simple = _SIMPLE_MESSAGE_ID.search(head)
    first = _ANY_MESSAGE_ID.search(head)
    if simple is None or first is None or first.start() != simple.start():
        return None
    before = head[: simple.start()].split(b"\n")[:-1]
    if not all(_HEADER_LINE.match(line) for line in before):
        return None
    return simple.group(1).decode("ascii")


@dataclass
class Translator:
    book: AddressBook
    legacy: LegacyCryptoLike
    smime: SmimeLike
    tables: CodeTables
    domain: str
    accept_unsigned: bool = True
    directory: DirectoryResolver | None = None
    default_legacy_mode: str = "v2"  # [legacy] default_mode: a user whose row does not say

    def unsigned_allowed(self, sender: LegacyUser, envelope: Envelope) -> bool:
        """Whether this message's parts may come unsigned: only from a first-generation (v1)
        user, and only over the legacy hub's authenticated session."""
        return sender.mode(self.default_legacy_mode) == "v1" and bool(envelope.hub_auth)

    def _resolve(self, decrypted: Handover, envelope: Envelope, charset: str | None,
                 trace: TraceRecord, now: datetime
                 ) -> tuple[list[str], dict[str, str], dict[str, str], dict[str, tuple[str, str]]]:
        """Directory aliases → mailboxes: (recipients kept, routes, unresolved, header map)."""
        kept: list[str] = []
        routes: dict[str, str] = {}
        unresolved: dict[str, str] = {}
        names: dict[str, tuple[str, str]] = {}
        lines: list[tuple[str, str]] | None = None
        for rcpt in envelope.rcpt_tos:
            if self.directory is None or not self.directory.is_alias(rcpt):
                kept.append(rcpt)
                continue
            if lines is None:
                lines = _hprim_recipients(decrypted, charset)
            try:
                route = self.directory.route(rcpt, lines)
            except UnknownAddress as exc:
                unresolved[rcpt] = str(exc)
                continue
            assert route is not None
            kept.append(rcpt)
            routes[rcpt] = route.address
            names[rcpt.lower()] = (route.display_name, route.address)
            trace.add("resolve", now, rcpt.encode(), route.address.encode(), how=route.how,
                      rpps=route.rpps, mailbox=route.address)
        return kept, routes, unresolved, names

    def to_trust(self, raw: bytes | Handover, envelope: Envelope, *, now: datetime
                 ) -> Translation:
        """``raw`` handed over (see :mod:`gateway.mail.handover`): the received message
        is let go once opened, the opened one once composed."""
        # until the sender is verified, what the message says of itself is nobody's word:
        # a failure before that is marked so, and the notice about it quotes nothing of it
        try:
            sender = self.book.by_legacy(envelope.mail_from)
            for rcpt in envelope.rcpt_tos:
                if self.book.is_legacy(rcpt):
                    raise RelayDenied("recipient is in the legacy network")
        except PasserelleError as exc:
            exc.unverified = True
            raise
        received = raw if isinstance(raw, Handover) else Handover.of(raw)
        del raw
        trace = TraceRecord(_message_id(received), "to_trust")
        digest = received.digest()
        trace.add_digests("received", now, digest, digest, stamped=envelope.received_at,
                          mail_from_domain=domain_of(envelope.mail_from),
                          recipients=len(envelope.rcpt_tos), size=received.size,
                          hub_authenticated=envelope.hub_auth)
        try:
            try:
                if self.unsigned_allowed(sender, envelope):
                    opened = self.legacy.open(
                        received, expected_signer=sender.legacy_fingerprint,
                        unsigned_ok=True)  # type: ignore[call-arg]
                else:
                    opened = self.legacy.open(received,
                                              expected_signer=sender.legacy_fingerprint)
            except PasserelleError as exc:
                exc.unverified = True
                raise
            del received
            decrypted: Handover = getattr(opened, "handed", None) or Handover.of(opened.message)
            verification = _verification_summary(opened)
            unsigned = verification.get("result") == "unsigned"
            trace.add_digests("open", now, digest, decrypted.digest(),
                              signer=sender.legacy_fingerprint,
                              verification=verification,
                              asserted_by=f"legacy hub ({envelope.hub_auth})" if unsigned else "")
            del opened  # the opened message is held by its handover only
            kept, routes, unresolved, names = self._resolve(
                decrypted, envelope, sender.charset, trace, now)
            if not kept:
                raise UnknownAddress("; ".join(dict.fromkeys(unresolved.values())))
            draft = legacy_to_trust.compose(
                decrypted, sender=sender, book=self.book, envelope_from=envelope.mail_from,
                tables=self.tables, now=now, trace=trace, signer_fpr=sender.legacy_fingerprint,
                domain=self.domain, aliases=names, unsigned=unsigned)
            del decrypted
            unsigned = draft.handed.digest()
            trace.settle("compose", unsigned)  # what compose wrote (the trace part in it)
            signed = self.smime.sign(draft.handed)  # lets the draft go as it writes it
            trace.add_digests("sign", now, unsigned, sha256(signed),
                              smime_signer=self.smime.signer_subject, self_verified=True)
            return Translation(signed, tuple(kept), trace, "to_trust", draft.repairs,
                               draft.encoding, draft.documents, draft.findings, routes, unresolved)
        except PasserelleError as exc:
            _stopped(exc, trace)
            raise

    def to_legacy(self, raw: bytes, envelope: Envelope, *, now: datetime) -> list[Translation]:
        """The verified content (a view of ``raw``, not a copy) is handed to each recipient's
        compose in turn, each draft to seal, which lets it go as it reads it."""
        recipients = [self.book.by_trust(r) for r in envelope.rcpt_tos]
        trace_id = _message_id(raw)
        content: Handover
        if self.smime.is_signed(raw):
            content, subject, signer_addresses = self.smime.verify_signer(raw, at=now)
            parsed, unreadable = _parse_once(content)
            # the From of the tree every recipient's compose reads (the header block alone
            # when the message cannot be read: that failure is the translation's, below)
            _signer_is_sender(content.head() if parsed is None else parsed, signer_addresses)
            verdict: dict[str, Any] = {"smime": "verified", "signer": subject}
        elif self.accept_unsigned:
            content, verdict = Handover.of(raw), {"smime": "unsigned", "policy": "accepted"}
            parsed, unreadable = _parse_once(content)
        else:
            raise PolicyError("unsigned trust-space mail is refused by this gateway's policy")
        if not envelope.mail_from and not _is_report(content.head()):
            raise SenderMismatch("a null sender carries only delivery or disposition reports")
        received = sha256(raw)
        out: list[Translation] = []
        for user in recipients:
            trace = TraceRecord(trace_id, "to_legacy")
            trace.add_digests("received", now, received, received,
                              stamped=envelope.received_at,
                              recipients=len(envelope.rcpt_tos), size=len(raw),
                              mail_from_domain=domain_of(envelope.mail_from)
                              if envelope.mail_from else "")
            trace.add_digests("verify", now, received, content.digest(), **verdict)
            try:
                handed = content.again()
                if unreadable is not None:
                    raise unreadable  # as compose's parse of it would (the steps so far kept)
                if parsed is not None:
                    handed.keep_read(parsed)  # parsed once, read by each recipient's compose
                draft = trust_to_legacy.compose(handed, recipient=user,
                                                book=self.book, now=now, trace=trace,
                                                domain=self.domain)
                unsealed = draft.handed.digest()
                trace.settle("compose", unsealed)
                # the draft's digest taken beforehand: seal lets it go as it reads it
                sealed, tools = self.legacy.seal_traced(draft.handed,
                                                        recipient=user.legacy_fingerprint)
            except PasserelleError as exc:
                _stopped(exc, trace)
                raise
            trace.add_digests("seal", now, unsealed, sha256(sealed),
                              recipient=user.legacy_fingerprint, tools=list(tools))
            out.append(Translation(sealed, (user.legacy_address,), trace, "to_legacy",
                                   documents=draft.documents))
        return out


def _parse_once(content: Handover) -> tuple[EmailMessage | None, MessageFormatError | None]:
    """The verified content parsed once, for the ``From`` check and for every recipient's
    compose (which reads, never changes, it); or why it cannot be read.  A content that
    may be a receipt is not (None, None): compose reads it whole, as bytes (``read_mdn``)."""
    if b"multipart/report" in content.head().lower():
        return None, None
    try:
        return mime.parse(content.again()), None
    except MessageFormatError as exc:
        return None, exc


def _stopped(exc: PasserelleError, trace: TraceRecord) -> None:
    """``exc`` stopped the translation ``trace`` records: the steps done so far go with it
    (``exc.trace``), for the daemon to journal with the quarantine or the bounce."""
    exc.trace = trace  # type: ignore[attr-defined]


def stopped_trace(exc: BaseException) -> TraceRecord | None:
    """The steps a translation did before ``exc`` stopped it (None: it stopped before any)."""
    trace = getattr(exc, "trace", None)
    return trace if isinstance(trace, TraceRecord) else None


def _signer_is_sender(head: bytes | Message, signer_addresses: Sequence[str]) -> None:
    """The S/MIME signer is the ``From`` of ``head`` (a header block, or the parsed
    message): one of the addresses its certificate names is the one mailbox of the ``From``
    (parsed, never searched as text).  A certificate naming no address cannot vouch for any
    ``From``."""
    sender = senders.from_address(head)
    if not signer_addresses:
        raise SenderMismatch("S/MIME signer certificate names no e-mail address")
    if not any(senders.same_address(sender, a) for a in signer_addresses):
        raise SenderMismatch("S/MIME signer is not the From")


def _is_report(head: bytes) -> bool:
    """Whether the (verified) content is a report: its one Content-Type multipart/report."""
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        head, headersonly=True)
    return (len(msg.get_all("Content-Type") or []) == 1
            and msg.get_content_type() == "multipart/report")


def _verification_summary(opened: Any) -> dict[str, Any]:
    verification = getattr(opened, "verification", None)
    if verification is None:
        return {}
    summary = getattr(verification, "summary", None)
    if callable(summary):
        result = summary()
        return result if isinstance(result, dict) else {"result": str(result)}
    return {"result": str(verification)}


def recipients_by_direction(rcpts: Sequence[str], book: AddressBook) -> dict[str, list[str]]:
    """Split a mixed recipient list: trust aliases of legacy users vs everything else."""
    out: dict[str, list[str]] = {"to_legacy": [], "to_trust": []}
    for r in rcpts:
        out["to_legacy" if book.is_trust_alias(r) else "to_trust"].append(r)
    return out
