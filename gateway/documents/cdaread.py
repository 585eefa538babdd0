"""Reading CDA R2 documents back into the HPRIM model: CR-BIO (level 3) and level 1 (PDF).

Our own CR-BIOs keep every RES field in the narrative table; the reader restores them from
there and checks that the structured entries say the same thing (a mismatch is a finding:
the narrative is what was attested).  CR-BIOs from other producers are read by `crbioread`:
their entries become RES/TEX lines, their narrative the report's text, their embedded files
(the PDF copy, images) attachments.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import date

from lxml import etree

from gateway.documents import crbioread, narrative, safexml
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
from gateway.documents.crbioread import Attachment
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
    # every file the CDA carries: the level-1 PDF, the PDF copy of a CR-BIO, images
    attachments: list[Attachment] = field(default_factory=list)
    text_only: int = 0  # facts of the report that no RES field carries (told in text)

    @property
    def level(self) -> int:
        return 1 if self.pdf is not None else 3


# A path of child steps (``h:a/h:b``, a step with an ``[@attr='OID']`` test) is walked by
# ElementPath (``findall``: the same elements, in document order, for a fraction of an XPath
# evaluation's set-up); any other expression is compiled once (``_Element.xpath`` compiles
# its expression on every call: some sixty calls a CR-BIO).  The paths are this module's own.
_STEP = r"h:[A-Za-z]+(\[@[A-Za-z]+='[0-9.]+'\])?"
_CHILD_PATH = re.compile(f"{_STEP}(/{_STEP})*")
_CHILDREN: dict[str, str] = {}  # path -> its ElementPath ("{urn:hl7-org:v3}a/…"), or ""
_COMPILED: dict[str, etree.XPath] = {}


def _child_path(path: str) -> str:
    found = _CHILDREN.get(path)
    if found is None:
        found = _CHILDREN[path] = path.replace("h:", H) if _CHILD_PATH.fullmatch(path) else ""
    return found


def _x(el: etree._Element, path: str) -> list[etree._Element]:
    children = _child_path(path)
    if children:
        return el.findall(children)
    compiled = _COMPILED.get(path)
    if compiled is None:
        compiled = _COMPILED[path] = etree.XPath(path, namespaces={"h": H[1:-1]})
    found = compiled(el)
    assert isinstance(found, list)
    return [x for x in found if isinstance(x, etree._Element)]


def _first(el: etree._Element, path: str) -> etree._Element | None:
    children = _child_path(path)
    if children:
        return el.find(children)
    found = _x(el, path)
    return found[0] if found else None


def _text(el: etree._Element, path: str) -> str:
    got = _first(el, path)
    return " ".join(alltext(got).split()) if got is not None else ""


def _attr(el: etree._Element, path: str, name: str) -> str:
    got = _first(el, path)
    return (got.get(name) or "") if got is not None else ""


def alltext(el: etree._Element) -> str:
    """All the text inside an element (not its tail)."""
    return "".join(t if isinstance(t, str) else t.decode() for t in el.itertext())


def _line(text: str) -> str:
    """A header value on one line (a CDA's names may hold the XML's indentation)."""
    return " ".join(text.split())


def _date(ts: str) -> date | None:
    try:
        return date(int(ts[0:4]), int(ts[4:6]), int(ts[6:8])) if len(ts) >= 8 else None
    except ValueError:
        return None


# INS roots: INS-NIR, INS-NIA, and the test and demo roots a document may carry
INS_ROOTS = (INS_NIR, "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
PATIENT_CODE_MAX = 10  # HPRIM line 1


def _header(root: etree._Element) -> tuple[HprimHeader, list[str]]:
    """The HPRIM header a CDA's header says, and what of it had to move into the text."""
    role = _first(root, "h:recordTarget/h:patientRole")
    if role is None:
        raise DocumentError("CDA: no recordTarget/patientRole")
    ids = {i.get("root"): i.get("extension") or "" for i in _x(role, "h:id")}
    moved: list[str] = []
    patient_code = ids.get(LEGACY_ROOT) or ""
    if not patient_code:
        # the sender's own identifier (an IPP), the INS going to line 8; one longer than
        # line 1's 10 characters is kept whole (an empty line 1 would shift the header and a
        # cut one would name another patient), and told in the text
        patient_code = next((v for k, v in ids.items() if k not in INS_ROOTS and v), "")
        if len(patient_code) > PATIENT_CODE_MAX:
            moved.append(f"Identifiant du patient chez l'émetteur : {patient_code}")
    nir = next((ids[r] for r in INS_ROOTS if ids.get(r)), "")
    streets = [_line(s.text or "") for s in _x(role, "h:addr/h:streetAddressLine")] + ["", ""]
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
    if len(sender_code) > 10:
        # line 11 holds a 10-character code: a longer identifier (an RPPS) is moved into
        # the name rather than cut into a wrong one
        sender_name = f"{sender_name} ({sender_code})".strip()
        sender_code = ""
    recip = _first(root, "h:informationRecipient/h:intendedRecipient")
    recipient_code = recipient_name = ""
    if recip is not None:
        recipient_code = _attr(recip, "h:id", "extension")
        recipient_name = _text(recip, "h:informationRecipient/h:name")
    return HprimHeader(
        patient_code=_line(patient_code),
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
    ), moved


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
            return None  # not our layout: crbioread reads it from its entries

        if not _agrees(row, _structured(obs)):
            out.append(Finding("narrative-mismatch", f"RES #{n}: entry differs from narrative"))
    for tr in rows.values():
        line = narrative.read_row(tr)
        if line is not None:
            ours.append(line)
    return ours


def note(attachments: int, text_only: int) -> str:
    """The line telling the reader what of the report is not in its RES lines."""
    said = []
    if text_only:
        said.append("une partie du compte rendu (résultats antérieurs, commentaires, germes, "
                    "codes ou interprétations sans champ HPRIM) n'est que dans ce texte")
    if attachments:
        said.append(f"{attachments} fichier(s) joint(s) à ce message (copie PDF du compte "
                    "rendu, images) en font partie")
    if not said:
        return ""
    return "Compte rendu CDA reçu par la passerelle : " + " ; ".join(said) + "."


def read_cda(xml: bytes, *, root: etree._Element | None = None) -> CdaContent:
    """Read a CR-BIO or a level-1 CDA; DocumentError if it is neither.  ``root``: ``xml``
    already parsed by ``safexml.parse`` (an unpacked package's ``XdmEntry.root``), which
    reading leaves as it is."""
    if root is None:
        root = safexml.parse(xml, what="CDA")
    if root.tag != H + "ClinicalDocument":
        raise DocumentError("CDA: root element is not ClinicalDocument")
    header, moved = _header(root)
    out: list[Finding] = []
    b64 = _first(root, "h:component/h:nonXMLBody/h:text")
    if b64 is not None:
        if b64.get("mediaType") != "application/pdf" or b64.get("representation") != "B64":
            raise DocumentError("CDA: level-1 body is not a base64 PDF")
        try:
            pdf = base64.b64decode("".join(alltext(b64).split()), validate=True)
        except (binascii.Error, ValueError):
            raise DocumentError("CDA: level-1 body is not valid base64") from None
        told = ("Compte rendu CDA reçu par la passerelle : le compte rendu entier est dans "
                "le fichier PDF joint à ce message.")
        return CdaContent(HprimDocument(header, "\n".join([told, *moved])), pdf, out,
                          [Attachment("application/pdf", pdf)])
    lab = _lab(root, out)
    if lab is not None:
        # our own layout: the narrative table holds every RES field exactly
        para = _first(root, "h:component/h:structuredBody//h:paragraph[@ID='freetext']")
        free = narrative.read_free_text(para) if para is not None else ""
        return CdaContent(HprimDocument(header, free, lab), None, out)
    if _first(root, "h:component/h:structuredBody") is None:
        raise DocumentError("CDA: neither a structuredBody nor a nonXMLBody")
    got = crbioread.read_body(root)
    out.extend(got.findings)
    text = crbioread.render(root)
    told = note(len(got.attachments), got.text_only + len(moved))
    free = "\n\n".join(x for x in (told, "\n".join(moved), text) if x)
    lines = got.lab if got.lab else None
    return CdaContent(HprimDocument(header, free, lines), None, out,
                      got.attachments, got.text_only)


def read_header(xml: bytes) -> tuple[HprimHeader, str]:
    """The HPRIM view of a CDA's header and its title, without reading its body."""
    root = safexml.parse(xml, what="CDA")
    if root.tag != H + "ClinicalDocument":
        raise DocumentError("CDA: root element is not ClinicalDocument")
    return _header(root)[0], _text(root, "h:title")


def read_crbio(xml: bytes) -> HprimDocument:
    """The HPRIM document a CR-BIO carries; DocumentError for a level-1 CDA."""
    content = read_cda(xml)
    if content.pdf is not None:
        raise DocumentError("CDA: level-1 document carries a PDF, not results")
    return content.document
