"""CDA R2 documents of the trust space: CR-BIO (level 3) built from HPRIM, and level 1 (PDF).

Structure and identifiers: the ANS CI-SIS CR-BIO volume and its examples; the authority is the
agency's CR-BIO 2024.01 validator (fixtures/ans/, run over every document in
tests/documents/test_crbio_conformance.py). Every RES field is kept exactly in the narrative
table (which a human reads) and carried in structured form (which software reads): LOINC code
with the lab's own code as `translation`, PQ with the lab's own unit as `translation`, one
reference range, interpretation and status; a second unit is a second observation; a result not
validated by the biologist stays in the narrative only. The header's author, custodian, legal
authenticator, performer and responsible biologist are the lab's row of mappings/labs.csv; the
patient is what the report says, with no INS, no sex and no birth name it does not state
(docs/documents.md). Readers live in `cdaread`.

The module stays whole (some 600 lines): header, chapter sections and the PDF copy section
are one document's builder, each part filling identifiers the others reference.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime

from gateway.documents import narrative, pdf
from gateway.documents.cdaconst import (
    CHAPTER_TEMPLATES,
    CONFIDENTIALITY,
    CRBIO_CODE,
    CRBIO_TEMPLATE,
    CRBIO_VERSION,
    DOC_TEMPLATES,
    ENTRY_TEMPLATES,
    FLAG_DISPLAY,
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
    PDF_COPY_OBS,
    PDF_COPY_ORGANIZER,
    PDF_COPY_TEMPLATE,
    PERFORMER_TEMPLATE,
    RPPS_ROOT,
    STATUS_TO_ACT,
    STRUCTURED_STATUSES,
    SUBSECTION_TEMPLATES,
)
from gateway.documents.codes import CHAPTERS, FALLBACK_CHAPTER, CodeTables, LabCode
from gateway.documents.hprim import NUMBER
from gateway.documents.jdv import Concept as Code
from gateway.documents.labs import Lab
from gateway.documents.model import Finding, HprimDocument, HprimHeader, LabLine, ResLine
from gateway.documents.narrative import attr, el, text
from gateway.errors import DocumentError, TranslationError, UnknownLab

__all__ = [
    "CdaContent",
    "CdaFacts",
    "CdaResult",
    "UnknownLab",
    "build_crbio",
    "build_level1",
    "read_cda",
    "read_crbio",
]


@dataclass(frozen=True)
class CdaFacts:
    """What the XDM metadata says of a CDA, as the builder wrote it into the XML: the values
    `xdm.pack` otherwise reads back from it (one parse and some thirty XPaths a document).
    Strings as in the XML; "" for an absent or null-flavoured value."""

    id_root: str
    id_extension: str
    patient_id: str  # the first recordTarget id: extension ("" when null-flavoured)
    patient_root: str  # … and its root (the lab's OID for its own patient numbers)
    family: str  # the birth name when the report gives one, else the name as written
    given: str
    birth_name: bool  # `family` carries qualifier BR (the report said so)
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
    org_id: str  # … its id under ORG_ROOT ("1" + FINESS)
    specialty: Code  # assignedAuthor/code
    facility: Code  # componentOf/…/healthCareFacility/code
    practice: Code  # legalAuthenticator/…/standardIndustryClassCode
    events: tuple[Code, ...]  # documentationOf/serviceEvent/code, in order
    legal_rpps: str  # legalAuthenticator/assignedEntity id under RPPS_ROOT
    legal_family: str
    legal_given: str


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


def _template(t: str) -> str:
    if t == CRBIO_TEMPLATE:
        return el("templateId", root=t, extension=CRBIO_VERSION)
    return el("templateId", root=t)


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
        *(_template(t) for t in templates),
        el("id", root=document_id),
        el("code", code=CRBIO_CODE[0], codeSystem=LOINC, displayName=CRBIO_CODE[1]),
        el("title", title),
        el("effectiveTime", value=_ts(when)),
        el("confidentialityCode", code="N", codeSystem=CONFIDENTIALITY, displayName="Normal"),
        '<languageCode code="fr-FR"/>',
        el("setId", root=set_id or document_id),
        el("versionNumber", value=str(version)),
    ]


# "NOM (NJF)": the name is the birth name; "NOM (NJF NAISSANCE)", "NOM NJF NAISSANCE",
# "NOM née NAISSANCE": a used name and the birth name.  Anything else is a name whose kind
# the report does not state: sent without a qualifier.
_NJF_ALONE = re.compile(r"(?P<birth>\S.*?)\s*\(\s*NJF\s*\)", re.IGNORECASE)
_NJF_PAIR = re.compile(
    r"(?P<used>\S.*?)\s+\(?\s*(?:NJF|N[ÉE]E)(?:\s*:\s*|\s+)(?P<birth>[^\s()][^()]*?)\s*\)?",
    re.IGNORECASE,
)


def patient_names(last_name: str) -> tuple[str, str]:
    """(name as used, birth name) from HPRIM line 2; the birth name is "" unless the report
    states it ("(NJF)" — nom de jeune fille — or "née")."""
    raw = last_name.strip()
    if m := _NJF_ALONE.fullmatch(raw):
        return "", m["birth"]
    if m := _NJF_PAIR.fullmatch(raw):
        return m["used"], m["birth"]
    return raw, ""


def _addr(lab: Lab) -> str:
    parts = [el("streetAddressLine", lab.street) if lab.street else "",
             el("postalCode", lab.postcode) if lab.postcode else "",
             el("city", lab.city) if lab.city else ""]
    body = "".join(parts)
    return f"<addr>{body}</addr>" if body else '<addr nullFlavor="UNK"/>'


def _telecom(lab: Lab) -> str:
    return el("telecom", value=lab.telecom, use="WP") if lab.telecom else (
        '<telecom nullFlavor="UNK"/>')


def _code(concept: Code, tag: str = "code") -> str:
    return el(tag, code=concept[0], displayName=concept[1], codeSystem=concept[2])


def _org(lab: Lab, tag: str, *, practice: bool = False) -> str:
    inner = (el("id", root=ORG_ROOT, extension=lab.org_extension) + el("name", lab.name)
             + _telecom(lab) + _addr(lab))
    if practice:
        inner += _code(lab.practice, "standardIndustryClassCode")
    return f"<{tag}>{inner}</{tag}>"


def _person(lab: Lab) -> str:
    names = (el("given", lab.biologist_given) if lab.biologist_given else "") + el(
        "family", lab.biologist_family)
    return f"<assignedPerson><name>{names}</name></assignedPerson>"


def _biologist(lab: Lab, *, practice: bool = False, org_tag: str = "representedOrganization"
               ) -> str:
    """assignedEntity/assignedAuthor content: the lab's responsible biologist."""
    return (el("id", root=RPPS_ROOT, extension=lab.rpps_extension) + _code(lab.specialty)
            + _addr(lab) + _telecom(lab) + _person(lab) + _org(lab, org_tag, practice=practice))


def _facts(
    h: HprimHeader,
    lab: Lab,
    *,
    document_id: str,
    when: datetime,
    title: str,
    templates: tuple[str, ...],
    events: tuple[Code, ...],
) -> CdaFacts:
    """The facts `_root` and `_header` write for these arguments (the same expressions)."""
    used, birth = patient_names(h.last_name)
    return CdaFacts(
        id_root=document_id,
        id_extension="",
        patient_id=h.patient_code,
        patient_root=lab.patient_oid if h.patient_code else "",
        family=birth or used,
        given=h.first_name,
        birth_name=bool(birth),
        birth_time=h.birth.strftime("%Y%m%d") if h.birth else "",
        gender="",
        level1="1.3.6.1.4.1.19376.1.2.20" in templates,
        effective_time=_ts(when),
        service_time=h.exam.strftime("%Y%m%d") if h.exam else "",
        title=title,
        author_rpps=lab.rpps_extension,
        author_family=lab.biologist_family,
        author_given=lab.biologist_given,
        organisation=lab.name,
        org_id=lab.org_extension,
        specialty=lab.specialty,
        facility=lab.facility,
        practice=lab.practice,
        events=events,
        legal_rpps=lab.rpps_extension,
        legal_family=lab.biologist_family,
        legal_given=lab.biologist_given,
    )


def _header(
    out_xml: list[str],
    h: HprimHeader,
    when: datetime,
    lab: Lab,
    events: tuple[Code, ...],
    out: list[Finding],
) -> None:
    """recordTarget … componentOf.  The patient is who the report names, identified by the
    lab's own number under the lab's OID: no INS (an HPRIM report cannot establish a
    qualified identity), no sex (the report does not state it; the NIR's first digit is not
    the patient's sex to assert), no birth-name qualifier unless the report says so."""
    w = out_xml.append
    w("<recordTarget><patientRole>")
    if h.patient_code:
        w(el("id", root=lab.patient_oid, extension=h.patient_code))
    else:
        w('<id nullFlavor="UNK"/>')
    if h.nir.strip():
        out.append(Finding("nir", "line 8 (NIR) not carried: an HPRIM report cannot establish "
                           "a qualified identity (INS)"))
    lines = [el("streetAddressLine", x) for x in (h.address1, h.address2) if x.strip()]
    if h.postcode:
        lines.append(el("postalCode", h.postcode))
    if h.city:
        lines.append(el("city", h.city))
    w("<addr>" + "".join(lines) + "</addr>" if lines else '<addr nullFlavor="UNK"/>')
    used, birth = patient_names(h.last_name)
    family = (el("family", used) if used else "") + (
        el("family", birth, qualifier="BR") if birth else "")
    w(f'<patient classCode="PSN"><name>{family}{el("given", h.first_name)}</name>')
    w('<administrativeGenderCode nullFlavor="UNK"/>')
    if h.birth:
        w(f'<birthTime value="{h.birth.strftime("%Y%m%d")}"/>')
    else:
        w('<birthTime nullFlavor="UNK"/>')
        out.append(Finding("birth-date", "birth_date not readable: sent as unknown"))
    w("</patient></patientRole></recordTarget>")

    stamp = el("time", value=_ts(when))
    w(f"<author>{stamp}<assignedAuthor>")
    w(el("id", root=RPPS_ROOT, extension=lab.rpps_extension))
    w(el("id", root=LEGACY_ROOT, extension=h.sender_code or "UNK"))
    w(_code(lab.specialty) + _addr(lab) + _telecom(lab) + _person(lab))
    w(_org(lab, "representedOrganization") + "</assignedAuthor></author>")

    w("<custodian><assignedCustodian>")
    w(_org(lab, "representedCustodianOrganization"))
    w("</assignedCustodian></custodian>")

    w("<informationRecipient><intendedRecipient>")
    w(el("id", root=LEGACY_ROOT, extension=h.recipient_code or "UNK"))
    w(f"<informationRecipient>{el('name', h.recipient_name)}</informationRecipient>")
    w("</intendedRecipient></informationRecipient>")

    w(f'<legalAuthenticator>{stamp}<signatureCode code="S"/><assignedEntity>')
    w(_biologist(lab, practice=True) + "</assignedEntity></legalAuthenticator>")

    if h.lab_ref:
        w(f"<inFulfillmentOf><order>{el('id', root=ORDER_ROOT, extension=h.lab_ref)}"
          "</order></inFulfillmentOf>")
    exam = h.exam.strftime("%Y%m%d") if h.exam else None
    if exam is None:
        out.append(Finding("exam-date", "exam_date not readable: sent as unknown"))
    when_done = (f'<effectiveTime value="{exam}"/>' if exam
                 else '<effectiveTime nullFlavor="UNK"/>')
    for k, event in enumerate(events):
        w(f"<documentationOf><serviceEvent>{_code(event)}")
        if k == 0:
            w(when_done)
            w(f'<performer typeCode="PRF"><templateId root="{PERFORMER_TEMPLATE}"/>')
            w(f'<time><high value="{exam}"/></time>' if exam else '<time nullFlavor="UNK"/>')
            w(f"<assignedEntity>{_biologist(lab, practice=True)}</assignedEntity></performer>")
        w("</serviceEvent></documentationOf>")

    w("<componentOf><encompassingEncounter>")
    w(f"<effectiveTime><low value=\"{exam}\"/></effectiveTime>" if exam
      else '<effectiveTime nullFlavor="UNK"/>')
    w(f"<responsibleParty><assignedEntity>{_biologist(lab)}</assignedEntity></responsibleParty>")
    w(f"<location><healthCareFacility>{_code(lab.facility)}<location>{el('name', lab.name)}")
    w(_addr(lab) + "</location></healthCareFacility></location>")
    w("</encompassingEncounter></componentOf>")


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


def _local_code(res: ResLine, entry: LabCode | None) -> str:
    """The lab's own code as a `translation` (the schematron wants @code and @displayName:
    the RES label, else the lab-code table's, else the code itself); "" when the code
    cannot be carried (empty or with spaces: the narrative keeps it)."""
    local = res.code.strip()
    if not local or " " in local:
        return ""
    label = res.label.strip() or (entry.label.strip() if entry else "") or local
    return f'<translation codeSystem="{LOCAL_LAB_CODES}" code="{attr(local)}" ' \
           f'displayName="{attr(label)}"/>'


def _observation(
    w: list[str],
    res: ResLine,
    row: str,
    n: int,
    tables: CodeTables,
    exam: str | None,
    out: list[Finding],
    *,
    second: bool = False,
) -> None:
    """One observation; `second`: the same result in its second unit (RES fields 11-14),
    a separate observation as in the agency's "Glycémie deux unités" example."""
    entry = tables.lab(res.code)
    loinc, display = (entry.loinc2, entry.loinc2_display) if second and entry else (
        (entry.loinc, entry.loinc_display) if entry else ("", ""))
    if loinc:
        code = el("code", code=loinc, codeSystem=LOINC, displayName=display)[:-2] + ">"
    else:
        code = '<code nullFlavor="OTH">'
        what = "second-unit analysis code (loinc2)" if entry else "analysis code"
        out.append(Finding("code-unmapped", f"RES #{n}: {what} not in lab-codes.csv"))
    value, unit, low, high = (
        (res.value2, res.unit2, res.low2, res.high2) if second
        else (res.value, res.unit, res.low, res.high))
    text_ref = f"#{row}-f11" if second else f"#{row}"
    parts = [
        _OBS_OPEN,
        code,
        f'<originalText><reference value="#{row}-f2"/></originalText>',
        _local_code(res, entry),
        "</code>",
        f'<text><reference value="{text_ref}"/></text>'
        f'<statusCode code="{STATUS_TO_ACT.get(res.status, "completed")}"/>',
    ]
    if exam:
        parts.append(f'<effectiveTime value="{exam}"/>')
    ucum = _ucum(tables, res, unit)
    if res.kind == "N":
        parts.append(_pq("value", value, unit, ucum))
        if value.strip() and not NUMBER.fullmatch(value.strip()):
            out.append(Finding("value-not-number", f"RES #{n}: numeric result kept as text only"))
        elif value.strip() and not ucum:
            out.append(Finding("unit-unmapped", f"RES #{n}: unit not in units.csv"))
    elif res.kind == "C":
        parts.append(f'<value nullFlavor="OTH" {_T}="CD">{el("originalText", value)}</value>')
    else:
        parts.append(f'<value {_T}="ST">{text(value)}</value>')
    if res.flag in FLAG_DISPLAY:
        parts.append(
            f'<interpretationCode code="{res.flag}" codeSystem="{INTERPRETATION}" '
            f'displayName="{FLAG_DISPLAY[res.flag]}"/>'
        )
    if res.kind == "N":
        parts.append(_range(low, high, ucum))
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


def _chapter_code(chapter: str) -> Code:
    return (chapter, CHAPTERS.get(chapter, CHAPTERS[FALLBACK_CHAPTER]), LOINC)


def _find_lab(doc: HprimDocument, tables: CodeTables, lab: Lab | None) -> Lab:
    """The lab given, else the labs.csv row of the HPRIM sender code (line 11)."""
    if lab is not None:
        return lab
    found = tables.labs.lookup(doc.header.sender_code) if doc.header.sender_code else None
    if found is None:
        raise UnknownLab("HPRIM sender code (line 11) has no row in mappings/labs.csv")
    return found


def _pdf_copy(pdf_bytes: bytes) -> str:
    """The FR-Document-PDF-copie section: the PDF rendition of the whole report."""
    obs_ids = "".join(f'<templateId root="{t}"/>' for t in PDF_COPY_OBS)
    return (
        f'<component><section><templateId root="{PDF_COPY_TEMPLATE}"/>'
        f'<code code="55108-5" displayName="Copie du document" codeSystem="{LOINC}"/>'
        "<title>Copie du document</title>"
        '<text><paragraph><content ID="pdfcopy-title">Compte rendu au format PDF</content>'
        '</paragraph><renderMultiMedia referencedObject="pdfcopy"/></text>'
        f'<entry><organizer classCode="CLUSTER" moodCode="EVN">'
        f'<templateId root="{PDF_COPY_ORGANIZER}"/>'
        f'<code code="55107-7" displayName="Document attaché" codeSystem="{LOINC}"/>'
        '<statusCode code="completed"/>'
        f'<component><observation classCode="OBS" moodCode="EVN">{obs_ids}'
        f'<code code="69764-9" displayName="Type de document" codeSystem="{LOINC}"/>'
        '<text><reference value="#pdfcopy-title"/></text><statusCode code="completed"/>'
        f'<effectiveTime nullFlavor="NA"/><value {_T}="CD" code="55108-5" '
        f'displayName="Copie du document" codeSystem="{LOINC}"/></observation></component>'
        '<component><observationMedia classCode="OBS" moodCode="EVN" ID="pdfcopy">'
        '<value mediaType="application/pdf" representation="B64">'
        + base64.b64encode(pdf_bytes).decode("ascii")
        + "</value></observationMedia></component></organizer></entry></section></component>"
    )


def build_crbio(
    doc: HprimDocument,
    *,
    tables: CodeTables,
    document_id: str,
    effective_time: datetime,
    lab: Lab | None = None,
    pdf_copy: bytes | None = None,
    set_id: str | None = None,
    version: int = 1,
) -> CdaResult:
    """A level-3 CR-BIO for one HPRIM document; TranslationError when it has no RES line,
    UnknownLab when the lab (given, else found by the HPRIM sender code) has no row.
    `pdf_copy`: the report's PDF for the required copy section (rendered when not given)."""
    if not doc.results:
        raise TranslationError("no RES line to structure: send it as a level-1 document")
    the_lab = _find_lab(doc, tables, lab)
    out: list[Finding] = []
    groups = _chapters(doc.lab or [], tables)
    events = tuple(dict.fromkeys(_chapter_code(c) for c, _ in groups))
    w = _root(document_id, effective_time, _CRBIO_TITLE, DOC_TEMPLATES, set_id, version)
    _header(w, doc.header, effective_time, the_lab, events, out)
    w.append("<component><structuredBody>")
    numbers = {id(x): n for n, x in enumerate(doc.results, start=1)}
    exam = doc.header.exam.strftime("%Y%m%d") if doc.header.exam else None
    for k, (chapter, rows) in enumerate(groups):
        name = CHAPTERS.get(chapter, CHAPTERS[FALLBACK_CHAPTER])
        code = el("code", code=chapter, codeSystem=LOINC, displayName=name) + el("title", name)
        w.append(f"<component><section>{_CHAPTER_IDS}{code}")
        if k == 0 and doc.free_text:
            w.append(f"<text>{narrative.free_text(doc.free_text)}</text>")
        w.append(f"<component><section>{_SUBSECTION_IDS}{code}")
        w.append(f"<text>{narrative.table(rows)}</text>")
        observations: list[str] = []
        for row, item in rows:
            if not isinstance(item, ResLine):
                continue
            n = numbers[id(item)]
            if item.status not in STRUCTURED_STATUSES:
                out.append(Finding("res-unvalidated", f"RES #{n}: not validated by the "
                                   "biologist (status R): in the narrative only"))
                continue
            _observation(observations, item, row, n, tables, exam, out)
            if item.kind == "N" and item.value2.strip():
                _observation(observations, item, row, n, tables, exam, out, second=True)
        if observations:
            w.append(f'<entry typeCode="DRIV">{_ENTRY_IDS}<act classCode="ACT" moodCode="EVN">')
            w.append(code[: code.index("<title>")] + '<statusCode code="completed"/>')
            w.extend(observations)
            w.append("</act></entry>")
        w.append("</section></component></section></component>")
    w.append(_pdf_copy(pdf_copy if pdf_copy is not None else pdf.render(doc)))
    w.append("</structuredBody></component></ClinicalDocument>")
    facts = _facts(doc.header, the_lab, document_id=document_id, when=effective_time,
                   title=_CRBIO_TITLE, templates=DOC_TEMPLATES, events=events)
    return CdaResult("".join(w).encode("utf-8"), out, facts=facts)


_CHAPTER_IDS = "".join(f'<templateId root="{t}"/>' for t in CHAPTER_TEMPLATES)
_SUBSECTION_IDS = "".join(f'<templateId root="{t}"/>' for t in SUBSECTION_TEMPLATES)
_ENTRY_IDS = "".join(f'<templateId root="{t}"/>' for t in ENTRY_TEMPLATES)


def build_level1(
    doc: HprimDocument,
    pdf_bytes: bytes,
    *,
    tables: CodeTables,
    document_id: str,
    effective_time: datetime,
    lab: Lab | None = None,
    title: str = _CRBIO_TITLE,
) -> CdaResult:
    """A level-1 CDA (XDS-SD) carrying the PDF, for reports that cannot be structured; the
    header is a CR-BIO's (UnknownLab as for `build_crbio`)."""
    if not pdf_bytes.startswith(b"%PDF-"):
        raise DocumentError("level-1 body is not a PDF")
    the_lab = _find_lab(doc, tables, lab)
    events = (_chapter_code(FALLBACK_CHAPTER),)
    out: list[Finding] = []
    w = _root(document_id, effective_time, title, LEVEL1_TEMPLATES, None, 1)
    _header(w, doc.header, effective_time, the_lab, events, out)
    w.append('<component><nonXMLBody><text mediaType="application/pdf" representation="B64">')
    head = "".join(w).encode("utf-8")
    tail = b"</text></nonXMLBody></component></ClinicalDocument>"
    facts = _facts(doc.header, the_lab, document_id=document_id, when=effective_time,
                   title=title, templates=LEVEL1_TEMPLATES, events=events)
    return CdaResult(head + base64.b64encode(pdf_bytes) + tail, out, facts=facts)


from gateway.documents.cdaread import CdaContent, read_cda, read_crbio  # noqa: E402
