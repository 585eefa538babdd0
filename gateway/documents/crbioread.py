"""Reading a CR-BIO from any producer: its entries become HPRIM RES/TEX lines, its narrative
readable text, its embedded files (the PDF copy, images) attachments.

What a CR-BIO 2024.01 may hold (the agency's examples in fixtures/ans/examples/ show each):
chapter and sub-chapter sections → `entry` (Laboratory Report Data Processing Entry) → `act`
→ results (`observation`), batteries (`organizer classCode="BATTERY"`), microbiology isolates
(`organizer classCode="CLUSTER"` whose `specimen` names the organism) holding their counts and
their antibiogram battery, comments (`act` with a text reference), previous results
(`entryRelationship typeCode="REFR"`), and "document attaché" clusters (a "type de document"
observation, which is not a result, and an `observationMedia` with the file).

One RES per result: label, code (field 3 when it fits, else told in a TEX line), type, value,
unit, reference range, flag (L/H/LL/HH/N only), status.  A sensitivity (S/I/R) is the result
of an antibiotic line (field 5) with the MIC as its second result (fields 11-12).  What a RES
line cannot carry (previous results, interpretations that are not HPRIM flags, a range given
as text, comments, organisms) follows as TEX lines; the whole narrative is rendered as the
report's free text, so the clinician reads everything the lab wrote.

The module stays whole (some 600 lines): one walk over the entries of a CR-BIO, the reading
of each value type beside the others, so that a value of a type the walk did not expect is
seen where all the others are read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from dataclasses import dataclass, field

from lxml import etree

from gateway.documents.cdaconst import LOCAL_LAB_CODES, LOCAL_UNITS, XSI_TYPE, H
from gateway.documents.model import Finding, LabLine, ResLine, TexLine

LOINC = "2.16.840.1.113883.6.1"
DOC_TYPE_CODE = "69764-9"  # "Type de document" of an attached document: not a result
DOC_TYPE_TEMPLATE = "1.2.250.1.213.1.1.3.48.18"
COMMENT_CODES = frozenset({"48767-8", "55112-7"})
FLAGS = {"N": "N", "L": "L", "H": "H", "LL": "LL", "HH": "HH", "LU": "LL", "HU": "HH"}
SENSITIVITY = {"S": "S", "I": "I", "R": "R", "MS": "I", "VS": "S", "SDD": "I", "NS": "R"}
CODE_MAX = 10  # analysis code field: lab codes and LOINC fit; a longer code is told in text
_CODE_OK = re.compile(rf"[A-Za-z0-9._/+-]{{1,{CODE_MAX}}}")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
SYSTEMS = {
    LOINC: "LOINC",
    "2.16.840.1.113883.6.96": "SNOMED CT",
    "2.16.840.1.113883.6.3": "CIM-10",
    "1.2.250.1.213.2.7": "NABM",
    "2.16.840.1.113883.3.9471": "NCBI",
}
MEDIA_EXT = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPG",
             "image/gif": "GIF", "image/tiff": "TIF", "text/plain": "TXT"}


@dataclass(frozen=True)
class Attachment:
    """A file the CDA carries (base64 in an observationMedia or a nonXMLBody)."""

    media_type: str
    data: bytes

    @property
    def extension(self) -> str:
        return MEDIA_EXT.get(self.media_type, "BIN")


@dataclass
class Reading:
    """What the reader gathered from one CR-BIO body."""

    lab: list[LabLine] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    text_only: int = 0  # facts a RES line could not carry, told in TEX lines and the text
    results: int = 0


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def ws(text: str) -> str:
    """Whitespace of the XML (indentation, line breaks) collapsed to single spaces."""
    return " ".join(text.split())


def field_text(text: str) -> str:
    """A value fit for one HPRIM field: one line, no `|`."""
    return ws(text.replace("|", "/"))


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return el.find(H + name)


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return el.findall(H + name)


class _Narrative:
    """The narrative elements that carry an ID, for `reference value="#id"` lookups."""

    def __init__(self, root: etree._Element) -> None:
        self.ids: dict[str, etree._Element] = {}
        for el in root.iter():
            if isinstance(el.tag, str) and el.get("ID"):
                self.ids.setdefault(el.get("ID") or "", el)

    def text(self, ref: str) -> str:
        el = self.ids.get(ref.strip().lstrip("#"))
        if el is None:
            return ""
        return ws("".join(t for t in el.itertext() if isinstance(t, str)))

    def original(self, el: etree._Element | None) -> str:
        """The text of an `originalText` or `text` element: its own, else what it refers to."""
        if el is None:
            return ""
        ref = _child(el, "reference")
        own = ws(el.text or "")
        if own:
            return own
        return self.text(ref.get("value") or "") if ref is not None else ""


def _system(code: etree._Element) -> str:
    oid = code.get("codeSystem") or ""
    return code.get("codeSystemName") or SYSTEMS.get(oid, oid)


def _code_text(code: etree._Element | None, narr: _Narrative) -> str:
    """A coded thing as words: display name, else the narrative it points to, else a
    translation's display name, else the code with its system."""
    if code is None:
        return ""
    shown = ws(code.get("displayName") or "")
    if shown:
        return shown
    shown = narr.original(_child(code, "originalText"))
    if shown:
        return shown
    for tr in _children(code, "translation"):
        if tr.get("displayName"):
            return ws(tr.get("displayName") or "")
    if code.get("code"):
        system = _system(code)
        return f"{code.get('code')} ({system})" if system else code.get("code") or ""
    return ""


def _pq(el: etree._Element | None) -> tuple[str, str]:
    """(value, unit) of a PQ-like element; UCUM "1" (no unit) is no unit."""
    if el is None:
        return "", ""
    unit = el.get("unit") or ""
    return (el.get("value") or "").strip(), "" if unit == "1" else unit


def _ts(value: str) -> str:
    """An HL7 TS as a French date (and time when given)."""
    m = re.match(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?", value or "")
    if not m:
        return value
    y, mo, d, hh, mi = m.groups()
    out = "/".join(x for x in (d, mo, y) if x)
    return f"{out} {hh}:{mi or '00'}" if hh else out


@dataclass
class _Value:
    kind: str = "A"
    value: str = ""
    unit: str = ""
    had_value: bool = False  # the CDA gave a value (not a bare nullFlavor)
    note: str = ""  # what the field could not say, for a TEX line
    second: _Value | None = None  # a PQ's translation into another unit


def _interval(el: etree._Element) -> tuple[str, str]:
    """An IVL_PQ as one field: "<0.128", ">=0.512", "3.5-8", with its unit."""
    low, high = _child(el, "low"), _child(el, "high")
    lv, lu = _pq(low)
    hv, hu = _pq(high)
    center = _child(el, "center")
    if lv and hv:
        return f"{lv}-{hv}", lu or hu
    if lv and low is not None:
        return (">=" if low.get("inclusive", "true") != "false" else ">") + lv, lu
    if hv and high is not None:
        return ("<=" if high.get("inclusive", "true") != "false" else "<") + hv, hu
    cv, cu = _pq(center)
    return cv, cu


def _value(value: etree._Element | None, narr: _Narrative, out: Reading) -> _Value:
    if value is None:
        return _Value()
    vtype = (value.get(XSI_TYPE) or "").split(":")[-1]
    got = _Value(had_value=value.get("nullFlavor") is None or len(value) > 0
                 or bool(value.get("value") or value.get("code")))
    if vtype in ("PQ", "INT", "REAL", "MO"):
        got.kind = "N"
        got.value, got.unit = _pq(value)
        own = value.find(f"{H}translation[@codeSystem='{LOCAL_UNITS}']")
        if own is not None:  # passerelle's own CR-BIO: the value and unit the lab wrote
            got.value = (own.get("value") or got.value).strip()
            got.unit = own.get("code") or got.unit
        else:
            other = next((t for t in _children(value, "translation")
                          if t.get("value") and _NUMBER.fullmatch(t.get("value") or "")), None)
            if other is not None:  # PQR: the result in another unit
                got.second = _Value("N", (other.get("value") or "").strip(),
                                    field_text(other.get("code") or ""), True)
        if vtype == "MO":
            got.unit = value.get("currency") or ""
        if got.value and not _NUMBER.fullmatch(got.value):
            got.kind = "A"
    elif vtype == "IVL_PQ" or vtype == "IVL_INT" or vtype == "IVL_REAL":
        got.value, got.unit = _interval(value)
    elif vtype in ("CD", "CE", "CV", "CO", "CS"):
        shown = ws(value.get("displayName") or "") or narr.original(
            _child(value, "originalText"))
        if shown:
            got.value = shown
        elif value.get("code"):
            got.kind = "C"
            got.value = value.get("code") or ""
            system = _system(value)
            if system:
                got.note = f"code {got.value} ({system})"
        else:
            got.value = _code_text(value, narr)
    elif vtype in ("RTO", "RTO_PQ_PQ", "RTO_INT_INT", "RTO_MO_PQ"):
        num, nunit = _pq(_child(value, "numerator"))
        den, dunit = _pq(_child(value, "denominator"))
        got.value = f"{num}/{den}" if num or den else ""
        if nunit and dunit and nunit != dunit:
            got.unit = f"{nunit}/{dunit}"
        elif nunit and not dunit:
            got.unit = nunit
    elif vtype in ("TS", "IVL_TS"):
        got.value = _ts(value.get("value") or _pq(_child(value, "low"))[0])
    elif vtype == "BL":
        got.value = {"true": "oui", "false": "non"}.get(value.get("value") or "", "")
    elif vtype == "ED":
        ref = _child(value, "reference")
        media = value.get("mediaType") or "text/plain"
        if value.get("representation") == "B64" or not media.startswith("text/"):
            data = _b64(value, out)
            if data:
                out.attachments.append(Attachment(media, data))
                got.value = "voir le fichier joint"
                got.note = f"valeur jointe en fichier ({media})"
        else:
            got.value = ws("".join(t for t in value.itertext() if isinstance(t, str)))
            if not got.value and ref is not None:
                got.value = narr.text(ref.get("value") or "")
    else:  # ST, SC and any type this reader does not know: the words it holds
        got.value = ws("".join(t for t in value.itertext() if isinstance(t, str)))
        if not got.value:
            ref = _child(value, "reference")
            got.value = narr.text(ref.get("value") or "") if ref is not None else ""
        if not got.value and value.get("value"):
            got.value = value.get("value") or ""
        if vtype not in ("ST", "SC", ""):
            out.findings.append(Finding("value-type", f"value type {vtype} read as text"))
    got.value = field_text(got.value)
    got.unit = field_text(got.unit)
    return got


def _b64(el: etree._Element, out: Reading) -> bytes:
    text = "".join(t for t in el.itertext() if isinstance(t, str))
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        out.findings.append(Finding("attachment", "an embedded file is not valid base64"))
        return b""


def _label(obs: etree._Element, narr: _Narrative, value: str) -> str:
    code = _child(obs, "code")
    if code is None:
        return ""
    own = code.find(f"{H}translation[@codeSystem='{LOCAL_LAB_CODES}']")
    if own is not None and own.get("displayName"):
        return own.get("displayName") or ""
    shown = narr.original(_child(code, "originalText"))
    # some producers point the code's originalText at the value's cell: not a label then
    number = _NUMBER.search(value)
    if shown and not (number and number.group() in shown) and shown != value:
        return shown
    return _code_text(code, narr)


def _analysis_code(obs: etree._Element) -> tuple[str, str]:
    """(the code for field 3, a note when it does not fit there)."""
    code = _child(obs, "code")
    if code is None:
        return "", ""
    own = code.find(f"{H}translation[@codeSystem='{LOCAL_LAB_CODES}']")
    if own is not None and own.get("code"):
        code = own  # passerelle's own CR-BIO: the lab's code
    found = code.get("code") or ""
    if not found:
        tr = _child(code, "translation")
        found = (tr.get("code") or "") if tr is not None else ""
        if tr is not None:
            code = tr
    if not found or _CODE_OK.fullmatch(found):
        return found, ""
    return "", f"code {found} ({_system(code)})"


def _not_normal(observation_range: etree._Element) -> bool:
    """Whether a reference range is for another interpretation than normal (sorted last)."""
    code = _child(observation_range, "interpretationCode")
    return code is not None and code.get("code") not in (None, "N")


class _Walker:
    def __init__(self, narr: _Narrative, out: Reading) -> None:
        self.narr = narr
        self.out = out
        self.isolate = ""

    def tex(self, text: str, *, only_here: bool = True) -> None:
        for line in text.split("\n"):
            self.out.lab.append(TexLine(field_text(line)))
        if only_here:
            self.out.text_only += 1

    def walk(self, el: etree._Element) -> None:
        for child in el:
            name = _local(child)
            if name == "section":
                title = ws(child.findtext(H + "title") or "")
                mark = len(self.out.lab)
                if title:
                    self.tex(title.upper(), only_here=False)
                self.walk(child)
                if len(self.out.lab) == mark + 1 and title:
                    self.out.lab.pop()  # a section with no result: its title says nothing
            elif name in ("component", "entry", "entryRelationship", "structuredBody"):
                if child.get("typeCode") == "REFR" and _local(el) == "observation":
                    continue  # previous results: told with their result
                self.walk(child)
            elif name == "observation":
                self.observation(child)
            elif name == "organizer":
                self.organizer(child)
            elif name == "act":
                self.act(child)
            elif name == "observationMedia":
                self.media(child)

    def media(self, el: etree._Element) -> None:
        value = _child(el, "value")
        if value is None:
            return
        media = value.get("mediaType") or "application/octet-stream"
        data = _b64(value, self.out) if value.get("representation") == "B64" else b""
        if data:
            self.out.attachments.append(Attachment(media, data))
        else:
            self.out.findings.append(Finding("attachment", "an observationMedia without "
                                             "inline base64 content is left out"))

    def act(self, el: etree._Element) -> None:
        code = _child(el, "code")
        text = self.narr.original(_child(el, "text"))
        parent = el.getparent()
        is_comment = text and (code is None or (code.get("code") or "") in COMMENT_CODES
                               or (parent is not None and parent.get("typeCode") == "SUBJ"))
        if is_comment:
            self.tex(f"Commentaire : {text}")
        self.walk(el)

    def organizer(self, el: etree._Element) -> None:
        playing = el.find(f"{H}specimen/{H}specimenRole/{H}specimenPlayingEntity")
        if el.get("classCode") == "CLUSTER" and playing is not None:
            code = _child(playing, "code")
            # the lab's own words for the organism first (the narrative it points to)
            organism = (self.narr.original(_child(code, "originalText")) if code is not None
                        else "") or _code_text(code, self.narr) or ws(
                playing.findtext(f"{H}name") or "")
            before, self.isolate = self.isolate, organism
            self.result(ResLine(label="Germe identifié", code=self._organism_code(playing),
                                kind="A", value=field_text(organism),
                                status=self._status(el)), had_value=bool(organism))
            self.walk(el)
            self.isolate = before
            return
        code = _child(el, "code")
        if code is not None and (code.get("code") or "") == "55107-7":  # document attaché
            self.walk(el)
            return
        title = _code_text(code, self.narr)
        if code is not None:
            own = self.narr.original(_child(code, "originalText"))
            title = own or title
        if title:
            self.tex(title + (f" ({self.isolate})" if self.isolate else ""), only_here=False)
        self.walk(el)

    @staticmethod
    def _organism_code(playing: etree._Element) -> str:
        code = _child(playing, "code")
        found = (code.get("code") or "") if code is not None else ""
        return found if _CODE_OK.fullmatch(found or "-") and found else ""

    @staticmethod
    def _status(el: etree._Element) -> str:
        st = _child(el, "statusCode")
        return {"completed": "F", "active": "R"}.get(st.get("code") or "" if st is not None
                                                     else "", "")

    def observation(self, obs: etree._Element) -> None:
        code = _child(obs, "code")
        templates = {t.get("root") for t in _children(obs, "templateId")}
        if (code is not None and code.get("code") == DOC_TYPE_CODE) or (
                DOC_TYPE_TEMPLATE in templates):
            return  # the "type de document" of an attached file is not a result
        values = _children(obs, "value")
        value = _value(values[0] if values else None, self.narr, self.out)
        extra = [_value(v, self.narr, self.out) for v in values[1:]]
        if not values:
            # no value element: the narrative the observation points to, else say so
            said = self.narr.original(_child(obs, "text"))
            value = _Value(value=field_text(said) or "(sans valeur)", had_value=True)
        label = _label(obs, self.narr, value.value)
        analysis, code_note = _analysis_code(obs)
        interp = [(i.get("code") or "", _code_text(i, self.narr))
                  for i in _children(obs, "interpretationCode")]
        flag, sensitivity, others = "", "", []
        for c, shown in interp:
            if c in FLAGS and not flag:
                flag = FLAGS[c]
            elif c in SENSITIVITY and not sensitivity:
                sensitivity = SENSITIVITY[c]
            elif c or shown:
                others.append(shown or c)
        low = high = ""
        ranges: list[str] = []
        found = list(obs.iterfind(f"{H}referenceRange/{H}observationRange"))
        # the normal range first (the one without interpretation, or N), others told after
        found.sort(key=_not_normal)
        for rr in found:
            rv = _child(rr, "value")
            text = self.narr.original(_child(rr, "text"))
            if rv is not None and (rv.get(XSI_TYPE) or "").endswith("IVL_PQ") and not (
                    low or high):
                low, high = _pq(_child(rv, "low"))[0], _pq(_child(rv, "high"))[0]
                if not (low or high):
                    ranges.append(_interval(rv)[0])
            elif rv is not None:
                ranges.append(_value(rv, self.narr, self.out).value)
            if text:
                ranges.append(text)
        if self.isolate and label:
            label = f"{label} [{self.isolate}]"
        res = ResLine(label=field_text(label), code=analysis, kind=value.kind,
                      value=value.value, unit=value.unit, low=field_text(low),
                      high=field_text(high), flag=flag, status=self._status(obs))
        second = next((v for v in extra if v.kind == "N"), None) or value.second
        if second is not None and not sensitivity:
            # the same result in another unit: HPRIM's second result (fields 11-12)
            res = dataclasses.replace(res, value2=second.value, unit2=second.unit)
        if sensitivity:
            # antibiogram: S/I/R is the result, the MIC (if any) the second result
            res = ResLine(label=res.label, code=res.code, kind="A", value=sensitivity,
                          unit="", low="", high="", flag="", status=res.status,
                          value2=value.value, unit2=value.unit)
        self.result(res, had_value=value.had_value)
        notes = [n for n in (code_note, value.note) if n]
        notes += [f"autre valeur : {v.value} {v.unit}".strip() for v in extra
                  if v is not second and v.value]
        notes += [f"interprétation : {o}" for o in others]
        notes += [f"valeurs de référence : {r}" for r in ranges if r]
        for note in notes:
            self.tex(f"  {res.label or 'résultat'} : {note}")
        for rel in _children(obs, "entryRelationship"):
            if rel.get("typeCode") == "REFR":
                for prev in _children(rel, "observation"):
                    self.previous(prev)
        for rel in _children(obs, "entryRelationship"):
            if rel.get("typeCode") != "REFR":
                self.walk(rel)

    def previous(self, prev: etree._Element) -> None:
        value = _value(_child(prev, "value"), self.narr, self.out)
        when = _child(prev, "effectiveTime")
        stamp = _ts((when.get("value") or "") if when is not None else "")
        if not stamp and when is not None:
            stamp = _ts(_pq(_child(when, "low"))[0] or _pq(_child(when, "high"))[0])
        said = " ".join(x for x in (value.value, value.unit) if x) or "(sans valeur)"
        self.tex(f"  résultat antérieur{' du ' + stamp.split(' ')[0] if stamp else ''} : {said}")

    def result(self, res: ResLine, *, had_value: bool) -> None:
        if had_value and not res.value.strip():
            # never an empty RES value where the CDA gave one: say what is there
            self.out.findings.append(Finding("value-unread", "a result's value could not be "
                                             "read: it is in the report's text"))
            res = dataclasses.replace(res, kind="A", value="voir le texte du compte rendu")
        self.out.results += 1
        self.out.lab.append(res)


def read_body(root: etree._Element) -> Reading:
    """The lab lines and embedded files of a structured CDA body (any producer)."""
    out = Reading()
    body = root.find(f"{H}component/{H}structuredBody")
    if body is None:
        return out
    _Walker(_Narrative(body), out).walk(body)
    return out


_BLOCK = frozenset({"paragraph", "tr", "item", "caption", "list", "table", "thead", "tbody",
                    "tfoot"})


def render(root: etree._Element) -> str:
    """The narrative of every section as readable text: titles, paragraphs, one line per
    table row (cells separated by two spaces), list items with a dash."""
    body = root.find(f"{H}component/{H}structuredBody")
    if body is None:
        return ""
    lines: list[str] = []

    def inline(el: etree._Element) -> str:
        parts = [el.text or ""]
        for c in el:
            name = _local(c)
            if name == "br":
                parts.append("\n")
            elif name == "renderMultiMedia":
                parts.append("[fichier joint]")
            elif name:
                parts.append(inline(c))
            parts.append(c.tail or "")
        return "".join(parts)

    def block(el: etree._Element, depth: int) -> None:
        name = _local(el)
        if name == "tr":
            cells = [" / ".join(ws(x) for x in inline(c).split("\n") if ws(x))
                     for c in el if _local(c) in ("td", "th")]
            row = "  ".join(c for c in cells if c)
            if row:
                lines.append(row)
            return
        if name == "item":
            text = ws(inline(el).replace("\n", " "))
            if text:
                lines.append(f"- {text}")
            return
        if name in ("list", "table", "thead", "tbody", "tfoot", "text"):
            if el.text and ws(el.text):
                lines.append(ws(el.text))
            for c in el:
                if _local(c) in _BLOCK or _local(c) == "tr":
                    block(c, depth)
                elif _local(c) == "br":
                    pass
                elif _local(c):
                    lines.extend(ws(x) for x in inline(c).split("\n") if ws(x))
                if c.tail and ws(c.tail):
                    lines.append(ws(c.tail))
            return
        # paragraph, caption, content at block level
        lines.extend(ws(x) for x in inline(el).split("\n") if ws(x))

    def section(sec: etree._Element, depth: int) -> None:
        title = ws(sec.findtext(H + "title") or "")
        if title:
            lines.append("")
            lines.append(title.upper() if depth == 0 else title)
        text = _child(sec, "text")
        if text is not None:
            block(text, depth)
        for comp in _children(sec, "component"):
            sub = _child(comp, "section")
            if sub is not None:
                section(sub, depth + 1)

    for comp in _children(body, "component"):
        sec = _child(comp, "section")
        if sec is not None:
            section(sec, 0)
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)
