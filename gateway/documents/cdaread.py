"""Reading CDA R2 documents back into the HPRIM model: CR-BIO (level 3) and level 1 (PDF).

Our own CR-BIOs keep every RES field in the narrative table; the reader restores them from
there and checks that the structured entries say the same thing (a mismatch is a finding:
the narrative is what was attested).  CR-BIOs from other producers are read from their
structured entries alone.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import date

from lxml import etree

from gateway.documents import narrative, safexml
from gateway.documents.cdaconst import (
    INS_NIR,
    LEGACY_ROOT,
    LOCAL_LAB_CODES,
    LOCAL_UNITS,
    ORDER_ROOT,
    PDF_COPY_TEMPLATE,
    RPPS_ROOT,
    STATUS_TO_ACT,
    XSI_TYPE,
    H,
)
from gateway.documents.hprim import NUMBER
from gateway.documents.model import Finding, HprimDocument, HprimHeader, LabLine, ResLine
from gateway.errors import DocumentError

ACT_TO_STATUS = {"completed": "F", "active": "R"}


@dataclass(frozen=True)
class CdaContent:
    """What a CDA holds: the HPRIM view of its header, its results or its PDF, and findings."""

    document: HprimDocument
    pdf: bytes | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def level(self) -> int:
        return 1 if self.pdf is not None else 3


def _x(el: etree._Element, path: str) -> list[etree._Element]:
    found = el.xpath(path, namespaces={"h": H[1:-1]})
    assert isinstance(found, list)
    return [x for x in found if isinstance(x, etree._Element)]


def _first(el: etree._Element, path: str) -> etree._Element | None:
    found = _x(el, path)
    return found[0] if found else None


def _text(el: etree._Element, path: str) -> str:
    got = _first(el, path)
    return alltext(got) if got is not None else ""


def _attr(el: etree._Element, path: str, name: str) -> str:
    got = _first(el, path)
    return (got.get(name) or "") if got is not None else ""


def alltext(el: etree._Element) -> str:
    """All the text inside an element (not its tail)."""
    return "".join(t if isinstance(t, str) else t.decode() for t in el.itertext())


def _date(ts: str) -> date | None:
    try:
        return date(int(ts[0:4]), int(ts[4:6]), int(ts[6:8])) if len(ts) >= 8 else None
    except ValueError:
        return None


def _header(root: etree._Element) -> HprimHeader:
    role = _first(root, "h:recordTarget/h:patientRole")
    if role is None:
        raise DocumentError("CDA: no recordTarget/patientRole")
    ids = {i.get("root"): i.get("extension") or "" for i in _x(role, "h:id")}
    patient_code = ids.get(LEGACY_ROOT) or next(
        (v for k, v in ids.items() if k != INS_NIR and v), ""
    )
    nir = ids.get(INS_NIR, "")
    streets = [s.text or "" for s in _x(role, "h:addr/h:streetAddressLine")] + ["", ""]
    cp, city = _text(role, "h:addr/h:postalCode"), _text(role, "h:addr/h:city")
    birth = _date(_attr(role, "h:patient/h:birthTime", "value"))
    exam = _date(
        _attr(root, "h:documentationOf/h:serviceEvent/h:effectiveTime", "value")
        or _attr(root, "h:documentationOf/h:serviceEvent/h:effectiveTime/h:low", "value")
    )
    author = _first(root, "h:author/h:assignedAuthor")
    sender_code, sender_name = "", ""
    if author is not None:
        aids = {i.get("root"): i.get("extension") or "" for i in _x(author, "h:id")}
        sender_code = aids.get(LEGACY_ROOT) or aids.get(RPPS_ROOT, "")
        sender_name = (
            _text(author, "h:representedOrganization/h:name")
            or " ".join(
                _text(author, f"h:assignedPerson/h:name/h:{p}") for p in ("family", "given")
            ).strip()
        )
    recip = _first(root, "h:informationRecipient/h:intendedRecipient")
    recipient_code = recipient_name = ""
    if recip is not None:
        recipient_code = _attr(recip, "h:id", "extension")
        recipient_name = _text(recip, "h:informationRecipient/h:name")
    return HprimHeader(
        patient_code=patient_code,
        last_name=_text(role, "h:patient/h:name/h:family"),
        first_name=_text(role, "h:patient/h:name/h:given"),
        address1=streets[0],
        address2=streets[1],
        postcode_city=f"{cp} {city}".strip() if cp or city else "",
        birth_date=birth.strftime("%d/%m/%Y") if birth else "",
        nir=f"{nir[:13]} {nir[13:]}" if len(nir) == 15 else nir,
        lab_ref=_attr(root, "h:inFulfillmentOf/h:order/h:id", "extension")
        if _attr(root, "h:inFulfillmentOf/h:order/h:id", "root") == ORDER_ROOT
        else "",
        exam_date=exam.strftime("%d/%m/%Y") if exam else "",
        sender_code=sender_code,
        sender_name=sender_name,
        recipient_code=recipient_code,
        recipient_name=recipient_name,
        blank_line_13=True,  # the common layout; the blank line carries nothing
        birth=birth,
        exam=exam,
    )


def _structured(obs: etree._Element) -> ResLine:
    """The RES line that an observation's structured parts alone say."""
    code = _first(obs, "h:code")
    local = _first(obs, f"h:code/h:translation[@codeSystem='{LOCAL_LAB_CODES}']")
    label = (local.get("displayName") if local is not None else None) or (
        code.get("displayName") if code is not None else ""
    )
    local_code = (local.get("code") if local is not None else None) or (
        code.get("code") if code is not None else ""
    )
    value = _first(obs, "h:value")
    kind, raw, unit = "A", "", ""
    if value is not None:
        vtype = (value.get(XSI_TYPE) or "").split(":")[-1]
        orig = _first(value, f"h:translation[@codeSystem='{LOCAL_UNITS}']")
        if vtype == "PQ":
            kind = "N"
            raw = value.get("value") or (orig.get("value") or "" if orig is not None else "")
            unit = (orig.get("code") or "") if orig is not None else (value.get("unit") or "")
        elif vtype in ("CD", "CE", "CV", "CO"):
            kind = "C"
            raw = value.get("code") or _text(value, "h:originalText")
        else:
            raw = alltext(value)
    low = _attr(obs, "h:referenceRange/h:observationRange/h:value/h:low", "value")
    high = _attr(obs, "h:referenceRange/h:observationRange/h:value/h:high", "value")
    flag = _attr(obs, "h:interpretationCode", "code")
    status = ACT_TO_STATUS.get(_attr(obs, "h:statusCode", "code"), "")
    return ResLine(label or "", local_code or "", kind, raw, unit, low, high, flag, status)


def _agrees(shown: ResLine, said: ResLine) -> bool:
    """Do the narrative row and the structured entry say the same result?"""
    if shown.kind == "N" and NUMBER.fullmatch(shown.value.strip()) and said.value:
        try:
            if float(shown.value) != float(said.value):
                return False
        except ValueError:
            return False
    flag_ok = shown.flag == said.flag or shown.flag not in ("N", "L", "H", "LL", "HH")
    status_ok = STATUS_TO_ACT.get(shown.status, "completed") == {"R": "active"}.get(
        said.status, "completed"
    )
    # A code with spaces cannot be a coded value: it travels as nullFlavor, narrative only.
    code_ok = shown.code.strip() == said.code.strip() or not said.code
    return flag_ok and status_ok and code_ok


def _lab(root: etree._Element, out: list[Finding]) -> list[LabLine] | None:
    # Results only: not the observation of the PDF-copy section, nor a result's second-unit
    # observation (it points at its row's field 11; the row holds both units).
    observations = _x(root, "h:component/h:structuredBody//h:observation[not(ancestor::"
                      f"h:section/h:templateId/@root='{PDF_COPY_TEMPLATE}')]"
                      "[not(substring-after(h:text/h:reference/@value, '-') = 'f11')]")
    rows = {tr.get("ID"): tr for tr in _x(root, "//h:text//h:tr[@ID]")}
    if not observations and not rows:
        return None
    ours: list[LabLine] = []
    for n, obs in enumerate(observations, start=1):
        ref = _attr(obs, "h:text/h:reference", "value").lstrip("#")
        row = narrative.read_row(rows[ref]) if ref in rows else None
        if not isinstance(row, ResLine):
            # Not our layout: read every observation from its structured parts.
            return [_structured(o) for o in observations]
        if not _agrees(row, _structured(obs)):
            out.append(Finding("narrative-mismatch", f"RES #{n}: entry differs from narrative"))
    for tr in rows.values():
        line = narrative.read_row(tr)
        if line is not None:
            ours.append(line)
    return ours


def read_cda(xml: bytes) -> CdaContent:
    """Read a CR-BIO or a level-1 CDA; DocumentError if it is neither."""
    root = safexml.parse(xml, what="CDA")
    if root.tag != H + "ClinicalDocument":
        raise DocumentError("CDA: root element is not ClinicalDocument")
    header = _header(root)
    out: list[Finding] = []
    b64 = _first(root, "h:component/h:nonXMLBody/h:text")
    if b64 is not None:
        if b64.get("mediaType") != "application/pdf" or b64.get("representation") != "B64":
            raise DocumentError("CDA: level-1 body is not a base64 PDF")
        try:
            pdf = base64.b64decode(alltext(b64), validate=False)
        except (binascii.Error, ValueError):
            raise DocumentError("CDA: level-1 body is not valid base64") from None
        return CdaContent(HprimDocument(header), pdf, out)
    para = _first(root, "h:component/h:structuredBody//h:paragraph[@ID='freetext']")
    free = narrative.read_free_text(para) if para is not None else ""
    return CdaContent(HprimDocument(header, free, _lab(root, out)), None, out)


def read_crbio(xml: bytes) -> HprimDocument:
    """The HPRIM document a CR-BIO carries; DocumentError for a level-1 CDA."""
    content = read_cda(xml)
    if content.pdf is not None:
        raise DocumentError("CDA: level-1 document carries a PDF, not results")
    return content.document
