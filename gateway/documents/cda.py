"""CDA R2 documents of the trust space: CR-BIO (level 3) built from HPRIM, and level 1 (PDF).

Structure and identifiers: the ANS CI-SIS CR-BIO volume and its examples.  Every RES field is
kept exactly in the narrative table (which a human reads) and carried in structured form (which
software reads): LOINC code with the lab's own code as `translation`, PQ with the lab's own
unit as `translation`, reference ranges, interpretation and status.  Readers live in `cdaread`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from gateway.documents import narrative
from gateway.documents.cdaconst import (
    CHAPTER_TEMPLATES,
    CONFIDENTIALITY,
    CRBIO_CODE,
    DOC_TEMPLATES,
    ENTRY_TEMPLATES,
    FLAG_DISPLAY,
    GENDER,
    INS_NIR,
    INTERPRETATION,
    LEGACY_ROOT,
    LEVEL1_TEMPLATES,
    LOCAL_LAB_CODES,
    LOCAL_UNITS,
    LOINC,
    NSMAP,
    OBS_TEMPLATES,
    ORDER_ROOT,
    ORG_ROOT,
    RPPS_ROOT,
    STATUS_TO_ACT,
    SUBSECTION_TEMPLATES,
)
from gateway.documents.codes import CHAPTERS, FALLBACK_CHAPTER, CodeTables
from gateway.documents.hprim import NIR, NUMBER
from gateway.documents.model import Finding, HprimDocument, HprimHeader, LabLine, ResLine
from gateway.documents.narrative import attr, el, text
from gateway.errors import DocumentError, TranslationError

__all__ = [
    "Author",
    "CdaContent",
    "CdaFacts",
    "CdaResult",
    "Organisation",
    "build_crbio",
    "build_level1",
    "read_cda",
    "read_crbio",
]


@dataclass(frozen=True)
class Author:
    """The responsible biologist, when the address book knows them (RPPS number)."""

    rpps: str
    family: str = ""
    given: str = ""


@dataclass(frozen=True)
class Organisation:
    """An organisation: `id_extension` is "<type digit><FINESS or SIRET>"."""

    id_extension: str
    name: str = ""


@dataclass(frozen=True)
class CdaFacts:
    """What the XDM metadata says of a CDA, as the builder wrote it into the XML: the values
    `xdm.pack` otherwise reads back from it (one parse and some twenty XPaths a document).
    Strings as in the XML; "" for an absent or null-flavoured value."""

    id_root: str
    id_extension: str
    patient_legacy_id: str | None  # recordTarget id under LEGACY_ROOT; None: no such id
    patient_ins: str  # recordTarget id under INS_NIR
    family: str
    given: str
    birth_time: str
    gender: str
    level1: bool  # XDS-SD (PDF) template
    effective_time: str
    service_time: str  # documentationOf/serviceEvent/effectiveTime
    title: str
    author_rpps: str  # assignedAuthor id under RPPS_ROOT
    author_family: str
    author_given: str
    organisation: str  # assignedAuthor/representedOrganization/name
    author_code: str  # assignedAuthor id under LEGACY_ROOT


@dataclass(frozen=True)
class CdaResult:
    xml: bytes
    findings: list[Finding] = field(default_factory=list)
    facts: CdaFacts | None = field(default=None, kw_only=True)


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise DocumentError("effective_time must carry a time zone")
    return when.strftime("%Y%m%d%H%M%S%z")


_CRBIO_TITLE = "Compte rendu d'examens biologiques"
_XML_HEAD = "<?xml version='1.0' encoding='UTF-8'?>\n"
_OPEN = '<ClinicalDocument xmlns="%s" xmlns:xsi="%s">' % (NSMAP[None], NSMAP["xsi"])  # noqa: UP031
_T = "xsi:type"  # the root declares the xsi prefix (cdaconst.NSMAP)


def _root(
    document_id: str,
    when: datetime,
    title: str,
    templates: tuple[str, ...],
    set_id: str | None,
    version: int,
) -> list[str]:
    return [
        _XML_HEAD,
        _OPEN,
        '<realmCode code="FR"/><typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>',
        *(el("templateId", root=t) for t in templates),
        el("id", root=document_id),
        el("code", code=CRBIO_CODE[0], codeSystem=LOINC, displayName=CRBIO_CODE[1]),
        el("title", title),
        el("effectiveTime", value=_ts(when)),
        el("confidentialityCode", code="N", codeSystem=CONFIDENTIALITY),
        '<languageCode code="fr-FR"/>',
        el("setId", root=set_id or document_id),
        el("versionNumber", value=str(version)),
    ]


def _facts(
    h: HprimHeader,
    *,
    document_id: str,
    when: datetime,
    title: str,
    templates: tuple[str, ...],
    author: Author | None,
) -> CdaFacts:
    """The facts `_root` and `_header` write for these arguments (the same expressions)."""
    nir = h.nir.strip()
    nir_ok = bool(nir and NIR.fullmatch(nir))
    sex = {"1": "M", "2": "F"}.get(nir[:1]) if nir_ok else None
    return CdaFacts(
        id_root=document_id,
        id_extension="",
        patient_legacy_id=h.patient_code or None,
        patient_ins=nir.replace(" ", "") if nir_ok else "",
        family=h.last_name,
        given=h.first_name,
        birth_time=h.birth.strftime("%Y%m%d") if h.birth else "",
        gender=sex or "",
        level1="1.3.6.1.4.1.19376.1.2.20" in templates,
        effective_time=_ts(when),
        service_time=h.exam.strftime("%Y%m%d") if h.exam else "",
        title=title,
        author_rpps=f"8{author.rpps}" if author else "",
        author_family=author.family if author else "",
        author_given=author.given if author else "",
        organisation=h.sender_name,
        author_code=h.sender_code or "UNK",
    )


def _header(
    out_xml: list[str],
    h: HprimHeader,
    when: datetime,
    author: Author | None,
    org: Organisation | None,
    out: list[Finding],
) -> None:
    w = out_xml.append
    w("<recordTarget><patientRole>")
    if h.patient_code:
        w(el("id", root=LEGACY_ROOT, extension=h.patient_code))
    nir = h.nir.strip()
    nir_ok = bool(nir and NIR.fullmatch(nir))
    if nir_ok:
        w(el("id", root=INS_NIR, extension=nir.replace(" ", "")))
    elif nir:
        out.append(Finding("nir", "nir not carried: not in the 13+2 layout"))
    if not h.patient_code and not nir_ok:
        w('<id nullFlavor="UNK"/>')
    lines = [el("streetAddressLine", x) for x in (h.address1, h.address2) if x.strip()]
    if h.postcode:
        lines.append(el("postalCode", h.postcode))
    if h.city:
        lines.append(el("city", h.city))
    w("<addr>" + "".join(lines) + "</addr>" if lines else "<addr/>")
    w(f'<patient><name>{el("given", h.first_name)}')
    w(el("family", h.last_name, qualifier="BR") + "</name>")
    sex = {"1": "M", "2": "F"}.get(nir[:1]) if nir_ok else None
    if sex:
        w(f'<administrativeGenderCode code="{sex}" codeSystem="{GENDER}"/>')
    else:
        w('<administrativeGenderCode nullFlavor="UNK"/>')
    if h.birth:
        w(f'<birthTime value="{h.birth.strftime("%Y%m%d")}"/>')
    else:
        w('<birthTime nullFlavor="UNK"/>')
        out.append(Finding("birth-date", "birth_date not readable: sent as unknown"))
    w("</patient></patientRole></recordTarget>")

    w(f"<author>{el('time', value=_ts(when))}<assignedAuthor>")
    if author:
        w(el("id", root=RPPS_ROOT, extension=f"8{author.rpps}"))
    w(el("id", root=LEGACY_ROOT, extension=h.sender_code or "UNK"))
    if author:
        names = (el("given", author.given) if author.given else "") + (
            el("family", author.family) if author.family else ""
        )
        w(f"<assignedPerson><name>{names}</name></assignedPerson>" if names
          else "<assignedPerson><name/></assignedPerson>")
    w("<representedOrganization>")
    if org:
        w(el("id", root=ORG_ROOT, extension=org.id_extension))
    w(el("name", h.sender_name) + "</representedOrganization></assignedAuthor></author>")

    w("<custodian><assignedCustodian><representedCustodianOrganization>")
    if org:
        w(el("id", root=ORG_ROOT, extension=org.id_extension))
    else:
        w(el("id", root=LEGACY_ROOT, extension=h.sender_code or "UNK"))
    w(el("name", org.name if org and org.name else h.sender_name))
    w("</representedCustodianOrganization></assignedCustodian></custodian>")

    w("<informationRecipient><intendedRecipient>")
    w(el("id", root=LEGACY_ROOT, extension=h.recipient_code or "UNK"))
    w(f"<informationRecipient>{el('name', h.recipient_name)}</informationRecipient>")
    w("</intendedRecipient></informationRecipient>")

    if h.lab_ref:
        w(f"<inFulfillmentOf><order>{el('id', root=ORDER_ROOT, extension=h.lab_ref)}"
          "</order></inFulfillmentOf>")
    w('<documentationOf><serviceEvent classCode="PROC">')
    if h.exam:
        w(f'<effectiveTime value="{h.exam.strftime("%Y%m%d")}"/>')
    else:
        w('<effectiveTime nullFlavor="UNK"/>')
        out.append(Finding("exam-date", "exam_date not readable: sent as unknown"))
    w("</serviceEvent></documentationOf>")


def _pq(tag: str, raw: str, unit: str, ucum: str | None) -> str:
    """A PQ (or IVL bound) for `raw`, with the lab's own value and unit kept as translation."""
    number = raw.strip()
    numeric = NUMBER.fullmatch(number) is not None
    if ucum and numeric:
        head = f'<{tag} value="{attr(number)}" unit="{attr(ucum)}"'
    else:
        head = f'<{tag} nullFlavor="OTH"'
    if tag == "value":
        head += f' {_T}="PQ"'
    tr = f'<translation codeSystem="{LOCAL_UNITS}"'
    if numeric:
        tr += f' value="{attr(number)}"'
    u = unit.strip()
    if u and " " not in u:
        tr += f' code="{attr(u)}"'
    return f"{head}>{tr}/></{tag}>"


def _ucum(tables: CodeTables, res: ResLine, unit: str) -> str | None:
    if unit.strip():
        return tables.ucum(unit)
    entry = tables.lab(res.code)
    return entry.default_ucum or None if entry else None


def _range(low: str, high: str, ucum: str | None) -> str:
    if not ucum or not any(NUMBER.fullmatch(x.strip()) for x in (low, high)):
        return ""  # only numeric ranges are structured; the narrative keeps every range
    bounds = "".join(
        f'<{tag} value="{attr(raw.strip())}" unit="{attr(ucum)}"/>'
        for tag, raw in (("low", low), ("high", high))
        if NUMBER.fullmatch(raw.strip())
    )
    return (
        f'<referenceRange><observationRange><value {_T}="IVL_PQ">{bounds}</value>'
        "</observationRange></referenceRange>"
    )


_OBS_OPEN = (
    '<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN">'
    + "".join(f'<templateId root="{t}"/>' for t in OBS_TEMPLATES)
)
_OBS_CLOSE = "</observation></entryRelationship>"


def _observation(
    w: list[str],
    res: ResLine,
    row: str,
    n: int,
    tables: CodeTables,
    exam: str | None,
    out: list[Finding],
) -> None:
    entry = tables.lab(res.code)
    if entry:
        code = el("code", code=entry.loinc, codeSystem=LOINC, displayName=entry.loinc_display)
        code = code[:-2] + ">"
    else:
        code = '<code nullFlavor="OTH">'
        out.append(Finding("code-unmapped", f"RES #{n}: analysis code not in lab-codes.csv"))
    local = res.code.strip()
    local_attr = f' code="{attr(local)}"' if local and " " not in local else ' nullFlavor="NI"'
    parts = [
        _OBS_OPEN,
        code,
        f'<originalText><reference value="#{row}-f2"/></originalText>'
        f'<translation codeSystem="{LOCAL_LAB_CODES}" displayName="{attr(res.label)}"'
        f"{local_attr}/></code>",
        f'<text><reference value="#{row}"/></text>'
        f'<statusCode code="{STATUS_TO_ACT.get(res.status, "completed")}"/>',
    ]
    if exam:
        parts.append(f'<effectiveTime value="{exam}"/>')
    ucum = _ucum(tables, res, res.unit)
    if res.kind == "N":
        parts.append(_pq("value", res.value, res.unit, ucum))
        if res.value.strip() and not NUMBER.fullmatch(res.value.strip()):
            out.append(Finding("value-not-number", f"RES #{n}: numeric result kept as text only"))
        elif res.value.strip() and not ucum:
            out.append(Finding("unit-unmapped", f"RES #{n}: unit not in units.csv"))
    elif res.kind == "C":
        parts.append(f'<value nullFlavor="OTH" {_T}="CD">{el("originalText", res.value)}</value>')
    else:
        parts.append(f'<value {_T}="ST">{text(res.value)}</value>')
    if res.flag in FLAG_DISPLAY:
        parts.append(
            f'<interpretationCode code="{res.flag}" codeSystem="{INTERPRETATION}" '
            f'displayName="{FLAG_DISPLAY[res.flag]}"/>'
        )
    if res.kind == "N":
        parts.append(_range(res.low, res.high, ucum))
        if res.value2.strip() or res.unit2.strip():
            parts.append(_range(res.low2, res.high2, _ucum(tables, res, res.unit2)))
    parts.append(_OBS_CLOSE)
    w.extend(parts)


def _chapters(
    lab: list[LabLine], tables: CodeTables
) -> list[tuple[str, list[tuple[str, LabLine]]]]:
    """Consecutive lab lines grouped by LOINC chapter; TEX lines follow the result before them."""
    groups: list[tuple[str, list[tuple[str, LabLine]]]] = []
    current: str | None = None
    pending: list[tuple[str, LabLine]] = []
    for i, item in enumerate(lab, start=1):
        if not isinstance(item, ResLine):
            pending.append((f"tex{i}", item))
            continue
        entry = tables.lab(item.code)
        chapter = entry.chapter if entry else (current or FALLBACK_CHAPTER)
        if chapter != current:
            groups.append((chapter, []))
            current = chapter
        groups[-1][1].extend(pending)
        pending = []
        groups[-1][1].append((f"res{i}", item))
    if pending:
        groups[-1][1].extend(pending)
    return groups


def build_crbio(
    doc: HprimDocument,
    *,
    tables: CodeTables,
    document_id: str,
    effective_time: datetime,
    author: Author | None = None,
    organisation: Organisation | None = None,
    set_id: str | None = None,
    version: int = 1,
) -> CdaResult:
    """A level-3 CR-BIO for one HPRIM document; TranslationError when it has no RES line."""
    if not doc.results:
        raise TranslationError("no RES line to structure: send it as a level-1 document")
    out: list[Finding] = []
    w = _root(
        document_id,
        effective_time,
        _CRBIO_TITLE,
        DOC_TEMPLATES,
        set_id,
        version,
    )
    _header(w, doc.header, effective_time, author, organisation, out)
    w.append("<component><structuredBody>")
    numbers = {id(x): n for n, x in enumerate(doc.results, start=1)}
    exam = doc.header.exam.strftime("%Y%m%d") if doc.header.exam else None
    for k, (chapter, rows) in enumerate(_chapters(doc.lab or [], tables)):
        name = CHAPTERS.get(chapter, CHAPTERS[FALLBACK_CHAPTER])
        code = el("code", code=chapter, codeSystem=LOINC, displayName=name) + el("title", name)
        w.append(f"<component><section>{_CHAPTER_IDS}{code}")
        if k == 0 and doc.free_text:
            w.append(f"<text>{narrative.free_text(doc.free_text)}</text>")
        w.append(f"<component><section>{_SUBSECTION_IDS}{code}")
        w.append(f"<text>{narrative.table(rows)}</text>")
        w.append(f'<entry typeCode="DRIV"><act classCode="ACT" moodCode="EVN">{_ENTRY_IDS}')
        w.append(code[: code.index("<title>")] + '<statusCode code="completed"/>')
        for row, item in rows:
            if isinstance(item, ResLine):
                _observation(w, item, row, numbers[id(item)], tables, exam, out)
        w.append("</act></entry></section></component></section></component>")
    w.append("</structuredBody></component></ClinicalDocument>")
    facts = _facts(doc.header, document_id=document_id, when=effective_time,
                   title=_CRBIO_TITLE, templates=DOC_TEMPLATES, author=author)
    return CdaResult("".join(w).encode("utf-8"), out, facts=facts)


_CHAPTER_IDS = "".join(f'<templateId root="{t}"/>' for t in CHAPTER_TEMPLATES)
_SUBSECTION_IDS = "".join(f'<templateId root="{t}"/>' for t in SUBSECTION_TEMPLATES)
_ENTRY_IDS = "".join(f'<templateId root="{t}"/>' for t in ENTRY_TEMPLATES)


def build_level1(
    doc_or_header: HprimDocument | HprimHeader,
    pdf: bytes,
    *,
    document_id: str,
    effective_time: datetime,
    author: Author | None = None,
    organisation: Organisation | None = None,
    title: str = "Compte rendu d'examens biologiques",
) -> bytes:
    """A level-1 CDA (XDS-SD) carrying the PDF, for reports that cannot be structured."""
    if not pdf.startswith(b"%PDF-"):
        raise DocumentError("level-1 body is not a PDF")
    h = doc_or_header.header if isinstance(doc_or_header, HprimDocument) else doc_or_header
    w = _root(document_id, effective_time, title, LEVEL1_TEMPLATES, None, 1)
    _header(w, h, effective_time, author, organisation, [])
    w.append('<component><nonXMLBody><text mediaType="application/pdf" representation="B64">')
    head = "".join(w).encode("utf-8")
    tail = b"</text></nonXMLBody></component></ClinicalDocument>"
    return head + base64.b64encode(pdf) + tail


from gateway.documents.cdaread import CdaContent, read_cda, read_crbio  # noqa: E402
