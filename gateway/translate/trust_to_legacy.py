"""Trust → legacy: a (verified) trust-space message becomes what legacy software integrates.

XDM unpacked and verified → each CR-BIO back to HPRIM Net (identity header, free text, LAB
block; the recipient's HPRIM code on line 12) → body in the recipient's charset with CRLF;
every file the CDAs carry (level-1 PDFs, the PDF copy of a structured report, images) and the
message's other attachments passed on.  Sealing is the caller's last step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid
from functools import cached_property
from typing import Any

from gateway.directory.addresses import AddressBook, LegacyUser, rewrite_header
from gateway.documents import cda, hprim, xdm
from gateway.documents.model import HprimDocument, HprimFile
from gateway.errors import DocumentError, PolicyError, TranslationError
from gateway.mail import mime
from gateway.mail.handover import Handover
from gateway.text.encode import encode_for, encode_noting
from gateway.text.transliterate import note, transliterate
from gateway.translate import senders
from gateway.translate.notices import read_mdn
from gateway.translate.strings import StringRepairs
from gateway.translate.trace import TraceRecord, sha256


@dataclass
class LegacyDraft:
    """The plaintext legacy message for one recipient, ``handed`` in pieces to ``seal``
    (which lets each go as it reads it), or read whole as ``message``."""

    handed: Handover
    recipient: LegacyUser
    documents: list[str] = field(default_factory=list)
    replaced: int = 0

    @cached_property
    def message(self) -> bytes:
        return self.handed.take()


def _replacements(text: str, charset: str) -> dict[str, str]:
    return transliterate(text, charset)[1]


def _hprim_from_xdm(package: bytes, recipient: LegacyUser, strings: StringRepairs
                    ) -> tuple[str | None, list[tuple[str, str, bytes]], dict[str, Any]]:
    try:
        unpacked = xdm.unpack(package)
    except DocumentError:
        raise
    documents: list[HprimDocument] = []
    pdfs: list[tuple[str, str, bytes]] = []
    findings = [str(f) for f in unpacked.findings]
    text_only = 0
    for n, entry in enumerate(unpacked.documents, start=1):
        content = cda.read_cda(entry.xml, root=entry.root)  # parsed once, by the unpacking
        _same_patient(entry, content.document)
        findings.extend(str(f) for f in content.findings)
        text_only += content.text_only
        # every file the CDA carries reaches the clinician: the level-1 PDF, the PDF copy of
        # a structured report, its images
        if content.pdf is not None:
            pdfs.append((f"CR{n:04d}.PDF", "application/pdf", content.pdf))
        else:
            pdfs.extend((f"CR{n:04d}-{k}.{a.extension}", a.media_type, a.data)
                        for k, a in enumerate(content.attachments, start=1))
        doc = content.document
        header = dataclasses.replace(doc.header, recipient_code=recipient.hprim_code,
                                     recipient_name=recipient.legacy_address.split("@")[0])
        documents.append(dataclasses.replace(doc, header=header))
    documents = hprim.repair_headers(documents, strings.text)
    text = hprim.write(HprimFile(documents=documents, ended=True), newline="\n") if (
        documents) else None
    for k, other in enumerate(unpacked.others, start=1):
        # a file the package lists beside its CDAs (a PDF rendition)
        pdfs.append((f"DOC{k:04d}.{other.extension}", other.media_type, other.data))
    return text, pdfs, {"documents": len(documents), "findings": findings,
                        "attachments": len(pdfs), "text_only": text_only,
                        "xdm_sha256": sha256(package)}


def _same_patient(entry: xdm.XdmEntry, doc: HprimDocument) -> None:
    """METADATA.XML and the CDA must name one patient: a report filed under another
    patient's name is refused (DocumentError), never delivered."""
    said = entry.facts.get("patient_name", "").casefold()
    family = doc.header.last_name.casefold()
    birth = entry.facts.get("birth_date", "")
    cda_birth = doc.header.birth.strftime("%Y%m%d") if doc.header.birth else ""
    if (said and family and family not in said) or (birth and cda_birth and
                                                    birth[:8] != cda_birth):
        raise DocumentError(f"xdm: {entry.path}: METADATA.XML names another patient than "
                            "the CDA")


def _may_be_report(msg: Message) -> bool:
    """Whether ``read_mdn`` can find a receipt: its test, on the top Content-Type, is an
    exact ``multipart/report`` (any case), so a field without those letters never is."""
    return any(name.lower() == "content-type" and "multipart/report" in str(value).lower()
               for name, value in msg.raw_items())


def compose(content: bytes | Handover, *, recipient: LegacyUser, book: AddressBook,
            now: datetime, trace: TraceRecord, domain: str) -> LegacyDraft:
    """Build the plaintext legacy message for one recipient (sealed by the caller); a
    handover is let go as it is parsed."""
    out, draft = _build(content, recipient=recipient, book=book, now=now, trace=trace,
                        domain=domain)
    # written once the parsed original is gone (its attachments' text is shared with the
    # new message's), each part let go as it is written, in pieces that seal lets go in turn
    # (a small one handed as read too: seal parses it again)
    draft.handed = mime.to_handover(out, reread=True)
    return draft


def _build(content: bytes | Handover, *, recipient: LegacyUser, book: AddressBook,
           now: datetime, trace: TraceRecord, domain: str) -> tuple[EmailMessage, LegacyDraft]:
    if isinstance(content, Handover) and b"multipart/report" in content.head().lower():
        # may be a receipt, which read_mdn reads whole (a small message): as bytes, then
        content = content.take()
    digest = content.digest() if isinstance(content, Handover) else sha256(content)
    msg = mime.parse(content)  # a handover is let go as it is read
    parts = mime.leaves(msg)
    text_part = next((p for p in parts if p.content_type == "text/plain"
                      and not p.is_attachment), None)
    human = ""
    if text_part is not None:
        try:
            human = text_part.data.decode(text_part.charset or "utf-8")
        except (LookupError, ValueError):  # unknown, undecodable, or a NUL in its name
            raise TranslationError("text part is not in the charset it declares") from None
    # read_mdn parses the whole message again (some six times its size at the peak): only
    # for a message that can be a receipt, which it looks for at the top
    # (a handover's head does not name multipart/report: its top Content-Type cannot either)
    mdn = read_mdn(content) if isinstance(content, bytes) and _may_be_report(msg) else None
    if mdn is not None:
        # A read/processing receipt: legacy software shows it as a short letter.
        state = "traité" if "error" not in mdn.disposition.lower() else "en erreur"
        human = (f"Accusé de réception : votre message {mdn.original_message_id} a été "
                 f"{state} chez {mdn.final_recipient}.\n({mdn.disposition})\n")
        parts = []
        text_part = None
    strings = StringRepairs()  # the trust space writes UTF-8: no charset to hint
    package = next((p for p in parts if (p.filename or "").upper() == "IHE_XDM.ZIP"), None)
    pdfs: list[tuple[str, str, bytes]] = []
    details: dict[str, Any] = {}
    body_text = human
    extra: list[tuple[str, str, bytes]] = []
    if package is not None:
        try:
            report, pdfs, details = _hprim_from_xdm(package.data, recipient, strings)
        except DocumentError as exc:
            raise TranslationError(f"IHE_XDM.ZIP cannot be read: {exc}") from None
        if report is not None:
            body_text = report
            if human.strip():
                extra.append(("MESSAGE.TXT", "text/plain", b""))
    # the XDM package read, or (none) the letter's own text: what the body is made of
    trace.add("documents", now,
              package.data if package else human.encode("utf-8") if human else None,
              body_text.encode("utf-8"), **(details or {"documents": 0}))
    carried = _replacements(body_text + human, recipient.charset)
    if carried and package is None:
        # the reader is told, at the end of the letter, what could not be carried
        body_text = body_text.rstrip("\n") + "\n\n" + note(carried) + "\n"
    elif carried:
        # an HPRIM report is read by software to its end marker: the note travels beside it
        extra.append(("NOTE.TXT", "text/plain", b""))
    body, counts = encode_noting(body_text, recipient.charset)
    replaced = sum(counts.values())

    out = mime.new()
    mapper = {u.trust_address.lower(): (u.display_name, u.legacy_address) for u in book.users()}
    mapped: list[str] = []
    out["From"] = strings.address_list(mime.header(msg, "From"), "From")
    to_value, done = rewrite_header(
        strings.address_list(mime.header(msg, "To"), "To") or recipient.trust_address, mapper)
    out["To"] = to_value
    mapped.extend(done)
    cc = strings.address_list(mime.header(msg, "Cc"), "Cc")
    if cc:
        new, done = rewrite_header(cc, mapper)
        out["Cc"] = new
        mapped.extend(done)
    reply_to = strings.address_list(mime.header(msg, "Reply-To"), "Reply-To")
    if reply_to:
        # kept only within the domain of the From, which the listener bound to the
        # operator's certificate (docs/security.md); else removed, and that recorded
        found = senders.field_addresses("Reply-To", reply_to)
        try:
            home = senders.domain_part(senders.from_value(str(out["From"])))
        except PolicyError:
            home = ""
        if found and home and senders.within(found, [home]):
            new, done = rewrite_header(reply_to, mapper)
            out["Reply-To"] = new
            mapped.extend(done)
        else:
            mapped.append("Reply-To removed: outside the sender's domain")
    out["Subject"] = strings.text(mime.header(msg, "Subject"), "Subject")
    out["Date"] = mime.header(msg, "Date") or format_datetime(now)
    out["Message-ID"] = mime.header(msg, "Message-ID") or make_msgid(
        idstring=digest[:16], domain=domain)
    for name in ("In-Reply-To", "References"):
        value = mime.header(msg, name)
        if value:
            out[name] = value
    out["X-Passerelle-Trace"] = trace.message_id
    out["MIME-Version"] = "1.0"
    out.make_mixed()
    body_part = mime.new()
    mime.set_text(body_part, body, charset=recipient.charset)
    out.attach(body_part)
    for name, _, _ in extra:
        written = human if name == "MESSAGE.TXT" else note(carried) + "\n"
        human_bytes, more = encode_for(written, recipient.charset)
        replaced += more
        part = mime.new()
        mime.set_text(part, human_bytes, charset=recipient.charset, disposition="attachment",
                      filename=name)
        out.attach(part)
    for name, media_type, data in pdfs:
        out.attach(mime.attachment_part(data, content_type=media_type, filename=name))
    for p in parts:
        if p is text_part or p is package or (p.filename or "") == "passerelle-trace.json":
            continue
        out.attach(mime.copy_attachment(p, content_type=p.content_type,
                                        filename=strings.file_name(p.filename)
                                        or "piece-jointe.bin"))
    # its output (the letter, written by compose once built): settled by the pipeline
    trace.add_digests("compose", now, digest, None, mappings=mapped,
                      charset=recipient.charset, replaced_characters=replaced,
                      transliterated=counts, strings=strings.entries)
    names = (["HPRIM"] if package is not None else []) + [n for n, _, _ in pdfs]
    return out, LegacyDraft(handed=Handover([]), recipient=recipient, documents=names,
                            replaced=replaced)
