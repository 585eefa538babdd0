"""Notices to senders, in the sender's own network and format (pure: clock passed in).

* a legacy user gets a plain French letter (sealed by the caller with their key);
* a trust-space sender gets an RFC 3464 delivery status notification.

Neither ever carries the original body — only its headers — so no patient data travels back
outside the end-to-end encryption.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import quopri
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid

from gateway.errors import MessageFormatError, PasserelleError
from gateway.mail import mime
from gateway.text.encode import encode_for

_KEEP = ("From", "To", "Cc", "Date", "Message-ID", "In-Reply-To", "References")


@dataclass(frozen=True)
class Failure:
    recipient: str
    action: str  # "failed" or "delayed"
    status: str  # "5.1.1", "4.4.1" …
    diagnostic: str


def original_headers(message: bytes) -> tuple[str, str, str]:
    """(Message-ID, Date, Subject) of the original, for correlation and the notice text."""
    msg = _head(message)
    if msg is None:
        return "", "", ""
    return (str(msg.get("Message-ID", "")), str(msg.get("Date", "")),
            str(msg.get("Subject", "")))


def _head(message: bytes) -> EmailMessage | None:
    """The header block of a message from outside, parsed within the reader's bounds (a
    huge folded field would take the event loop for seconds), or None."""
    try:
        return mime.parse_head(message)
    except MessageFormatError:
        return None


def _why(f: Failure) -> str:
    if f.status.startswith("5.1"):
        return "adresse inconnue chez le destinataire"
    if f.status.startswith("5.7"):
        return ("refusé pour des raisons de sécurité (signature, chiffrement ou domaine non "
                "autorisé)")
    if f.status.startswith("5.4.4"):
        return "domaine du destinataire inconnu de la passerelle"
    if f.action == "delayed" or f.status.startswith("4"):
        return "le serveur du destinataire ne répond pas ou refuse temporairement"
    return "refusé par le serveur du destinataire"


def legacy_notice(original: bytes, *, sender: str, failures: list[Failure], gateway_domain: str,
                  now: datetime, delayed: bool = False, charset: str = "cp1252") -> bytes:
    """A French plain-text letter to a legacy user, in their software's charset with CRLF
    (to be sealed for them)."""
    message_id, date, _ = original_headers(original)
    if delayed:
        opening = ("Votre message n'a pas encore pu être remis. La passerelle continue d'essayer "
                   "et vous préviendra s'il ne peut pas l'être.")
        subject = "Message en attente de remise"
    else:
        opening = "Votre message n'a pas pu être remis aux destinataires suivants :"
        subject = "Message non remis"
    lines = [
        "Bonjour,",
        "",
        f"Message du {date or 'date inconnue'} (référence {message_id or 'inconnue'}).",
        "",
        opening,
        "",
    ]
    for f in failures:
        lines.append(f"  - {f.recipient} : {_why(f)} (code {f.status})")
        detail = " ".join(f.diagnostic.split())[:240]
        if detail and not re.fullmatch(r"[a-z_]+", detail):  # a sentence, not just a kind
            lines.append(f"    motif : {detail}")
    lines += [
        "",
        "Le contenu de votre message n'est pas joint à cet avis, pour la confidentialité des "
        "patients." if not delayed else "",
        "",
        f"La passerelle de messagerie sécurisée ({gateway_domain})",
    ]
    msg = mime.new()
    msg["From"] = f"Passerelle MSSante <postmaster@{gateway_domain}>"
    msg["To"] = sender
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=gateway_domain)
    if message_id:
        msg["In-Reply-To"] = message_id
    body, _ = encode_for("\n".join(lines) + "\n", charset)
    msg.set_content(body, maintype="text", subtype="plain", cte="quoted-printable")
    msg.set_param("charset", mime.MIME_CHARSET.get(charset, charset))
    return msg.as_bytes(policy=mime.WIRE)


def build_dsn(original: bytes, *, sender: str, failures: list[Failure], reporting_mta: str,
              now: datetime) -> bytes:
    """RFC 3464 multipart/report (delivery-status) with the original's headers only."""
    message_id, date, _ = original_headers(original)
    delayed = all(f.action == "delayed" for f in failures)
    report = mime.new()
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = sender
    report["Subject"] = ("Delivery delayed / Remise retardée" if delayed
                         else "Undelivered mail / Message non remis")
    report["Date"] = format_datetime(now)
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    if message_id:
        report["In-Reply-To"] = message_id
    text = [
        "Ceci est un message automatique de la passerelle.",
        f"Message {message_id} du {date} :",
        *[f"  {f.recipient}: {f.action} ({f.status}) {f.diagnostic}" for f in failures],
        "",
        "This is an automatic message from the gateway.",
        "The original message's headers are attached; its content is not.",
    ]
    status_lines = [f"Reporting-MTA: dns; {reporting_mta}",
                    f"Arrival-Date: {format_datetime(now)}", ""]
    for f in failures:
        status_lines += [f"Final-Recipient: rfc822; {f.recipient}", f"Action: {f.action}",
                         f"Status: {f.status}",
                         f"Diagnostic-Code: smtp; {f.diagnostic[:200] or f.status}", ""]
    head = original.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    boundary = make_msgid(domain="report").strip("<>").replace("@", ".")
    human = quopri.encodestring("\n".join(text).encode("utf-8")).replace(b"\n", b"\r\n")
    body = b"\r\n".join([
        b"This is a MIME-encapsulated delivery status report.",
        b"",
        b"--" + boundary.encode(),
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        human,
        b"--" + boundary.encode(),
        b"Content-Type: message/delivery-status",
        b"",
        "\r\n".join(status_lines).encode("ascii", "replace"),
        b"--" + boundary.encode(),
        b"Content-Type: text/rfc822-headers",
        b"",
        head.replace(b"\n", b"\r\n"),
        b"",
        b"--" + boundary.encode() + b"--",
        b"",
    ])
    report["MIME-Version"] = "1.0"
    report["Content-Type"] = (f'multipart/report; report-type=delivery-status; '
                              f'boundary="{boundary}"')
    return bytes(report.as_bytes(policy=mime.WIRE).split(b"\r\n\r\n", 1)[0]
                 + b"\r\n\r\n" + body)


# --- MDN (RFC 8098), as the trust-space spec asks -------------------------------------------

# Error codes of the trust-space MDN (`processed/Error: <code>^<libellé>`); passerelle uses:
MDN_ERRORS = {
    "900": "Erreur de traitement du message par la passerelle",
    "901": "Message non remis au destinataire",
}


def read_dsn(message: bytes) -> tuple[str, list[Failure]] | None:
    """A delivery status notification (RFC 3464) from another MTA: (the Message-ID of the
    message it reports on, one Failure per recipient), or None when it is not a DSN."""
    try:
        msg = mime.parse(message)
    except PasserelleError:
        return None
    if msg.get_content_type() != "multipart/report" or str(msg.get_param(
            "report-type", "")).lower() != "delivery-status":
        return None
    status = next((p for p in msg.walk() if p.get_content_type() == "message/delivery-status"),
                  None)
    if status is None:
        return None
    raw = status.get_payload()
    text = raw if isinstance(raw, str) else "\n".join(
        p.as_string() for p in raw if isinstance(p, Message))
    failures: list[Failure] = []
    for block in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        rcpt = fields.get("final-recipient", fields.get("original-recipient", ""))
        if not rcpt:
            continue
        failures.append(Failure(rcpt.partition(";")[2].strip() or rcpt,
                                fields.get("action", "failed").lower(),
                                fields.get("status", "5.0.0"),
                                fields.get("diagnostic-code", "").partition(";")[2].strip()))
    original = next((p for p in msg.walk() if p.get_content_type() in (
        "text/rfc822-headers", "message/rfc822", "message/rfc822-headers")), None)
    message_id = ""
    if original is not None:
        payload = original.get_payload(decode=True)
        if not isinstance(payload, bytes):
            inner = original.get_payload()
            payload = (inner[0].as_bytes() if isinstance(inner, list) and inner
                       and isinstance(inner[0], Message) else b"")
        message_id = original_headers(payload)[0]
    return message_id, failures


# the field's name anywhere in the text: a header block without it asks for no MDN
_MDN_FIELD = re.compile(rb"disposition-notification-to", re.I)


def mdn_requested(original: bytes, return_path: str) -> str | None:
    """The address to notify, when the original asks for an MDN and that address is the
    Return-Path (an MDN is never sent automatically anywhere else)."""
    if _MDN_FIELD.search(original) is None:  # most mail asks for none: no header parse
        return None
    msg = _head(original)
    if msg is None:
        return None
    value = str(msg.get("Disposition-Notification-To", "") or "")
    addresses = [a for _, a in email.utils.getaddresses([value]) if a]
    if len(addresses) != 1 or not return_path:
        return None
    return addresses[0] if addresses[0].lower() == return_path.strip("<>").lower() else None


def build_mdn(original: bytes, *, notify: str, final_recipient: str, reporting_ua: str,
              now: datetime, error: str | None = None) -> bytes:
    """``multipart/report; report-type=disposition-notification`` for ``notify``."""
    message_id, date, subject = original_headers(original)
    if error is None:
        disposition = "automatic-action/MDN-sent-automatically; processed"
        human = (f"Le message {message_id} du {date} a été remis à {final_recipient} "
                 "(messagerie sécurisée historique) par la passerelle.")
    else:
        disposition = (f"automatic-action/MDN-sent-automatically; processed/Error: "
                       f"{error}^{MDN_ERRORS[error]}")
        human = (f"Le message {message_id} du {date} n'a pas pu être remis à "
                 f"{final_recipient} : {MDN_ERRORS[error]}.")
    fields = [f"Reporting-UA: {reporting_ua}; passerelle",
              f"Original-Recipient: rfc822; {final_recipient}",
              f"Final-Recipient: rfc822; {final_recipient}",
              f"Original-Message-ID: {message_id}",
              f"Disposition: {disposition}"]
    head = original.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    boundary = make_msgid(domain="mdn").strip("<>").replace("@", ".")
    body = b"\r\n".join([
        b"This is a MIME-encapsulated disposition notification.",
        b"",
        b"--" + boundary.encode(),
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        quopri.encodestring(human.encode("utf-8")).replace(b"\n", b"\r\n"),
        b"--" + boundary.encode(),
        b"Content-Type: message/disposition-notification",
        b"",
        "\r\n".join(fields).encode("ascii", "replace"),
        b"",
        b"--" + boundary.encode(),
        b"Content-Type: text/rfc822-headers",
        b"",
        head.replace(b"\n", b"\r\n"),
        b"",
        b"--" + boundary.encode() + b"--",
        b"",
    ])
    report = mime.new()
    report["From"] = final_recipient
    report["To"] = notify
    report["Subject"] = ("Accusé de réception : " if error is None else
                         "Erreur de remise : ") + (subject[:150] if subject else "")
    report["Date"] = format_datetime(now)
    report["Message-ID"] = make_msgid(domain=reporting_ua)
    report["Auto-Submitted"] = "auto-replied"
    if message_id:
        report["In-Reply-To"] = message_id
        report["References"] = message_id
    report["MIME-Version"] = "1.0"
    report["Content-Type"] = (f'multipart/report; report-type=disposition-notification; '
                              f'boundary="{boundary}"')
    return bytes(report.as_bytes(policy=mime.WIRE).split(b"\r\n\r\n", 1)[0]
                 + b"\r\n\r\n" + body)


@dataclass(frozen=True)
class Disposition:
    original_message_id: str
    final_recipient: str
    disposition: str


def read_mdn(message: bytes) -> Disposition | None:
    """The disposition fields of an incoming MDN, or None when the message is not one."""
    msg = email.message_from_bytes(message, policy=email.policy.compat32)
    report_type = msg.get_param("report-type")
    if msg.get_content_type() != "multipart/report" or not isinstance(report_type, str) or (
            report_type.lower() != "disposition-notification"):
        return None
    for part in msg.walk():
        if part.get_content_type() == "message/disposition-notification":
            payload = part.get_payload()
            if isinstance(payload, list):  # parsed as header blocks
                text = "\n".join(str(p) for p in payload)
            else:
                raw = part.get_payload(decode=True)
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            values: dict[str, str] = {}
            for line in text.splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    values[key.strip().lower()] = value.strip()
            return Disposition(values.get("original-message-id", ""),
                               values.get("final-recipient", "").split(";")[-1].strip(),
                               values.get("disposition", ""))
    return None
