"""Notices to senders, in the sender's own network and format (pure: clock passed in).

* a legacy user gets a plain French letter (sealed by the caller with their key);
* a trust-space sender gets an RFC 3464 delivery status notification;
* a trust-space sender who asked for it gets an MDN as the agency's guide writes it.

A notice carries the original's headers only, so no patient data travels back outside the
end-to-end encryption — but an error MDN, which the guide has return the original with its
IHE_XDM.ZIP and PDFs to the trust-space sender who sent them.
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
                  now: datetime, delayed: bool = False, charset: str = "cp1252",
                  unverified: tuple[str, datetime] | None = None) -> bytes:
    """A French plain-text letter to a legacy user, in their software's charset with CRLF
    (to be sealed for them).

    ``unverified`` (our queue id, the time it arrived): the message was refused before its
    sender was verified — anybody may have sent it under the user's address.  The letter
    then quotes nothing it says (no Message-ID, date, subject, recipient's name or reason
    in its words): it names the message by our reference and the time of arrival, the
    recipients by their domain, and says the message was refused as unverified.  A sealed
    letter from the gateway never carries a stranger's text."""
    if unverified is not None:
        return _unverified_notice(sender=sender, failures=failures, queue_id=unverified[0],
                                  arrived=unverified[1], gateway_domain=gateway_domain,
                                  now=now, charset=charset)
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
    msg["MIME-Version"] = "1.0"
    mime.set_text(msg, body, charset=charset)
    return msg.as_bytes(policy=mime.WIRE)


def _unverified_notice(*, sender: str, failures: list[Failure], queue_id: str,
                       arrived: datetime, gateway_domain: str, now: datetime,
                       charset: str) -> bytes:
    domains = sorted({f.recipient.rpartition("@")[2].lower() for f in failures
                      if re.fullmatch(r"[a-z0-9.-]+", f.recipient.rpartition("@")[2].lower())})
    lines = [
        "Bonjour,",
        "",
        f"Un message reçu à votre adresse le {arrived.strftime('%d/%m/%Y à %H:%M')} (UTC), "
        f"référence passerelle {queue_id}, n'a pas été transmis"
        + (f" (destinataires chez : {', '.join(domains)})" if domains else "") + ".",
        "",
        "Il a été refusé avant que son expéditeur ait pu être vérifié (signature, "
        "chiffrement, ou message illisible ou trop volumineux une fois déchiffré) : rien ne "
        "prouve qu'il vienne de vous, et rien de ce qu'il contient n'est repris ici.",
        "Si vous n'avez rien envoyé à ce moment, quelqu'un a peut-être utilisé votre adresse ; "
        "si c'était bien vous, vérifiez que votre logiciel signe et chiffre vos messages, "
        "puis renvoyez-le.",
        "",
        f"La passerelle de messagerie sécurisée ({gateway_domain})",
    ]
    msg = mime.new()
    msg["From"] = f"Passerelle MSSante <postmaster@{gateway_domain}>"
    msg["To"] = sender
    msg["Subject"] = "Message non transmis (expéditeur non vérifié)"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=gateway_domain)
    body, _ = encode_for("\n".join(lines) + "\n", charset)
    msg["MIME-Version"] = "1.0"
    mime.set_text(msg, body, charset=charset)
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

# The acknowledgement error codes of the agency's guide "transmission de documents CDA par
# MSSanté" (its table applicationErrorCondition), with its labels: `processed/Error:
# <code>^<libellé>` in the Disposition field, `[KO Intégration système !][<code>]` at the head of
# the subject.
MDN_ERRORS = {
    "900": "Version du document incorrecte lors d'une demande de remplacement/suppression",
    "901": "Auteur non autorisé à remplacer ou supprimer un document",
    "902": "Identifiant patient inconnu",
    "903": "INS non présent dans le document",
    "904": "L'INS transmis ne correspond pas exactement à celui stocké dans la base du "
           "consommateur",
    "905": "L'INS transmis n'est pas complet",
    "906": "Erreur 'Autre'",
}
ERROR_OTHER = "906"  # what the gateway says when it could not translate a message at all
KO_PREFIX = "[KO Intégration système !]"
XDM_SUBJECT = "XDM/1.0/DDM+"


@dataclass(frozen=True)
class ReceiptDocument:
    """What the subject of a receipt names: the document's title, its patient's birth name,
    first name and date of birth (JJ/MM/AAAA)."""

    title: str = ""
    family: str = ""
    given: str = ""
    birth: str = ""

    def label(self) -> str:
        return " ".join(x for x in (self.title, self.family, self.given, self.birth) if x)


def receipt_document(message: bytes) -> ReceiptDocument | None:
    """The document and patient of a trust-space message's IHE_XDM.ZIP (its first CDA, as
    METADATA.XML and the CDA header say), or None when it has none that can be read."""
    from gateway.documents import cdaread, xdm  # the documents area, only when needed

    try:
        package = next((p for p in mime.leaves(mime.parse(message))
                        if (p.filename or "").upper() == "IHE_XDM.ZIP"), None)
        if package is None:
            return None
        first = xdm.unpack(package.data).documents[0]
        header, title = cdaread.read_header(first.xml)
    except (PasserelleError, IndexError):
        return None
    return ReceiptDocument(first.facts.get("title") or title, header.last_name,
                           header.first_name, header.birth_date)


def receipt_subject(original_subject: str, document: ReceiptDocument | None,
                    error: str | None) -> str:
    """`XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>`, after
    `[KO Intégration système !][<code>] ` for an error (the guide's subject format)."""
    if document is not None and document.label():
        base = XDM_SUBJECT + document.label()
    elif original_subject.startswith(XDM_SUBJECT):
        base = original_subject
    else:
        base = XDM_SUBJECT + original_subject
    base = " ".join(base.split())[:200]
    return f"{KO_PREFIX}[{error}] {base}" if error else base


def _returned(original: bytes) -> list[EmailMessage]:
    """The original's IHE_XDM.ZIP and PDFs, as the guide has an error receipt return them."""
    try:
        parts = mime.leaves(mime.parse(original))
    except PasserelleError:
        return []
    out = []
    for p in parts:
        name = p.filename or ""
        if name.upper() == "IHE_XDM.ZIP" or name.lower().endswith(".pdf"):
            kind = "application/zip" if name.upper().endswith(".ZIP") else "application/pdf"
            out.append(mime.attachment_part(p.data, content_type=kind, filename=name))
    return out


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
              now: datetime, error: str | None = None, returned: bytes | None = None,
              document: ReceiptDocument | None = None) -> bytes:
    """``multipart/report; report-type=disposition-notification`` for ``notify``, as the
    agency's guide writes it: the subject names the document and its patient, an error
    carries its code and label (900-906, ``MDN_ERRORS``) in the text, the Disposition field
    and the subject.  ``original`` is the header block at least; ``returned``, the whole
    original message, is given back with an error receipt (third part ``message/rfc822``,
    then its IHE_XDM.ZIP and PDFs), as the guide asks; without it only the headers are."""
    if error is not None and error not in MDN_ERRORS:
        raise ValueError(f"MDN error code {error!r} is not one of the guide's (900-906)")
    message_id, date, subject = original_headers(original)
    if document is None and returned is not None:
        document = receipt_document(returned)
    if error is None:
        disposition = "automatic-action/MDN-sent-automatically; processed"
        human = (f"Le message {message_id} du {date} a été remis à {final_recipient} "
                 "(messagerie sécurisée historique) par la passerelle.")
    else:
        label = MDN_ERRORS[error]
        disposition = (f"automatic-action/MDN-sent-automatically; processed/Error: "
                       f"{error}^{label}")
        human = (f"Le message ci-dessous ({message_id} du {date}) n'a pas pu être intégré "
                 f"automatiquement pour {final_recipient} pour la raison suivante : {label}.\n"
                 f"Le système a retourné l'erreur {error}^{label}.")
    fields = [f"Reporting-UA: {reporting_ua}; passerelle",
              f"Original-Recipient: rfc822; {final_recipient}",
              f"Final-Recipient: rfc822; {final_recipient}",
              f"Original-Message-ID: {message_id}",
              f"Disposition: {disposition}"]
    head = original.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    boundary = make_msgid(domain="mdn").strip("<>").replace("@", ".")
    if error is not None and returned is not None:
        third = [b"Content-Type: message/rfc822", b"", returned.rstrip(b"\r\n")]
        extra = _returned(returned)
    else:
        third = [b"Content-Type: text/rfc822-headers", b"", head.replace(b"\n", b"\r\n"), b""]
        extra = []
    chunks = [
        b"This is a MIME-encapsulated disposition notification.",
        b"",
        b"--" + boundary.encode(),
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        quopri.encodestring(human.encode("utf-8")).replace(b"\n", b"\r\n"),
        b"--" + boundary.encode(),
        b"Content-Type: message/disposition-notification",
        b"Content-Transfer-Encoding: 8bit",
        b"",
        "\r\n".join(fields).encode("utf-8"),
        b"",
        b"--" + boundary.encode(),
        *third,
    ]
    for part in extra:
        chunks += [b"--" + boundary.encode(), part.as_bytes(policy=mime.WIRE).rstrip(b"\r\n")]
    chunks += [b"--" + boundary.encode() + b"--", b""]
    body = b"\r\n".join(chunks)
    report = mime.new()
    report["From"] = final_recipient
    report["To"] = notify
    report["Subject"] = receipt_subject(subject, document, error)
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


def _utf8(value: str) -> str:
    """A header value the compat32 parser kept with surrogate escapes, as UTF-8 text."""
    try:
        return value.encode("latin-1", "surrogateescape").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value  # already text


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
                # the values as written: an 8-bit (UTF-8) label kept as its letters
                text = "\n".join(
                    f"{k}: {_utf8(str(v))}" for p in payload if isinstance(p, Message)
                    for k, v in p.raw_items())
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
