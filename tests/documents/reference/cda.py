"""Frozen reference (see __init__).

CDA R2 documents of the trust space: CR-BIO (level 3) built from HPRIM, and level 1 (PDF).

Structure and identifiers: ../shared/specs/cda-xdm.md.  Every RES field is kept exactly in the
narrative table (which a human reads) and carried in structured form (which software reads):
LOINC code with the lab's own code as `translation`, PQ with the lab's own unit as
`translation`, reference ranges, interpretation and status.  Readers live in `cdaread`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

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
    XSI_TYPE,
    H,
)
from gateway.documents.codes import CHAPTERS, FALLBACK_CHAPTER, CodeTables
from gateway.documents.hprim import NIR, NUMBER
from gateway.documents.model import Finding, HprimDocument, HprimHeader, LabLine, ResLine
from gateway.errors import DocumentError, TranslationError
from tests.documents.reference import narrative
from tests.documents.reference.narrative import sub

__all__ = ["Author", "CdaResult", "Organisation", "build_crbio", "build_level1"]


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
class CdaResult:
    xml: bytes
    findings: list[Finding] = field(default_factory=list)


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise DocumentError("effective_time must carry a time zone")
    return when.strftime("%Y%m%d%H%M%S%z")


def _root(
    document_id: str,
    when: datetime,
    title: str,
    templates: tuple[str, ...],
    set_id: str | None,
    version: int,
) -> etree._Element:
    doc = etree.Element(H + "ClinicalDocument", nsmap=NSMAP)  # type: ignore[arg-type]
    sub(doc, "realmCode", code="FR")
    sub(doc, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    for t in templates:
        sub(doc, "templateId", root=t)
    sub(doc, "id", root=document_id)
    sub(doc, "code", code=CRBIO_CODE[0], codeSystem=LOINC, displayName=CRBIO_CODE[1])
    sub(doc, "title", title)
    sub(doc, "effectiveTime", value=_ts(when))
    sub(doc, "confidentialityCode", code="N", codeSystem=CONFIDENTIALITY)
    sub(doc, "languageCode", code="fr-FR")
    sub(doc, "setId", root=set_id or document_id)
    sub(doc, "versionNumber", value=str(version))
    return doc


def _header(
    doc: etree._Element,
    h: HprimHeader,
    when: datetime,
    author: Author | None,
    org: Organisation | None,
    out: list[Finding],
) -> None:
    role = sub(sub(doc, "recordTarget"), "patientRole")
    sub(role, "id", root=LEGACY_ROOT, extension=h.patient_code) if h.patient_code else None
    nir = h.nir.strip()
    if nir and NIR.fullmatch(nir):
        sub(role, "id", root=INS_NIR, extension=nir.replace(" ", ""))
    elif nir:
        out.append(Finding("nir", "nir not carried: not in the 13+2 layout"))
    if not h.patient_code and not (nir and NIR.fullmatch(nir)):
        sub(role, "id", nullFlavor="UNK")
    addr = sub(role, "addr")
    for line in (h.address1, h.address2):
        sub(addr, "streetAddressLine", line) if line.strip() else None
    sub(addr, "postalCode", h.postcode) if h.postcode else None
    sub(addr, "city", h.city) if h.city else None
    patient = sub(role, "patient")
    name = sub(patient, "name")
    sub(name, "given", h.first_name)
    sub(name, "family", h.last_name, qualifier="BR")
    sex = {"1": "M", "2": "F"}.get(nir[:1]) if nir and NIR.fullmatch(nir) else None
    if sex:
        sub(patient, "administrativeGenderCode", code=sex, codeSystem=GENDER)
    else:
        sub(patient, "administrativeGenderCode", nullFlavor="UNK")
    if h.birth:
        sub(patient, "birthTime", value=h.birth.strftime("%Y%m%d"))
    else:
        sub(patient, "birthTime", nullFlavor="UNK")
        out.append(Finding("birth-date", "birth_date not readable: sent as unknown"))

    aa = sub(sub(doc, "author"), "assignedAuthor")
    aa.addprevious(etree.Element(H + "time", value=_ts(when)))
    if author:
        sub(aa, "id", root=RPPS_ROOT, extension=f"8{author.rpps}")
    sub(aa, "id", root=LEGACY_ROOT, extension=h.sender_code or "UNK")
    if author:
        pname = sub(sub(aa, "assignedPerson"), "name")
        sub(pname, "given", author.given) if author.given else None
        sub(pname, "family", author.family) if author.family else None
    rep = sub(aa, "representedOrganization")
    if org:
        sub(rep, "id", root=ORG_ROOT, extension=org.id_extension)
    sub(rep, "name", h.sender_name)

    cust = sub(sub(sub(doc, "custodian"), "assignedCustodian"), "representedCustodianOrganization")
    if org:
        sub(cust, "id", root=ORG_ROOT, extension=org.id_extension)
    else:
        sub(cust, "id", root=LEGACY_ROOT, extension=h.sender_code or "UNK")
    sub(cust, "name", org.name if org and org.name else h.sender_name)

    ir = sub(sub(doc, "informationRecipient"), "intendedRecipient")
    sub(ir, "id", root=LEGACY_ROOT, extension=h.recipient_code or "UNK")
    sub(sub(ir, "informationRecipient"), "name", h.recipient_name)

    if h.lab_ref:
        sub(sub(sub(doc, "inFulfillmentOf"), "order"), "id", root=ORDER_ROOT, extension=h.lab_ref)
    event = sub(sub(doc, "documentationOf"), "serviceEvent", classCode="PROC")
    if h.exam:
        sub(event, "effectiveTime", value=h.exam.strftime("%Y%m%d"))
    else:
        sub(event, "effectiveTime", nullFlavor="UNK")
        out.append(Finding("exam-date", "exam_date not readable: sent as unknown"))


def _pq(parent: etree._Element, tag: str, raw: str, unit: str, ucum: str | None) -> None:
    """A PQ (or IVL bound) for `raw`, with the lab's own value and unit kept as translation."""
    number = raw.strip()
    attrs = {"value": number, "unit": ucum} if ucum and NUMBER.fullmatch(number) else {}
    el = sub(parent, tag, **attrs) if attrs else sub(parent, tag, nullFlavor="OTH")
    if tag == "value":
        el.set(XSI_TYPE, "PQ")
    tr = sub(el, "translation", codeSystem=LOCAL_UNITS)
    if NUMBER.fullmatch(number):
        tr.set("value", number)
    if unit.strip() and " " not in unit.strip():
        tr.set("code", unit.strip())


def _ucum(tables: CodeTables, res: ResLine, unit: str) -> str | None:
    if unit.strip():
        return tables.ucum(unit)
    entry = tables.lab(res.code)
    return entry.default_ucum or None if entry else None


def _range(obs: etree._Element, low: str, high: str, unit: str, ucum: str | None) -> None:
    if not ucum or not any(NUMBER.fullmatch(x.strip()) for x in (low, high)):
        return  # only numeric ranges are structured; the narrative keeps every range
    ivl = sub(sub(sub(obs, "referenceRange"), "observationRange"), "value")
    ivl.set(XSI_TYPE, "IVL_PQ")
    for tag, raw in (("low", low), ("high", high)):
        if NUMBER.fullmatch(raw.strip()):
            sub(ivl, tag, value=raw.strip(), unit=ucum)


def _observation(
    parent: etree._Element,
    res: ResLine,
    row: str,
    n: int,
    tables: CodeTables,
    h: HprimHeader,
    out: list[Finding],
) -> None:
    obs = sub(
        sub(parent, "entryRelationship", typeCode="COMP"),
        "observation",
        classCode="OBS",
        moodCode="EVN",
    )
    for t in OBS_TEMPLATES:
        sub(obs, "templateId", root=t)
    entry = tables.lab(res.code)
    if entry:
        code = sub(obs, "code", code=entry.loinc, codeSystem=LOINC, displayName=entry.loinc_display)
    else:
        code = sub(obs, "code", nullFlavor="OTH")
        out.append(Finding("code-unmapped", f"RES #{n}: analysis code not in lab-codes.csv"))
    sub(sub(code, "originalText"), "reference", value=f"#{row}-f2")
    local = sub(code, "translation", codeSystem=LOCAL_LAB_CODES, displayName=res.label)
    if res.code.strip() and " " not in res.code.strip():
        local.set("code", res.code.strip())
    else:
        local.set("nullFlavor", "NI")
    sub(sub(obs, "text"), "reference", value=f"#{row}")
    sub(obs, "statusCode", code=STATUS_TO_ACT.get(res.status, "completed"))
    if h.exam:
        sub(obs, "effectiveTime", value=h.exam.strftime("%Y%m%d"))
    ucum = _ucum(tables, res, res.unit)
    if res.kind == "N":
        _pq(obs, "value", res.value, res.unit, ucum)
        if res.value.strip() and not NUMBER.fullmatch(res.value.strip()):
            out.append(Finding("value-not-number", f"RES #{n}: numeric result kept as text only"))
        elif res.value.strip() and not ucum:
            out.append(Finding("unit-unmapped", f"RES #{n}: unit not in units.csv"))
    elif res.kind == "C":
        val = sub(obs, "value", nullFlavor="OTH")
        val.set(XSI_TYPE, "CD")
        sub(val, "originalText", res.value)
    else:
        sub(obs, "value", res.value).set(XSI_TYPE, "ST")
    if res.flag in FLAG_DISPLAY:
        sub(
            obs,
            "interpretationCode",
            code=res.flag,
            codeSystem=INTERPRETATION,
            displayName=FLAG_DISPLAY[res.flag],
        )
    if res.kind == "N":
        _range(obs, res.low, res.high, res.unit, ucum)
        if res.value2.strip() or res.unit2.strip():
            _range(obs, res.low2, res.high2, res.unit2, _ucum(tables, res, res.unit2))


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
    root = _root(
        document_id,
        effective_time,
        "Compte rendu d'examens biologiques",
        DOC_TEMPLATES,
        set_id,
        version,
    )
    _header(root, doc.header, effective_time, author, organisation, out)
    body = sub(sub(root, "component"), "structuredBody")
    numbers = {id(x): n for n, x in enumerate(doc.results, start=1)}
    for k, (chapter, rows) in enumerate(_chapters(doc.lab or [], tables)):
        name = CHAPTERS.get(chapter, CHAPTERS[FALLBACK_CHAPTER])
        sec = sub(sub(body, "component"), "section")
        for t in CHAPTER_TEMPLATES:
            sub(sec, "templateId", root=t)
        sub(sec, "code", code=chapter, codeSystem=LOINC, displayName=name)
        sub(sec, "title", name)
        if k == 0 and doc.free_text:
            narrative.free_text(sub(sec, "text"), doc.free_text)
        subsec = sub(sub(sec, "component"), "section")
        for t in SUBSECTION_TEMPLATES:
            sub(subsec, "templateId", root=t)
        sub(subsec, "code", code=chapter, codeSystem=LOINC, displayName=name)
        sub(subsec, "title", name)
        narrative.table(sub(subsec, "text"), rows)
        act = sub(sub(subsec, "entry", typeCode="DRIV"), "act", classCode="ACT", moodCode="EVN")
        for t in ENTRY_TEMPLATES:
            sub(act, "templateId", root=t)
        sub(act, "code", code=chapter, codeSystem=LOINC, displayName=name)
        sub(act, "statusCode", code="completed")
        for row, item in rows:
            if isinstance(item, ResLine):
                _observation(act, item, row, numbers[id(item)], tables, doc.header, out)
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return CdaResult(xml, out)


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
    root = _root(document_id, effective_time, title, LEVEL1_TEMPLATES, None, 1)
    _header(root, h, effective_time, author, organisation, [])
    body = sub(sub(root, "component"), "nonXMLBody")
    sub(
        body,
        "text",
        base64.b64encode(pdf).decode("ascii"),
        mediaType="application/pdf",
        representation="B64",
    )
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


