"""Legacy → trust: a decrypted legacy message becomes a trust-space message (before signing).

open (by the crypto adapter) → text repair with the sender's charset hint → HPRIM detection →
CR-BIO in IHE_XDM.ZIP + PDF per report → a UTF-8 MIME message with rewritten addresses, the
gateway's note and the trace part.  Signing is the caller's last step (see ``pipeline``).
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cached_property
from typing import Any

from gateway.directory.addresses import AddressBook, LegacyUser, rewrite_header
from gateway.documents import cda, hprim, pdf, xdm
from gateway.documents.codes import CodeTables
from gateway.documents.model import HprimDocument
from gateway.errors import DocumentError, PolicyError, TranslationError
from gateway.mail import mime
from gateway.mail.handover import Handover
from gateway.text import TextResult, normalize
from gateway.translate import senders
from gateway.translate.strings import StringRepairs
from gateway.translate.trace import TRACE_FILENAME, TraceRecord, sha256

SUBJECT_LABEL = "CR d'examens biologiques"
CODE_CDA = "11502-2"
HPRIM_SUFFIXES = (".hpr", ".hpm", ".hprim", ".txt", ".hp")


@dataclass
class TrustDraft:
    """What this stage produces: the unsigned message and what it did (for the demo table).
    The message is ``handed`` in pieces to the next stage, or read whole as ``message``."""

    handed: Handover
    repairs: int = 0
    encoding: str = ""
    documents: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @cached_property
    def message(self) -> bytes:
        return self.handed.take()


def _ascii_upper(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def subject_for(doc: HprimDocument) -> str:
    """``XDM/1.0/DDM+<libellé> <NOM> <prénom> <JJ/MM/AAAA>`` (trust-space convention)."""
    h = doc.header
    parts = [f"XDM/1.0/DDM+{SUBJECT_LABEL[:40]}", _ascii_upper(h.last_name), h.first_name]
    if h.birth is not None:
        parts.append(h.birth.strftime("%d/%m/%Y"))
    return " ".join(p for p in parts if p)


UNSIGNED_LINE = ("Message non signé par son auteur (logiciel de première génération) : "
                 "expéditeur attesté par le concentrateur de la messagerie historique.")
"""The trailer line of a first-generation client's message (the trace says the same)."""

LEGACY_SIGNATURE_HEADER = "X-Passerelle-Legacy-Signature"


def _note(signer: str, text: TextResult, docs: int, *, unsigned: bool = False) -> str:
    fixes = len([r for r in text.repairs if r.kind not in ("line_ends", "bom")])
    parts = [
        "Message transmis par la passerelle depuis la messagerie sécurisée historique.",
        UNSIGNED_LINE if unsigned else f"Signature de l'expéditeur vérifiée (clé {signer[-16:]}).",
        f"Texte lu en {text.encoding}"
        + (f", {fixes} correction(s) d'encodage." if fixes else ", sans correction."),
    ]
    if docs:
        parts.append(f"{docs} compte(s) rendu(s) HPRIM converti(s) en CDA (IHE_XDM.ZIP) et PDF.")
    return "\n".join(parts)


def document_id(message_id: str, n: int) -> str:
    """The CDA id of document `n` of a message: a UUID-derived OID (2.25, ITU-T X.667),
    the same every time this message is translated; set id and XDM uniqueId alike."""
    key = f"urn:passerelle:document:{message_id.strip()}/{n}"
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, key).int}"


def _documents(text: str, *, tables: CodeTables, now: datetime, sender: LegacyUser,
               message_id: str, strings: StringRepairs | None = None
               ) -> tuple[bytes | None, list[tuple[str, bytes]], HprimDocument | None,
                          dict[str, Any]]:
    """HPRIM reports → (XDM zip, PDFs, first document, trace details).  The lab is the
    signer's row of labs.csv (UnknownLab, quarantined, without one); the name lines of each
    header are read again as short strings (``strings`` records what that did)."""
    if not hprim.looks_like_hprim(text):
        return None, [], None, {}
    parsed = hprim.parse(text)
    if not parsed.documents:
        return None, [], None, {"findings": [str(f) for f in parsed.findings]}
    lab = tables.labs.for_sender(sender.legacy_address)
    strings = strings if strings is not None else StringRepairs(hint=sender.charset)
    documents = hprim.repair_headers(parsed.documents, strings.text)
    cdas: list[xdm.XdmDocument] = []
    pdfs: list[tuple[str, bytes]] = []
    findings = [str(f) for f in parsed.findings]
    results = 0
    levels: list[int] = []
    ids: list[str] = []
    for n, doc in enumerate(documents, start=1):
        rendition = pdf.render(doc)
        doc_id = document_id(message_id, n)
        ids.append(doc_id)
        if doc.results:
            built = cda.build_crbio(doc, tables=tables, document_id=doc_id, effective_time=now,
                                    lab=lab, pdf_copy=rendition)
            results += len(doc.results)
            levels.append(3)
        else:
            built = cda.build_level1(doc, rendition, tables=tables, document_id=doc_id,
                                     effective_time=now, lab=lab)
            levels.append(1)
        findings.extend(str(f) for f in built.findings)
        cdas.append(xdm.XdmDocument(built.xml, facts=built.facts))
        pdfs.append((f"CR{n:04d}.PDF", rendition))
    package = xdm.pack(cdas, submission_time=now,
                       sender=xdm.XdmSender(name=sender.display_name,
                                            address=sender.trust_address))
    details = {"documents": len(cdas), "levels": levels, "results": results,
               "document_ids": ids, "lab_finess": lab.finess,
               "findings": findings, "xdm_sha256": sha256(package)}
    return package, pdfs, documents[0], details


def compose(decrypted: bytes | Handover, *, sender: LegacyUser, book: AddressBook,
            envelope_from: str, tables: CodeTables, now: datetime, trace: TraceRecord,
            signer_fpr: str, domain: str, aliases: dict[str, tuple[str, str]] | None = None,
            unsigned: bool = False) -> TrustDraft:
    """Build the unsigned trust-space message from a decrypted legacy message (a handover
    is let go once parsed).  ``unsigned``: a first-generation client's message, whose parts
    nobody signed (the sender is the hub's word): the header and the trailer line say so."""
    out, draft = _build(decrypted, sender=sender, book=book, envelope_from=envelope_from,
                        tables=tables, now=now, trace=trace, signer_fpr=signer_fpr,
                        domain=domain, aliases=aliases, unsigned=unsigned)
    # written once the parsed original is gone (its attachments' text is shared with the
    # new message's), each part let go as it is written
    draft.handed = mime.to_handover(out)
    return draft


def _from_is(value: str, address: str) -> bool:
    """Whether the ``From`` ``value`` is exactly one mailbox, ``address`` (parsed as an
    address field, never searched as text)."""
    try:
        return senders.same_address(senders.from_value(value), address)
    except PolicyError:
        return False


def _build(decrypted: bytes | Handover, *, sender: LegacyUser, book: AddressBook,
           envelope_from: str, tables: CodeTables, now: datetime, trace: TraceRecord,
           signer_fpr: str, domain: str, aliases: dict[str, tuple[str, str]] | None,
           unsigned: bool = False) -> tuple[EmailMessage, TrustDraft]:
    digest = decrypted.digest() if isinstance(decrypted, Handover) else sha256(decrypted)
    inner = mime.parse(decrypted)
    del decrypted
    parts = mime.leaves(inner)
    body_part = next((p for p in parts if p.content_type == "text/plain"
                      and not p.is_attachment), None)
    body_bytes = body_part.data if body_part is not None else b""
    text = normalize(body_bytes, hint=sender.charset)
    # no text part: the step read nothing (and wrote the empty letter)
    trace.add("repair", now, body_bytes if body_part is not None else None,
              text.text.encode("utf-8"), **text.summary(),
              changes=[{"kind": r.kind, "line": r.line, "column": r.column,
                        "before": r.before, "after": r.after} for r in text.repairs[:200]])

    message_key = digest[:32]
    # documents are named after the message (its Message-ID, else its digest): the same
    # ids however often it is translated (a retry, a release from quarantine)
    message_id = mime.header(inner, "Message-ID") or digest
    strings = StringRepairs(hint=sender.charset)
    try:
        package, pdfs, first_doc, doc_details = _documents(
            text.text, tables=tables, now=now, sender=sender, message_id=message_id,
            strings=strings)
    except DocumentError as exc:
        raise TranslationError(f"HPRIM report cannot be converted: {exc}") from None
    # a letter without a report: the step read the text and produced nothing
    trace.add("documents", now, text.text.encode("utf-8"), package,
              **(doc_details or {"documents": 0}))

    out = mime.new()
    mapper = {u.legacy_address: (u.display_name, u.trust_address) for u in book.users()}
    mapper.update(aliases or {})  # directory aliases: the mailbox they resolved to
    mapped: list[str] = []
    from_value, done = rewrite_header(mime.header(inner, "From") or envelope_from, mapper)
    if not _from_is(from_value, sender.trust_address):
        # The signer is the envelope sender: a From that says otherwise (another address,
        # the signer's only in the display name, a group, two mailboxes) is corrected (KIM).
        from_value, done = rewrite_header(sender.legacy_address, mapper)
        mapped.append("From corrected to the signer")
    mapped.extend(done)
    out["From"] = from_value
    for name in ("To", "Cc"):
        value = strings.address_list(mime.header(inner, name), name)
        if value:
            new, done = rewrite_header(value, mapper)
            out[name] = new
            mapped.extend(done)
    # who else answers for the sender (docs/security.md, "Reply-To, Sender,
    # Disposition-Notification-To"): Reply-To, which the signer wrote and signed, is kept
    # when it reads as addresses; Sender and Disposition-Notification-To only when they
    # name the signer; anything else removed, and the removal recorded in the trace
    for name in ("Reply-To", "Sender", "Disposition-Notification-To"):
        value = strings.address_list(mime.header(inner, name), name)
        if not value:
            continue
        found = senders.field_addresses(name, value)
        keep = bool(found) and (name == "Reply-To" or all(
            senders.same_address(a, sender.legacy_address) for a in found or ()))
        if not keep:
            mapped.append(f"{name} removed: not the sender's own")
            continue
        new, done = rewrite_header(value, mapper)
        out[name] = new
        mapped.extend(done)
    subject = subject_for(first_doc) if first_doc is not None else (
        strings.text(mime.header(inner, "Subject"), "Subject"))
    out["Subject"] = subject
    out["Date"] = mime.header(inner, "Date") or format_datetime(now)
    out["Message-ID"] = mime.header(inner, "Message-ID") or make_msgid(
        idstring=message_key[:16], domain=domain)
    for name in ("In-Reply-To", "References"):
        value = mime.header(inner, name)
        if value:
            out[name] = value
    if package is not None:
        # what receiving software reads before opening the XDM: the document type, and that
        # no INS identifies the patient (an HPRIM report cannot establish a qualified
        # identity); no other patient identity in headers
        out["X-MSS-CODECDA"] = CODE_CDA
        out["X-MSS-INS"] = "N"
    if unsigned:
        out["X-Passerelle-Checked"] = "legacy-signature=none; asserted-by=hub"
        out[LEGACY_SIGNATURE_HEADER] = "none; asserted-by=hub"
    else:
        out["X-Passerelle-Checked"] = f"legacy-signature=verified; signer={signer_fpr}"
        out[LEGACY_SIGNATURE_HEADER] = f"verified; signer={signer_fpr}"
    out.make_mixed()

    docs = doc_details.get("documents", 0)
    body = text.text + "\n-- \n" + _note(signer_fpr, text, docs, unsigned=unsigned) + "\n"
    out.attach(mime.text_part(body))
    if package is not None:
        out.attach(mime.attachment_part(package, content_type="application/zip",
                                        filename="IHE_XDM.ZIP"))
        for name, data in pdfs:
            out.attach(mime.attachment_part(data, content_type="application/pdf",
                                            filename=name))
    for p in parts:
        if p is body_part:
            continue
        out.attach(mime.copy_attachment(p, content_type=p.content_type,
                                        filename=strings.file_name(p.filename)
                                        or "piece-jointe.bin"))
    # its output is the message this record is attached to: settled by the pipeline
    trace.add_digests("compose", now, digest, None, mappings=mapped,
                      attachments=len(parts) - (1 if body_part is not None else 0),
                      strings=strings.entries)
    out.attach(mime.attachment_part(trace.to_bytes(), content_type="application/json",
                                    filename=TRACE_FILENAME))
    return out, TrustDraft(
        handed=Handover([]),  # written by compose
        repairs=len([r for r in text.repairs if r.kind not in ("line_ends", "bom")]),
        encoding=text.encoding,
        documents=(["IHE_XDM.ZIP", *[n for n, _ in pdfs]] if package is not None else []),
        findings=list(doc_details.get("findings", [])),
    )
