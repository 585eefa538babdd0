"""HPRIM Net text: a lenient parser that reports what it could not read, and an exact writer.

Layout and RES fields as the open-source records that read HPRIM Net agree on them (FreeHealth,
MedShakeEHR; this is not HPRIM Santé).  The parser never raises for sloppy input: it pads,
accepts the known variants, and lists every departure as a `Finding` with its line number
(field names only, never contents: findings end up in logs and the trace).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date

from gateway.documents.model import (
    Finding,
    HprimDocument,
    HprimFile,
    HprimHeader,
    LabLine,
    ResLine,
    TexLine,
)

__all__ = [
    "Finding",
    "HprimDocument",
    "HprimFile",
    "HprimHeader",
    "LabLine",
    "ResLine",
    "TexLine",
    "looks_like_hprim",
    "parse",
    "parse_date",
    "repair_headers",
    "write",
]

LAB, FIN, FINFICHIER = "****LAB****", "****FIN****", "****FINFICHIER****"
HEADER_FIELDS = (
    "patient_code",
    "last_name",
    "first_name",
    "address1",
    "address2",
    "postcode_city",
    "birth_date",
    "nir",
    "lab_ref",
    "exam_date",
)
RES_FIELDS = 14
KINDS = frozenset({"N", "A", "C"})
FLAGS = frozenset({"", "L", "H", "LL", "HH", "N"})
STATUSES = frozenset({"", "F", "R", "C"})
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
NIR = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6} [0-9]{2}")
_LINE_END = re.compile(r"\r\n|\r|\n")


def parse_date(raw: str) -> tuple[date | None, str | None]:
    """(date, None) for JJ/MM/AAAA or AAAA-MM-JJ; (None, why) otherwise — JJ/MM/AA is refused
    because choosing the century would be a guess."""
    text = raw.strip()
    if not text:
        return None, "empty"
    m = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", text)
    if m:
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
    elif m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text):
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    elif re.fullmatch(r"\d{2}/\d{2}/\d{2}", text):
        return None, "two-digit year: century not guessed"
    else:
        return None, "not a date (JJ/MM/AAAA or AAAA-MM-JJ)"
    try:
        return date(y, mo, d), None
    except ValueError:
        return None, "not a calendar date"


def looks_like_hprim(text: str) -> bool:
    """True when the text carries HPRIM Net end markers after a plausible identity header."""
    if "****" not in text:  # every marker holds it: a letter is not split line by line
        return False
    lines = [x.strip() for x in _LINE_END.split(text)]
    for i, line in enumerate(lines):
        if line in (FIN, FINFICHIER, LAB):
            return i >= 10
    return False


def _split_party(raw: str) -> tuple[str, str, bool]:
    """Lines 11/12: a 10-char code, a space, a name.  Returns (code, name, layout_ok)."""
    if len(raw) <= 10:
        return raw.strip(), "", True
    if raw[10] == " ":
        return raw[:10].strip(), raw[11:], True
    code, _, name = raw.partition(" ")
    return code, name, False


def _parse_header(lines: list[str], start: int, out: list[Finding]) -> tuple[HprimHeader, int]:
    """Read the 12 header lines (and the optional blank 13th) starting at index `start`."""
    values: dict[str, str] = {}
    got = lines[start : start + 12]
    for n, name in enumerate(HEADER_FIELDS):
        values[name] = got[n] if n < len(got) else ""
    if len(got) < 12:
        out.append(Finding("header-short", f"header has {len(got)} of 12 lines", start + 1))
    for name in ("address1", "address2"):
        values[name] = values[name].rstrip(" ")
    values["patient_code"] = values["patient_code"].strip()
    parties = []
    for n, role in ((10, "sender"), (11, "recipient")):
        code, name, ok = _split_party(got[n] if n < len(got) else "")
        if not ok:
            out.append(Finding(f"{role}-layout", f"{role} line: code not 10 chars", start + n + 1))
        parties += [code, name]
    header = HprimHeader(
        patient_code=values["patient_code"],
        last_name=values["last_name"],
        first_name=values["first_name"],
        address1=values["address1"],
        address2=values["address2"],
        postcode_city=values["postcode_city"],
        birth_date=values["birth_date"],
        nir=values["nir"],
        lab_ref=values["lab_ref"],
        exam_date=values["exam_date"],
        sender_code=parties[0],
        sender_name=parties[1],
        recipient_code=parties[2],
        recipient_name=parties[3],
    )
    dates: dict[str, date | None] = {}
    for attr, idx, name in (("birth", 6, "birth_date"), ("exam", 9, "exam_date")):
        parsed, why = parse_date(values[name])
        dates[attr] = parsed
        if why and idx < len(got):
            out.append(Finding(f"{name.replace('_', '-')}", f"{name}: {why}", start + idx + 1))
    nir = values["nir"].strip()
    if nir and not NIR.fullmatch(nir):
        out.append(Finding("nir", "nir: not 13 characters, a space and a 2-digit key", start + 8))
    end = start + len(got)
    blank13 = end < len(lines) and lines[end].strip() == "" and len(got) == 12
    header = replace(header, blank_line_13=blank13, birth=dates["birth"], exam=dates["exam"])
    return header, end + (1 if blank13 else 0)


def _parse_res(line: str, lineno: int, out: list[Finding]) -> ResLine:
    parts = line.split("|")[1:]
    if len(parts) > RES_FIELDS - 1:
        out.append(Finding("res-extra-fields", f"{len(parts) + 1} fields, extra ignored", lineno))
    parts = (parts + [""] * RES_FIELDS)[: RES_FIELDS - 1]
    res = ResLine(*parts)
    if res.kind not in KINDS:
        out.append(Finding("res-type", "field 4 (type) not N, A or C", lineno))
    if res.kind == "N" and res.value.strip() and not NUMBER.fullmatch(res.value.strip()):
        out.append(Finding("res-value", "field 5 (result) not a number for type N", lineno))
    if res.flag not in FLAGS:
        out.append(Finding("res-flag", "field 9 (flag) not L, H, LL, HH or N", lineno))
    if res.status not in STATUSES:
        out.append(Finding("res-status", "field 10 (status) not F, R or C", lineno))
    return res


# What neither XML (1.0) nor the PDF can carry: C0 controls but TAB, LF and CR (the form
# feeds of old printouts, DOS's Ctrl-Z, NULs), U+FFFE/U+FFFF and lone surrogates.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def parse(text: str) -> HprimFile:
    """Parse an HPRIM Net body (any line ends).  Never raises; see `HprimFile.findings`.
    Control characters are left out (and counted in a finding): the CDA and the PDF built
    from the documents cannot carry them."""
    findings: list[Finding] = []
    text, dropped = _NOT_TEXT.subn("", text)
    if dropped:
        findings.append(Finding("control-characters", f"{dropped} control character(s) left "
                                "out (form feed, NUL, Ctrl-Z…): a CDA or a PDF cannot hold them"))
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    docs: list[HprimDocument] = []
    i, ended = 0, False
    while i < len(lines):
        if lines[i].strip() == "":
            i += 1
            continue
        if lines[i].strip() == FINFICHIER:
            ended = True
            if any(x.strip() for x in lines[i + 1 :]):
                findings.append(Finding("after-end", "text after ****FINFICHIER****", i + 2))
            break
        header, i = _parse_header(lines, i, findings)
        free: list[str] = []
        lab: list[LabLine] | None = None
        closed = False
        while i < len(lines):
            raw, mark, lineno = lines[i], lines[i].strip(), i + 1
            i += 1
            if mark == FIN:
                closed = True
                break
            if mark == FINFICHIER:
                i -= 1
                break
            if mark == LAB and lab is None:
                lab = []
            elif lab is None:
                free.append(raw)
            elif raw.startswith("RES|") or raw == "RES":
                lab.append(_parse_res(raw, lineno, findings))
            elif raw.startswith("TEX|") or raw == "TEX":
                lab.append(TexLine(raw[4:]))
            elif mark:
                findings.append(
                    Finding("lab-line", "line in coded block is not TEX or RES", lineno)
                )
                lab.append(TexLine(raw))
        if not closed:
            findings.append(Finding("no-fin", "document not ended by ****FIN****", i))
        docs.append(HprimDocument(header, "\n".join(free), lab))
    if not docs:
        findings.append(Finding("empty", "no HPRIM document found", 1 if lines else None))
    return HprimFile(docs, findings, ended)


# The header lines that hold names and places typed by people (patient, address, prescriber
# and lab): the ones a short-string repair reads again.  Codes, dates and the NIR are ASCII.
NAME_FIELDS = ("last_name", "first_name", "address1", "address2", "postcode_city",
               "sender_name", "recipient_name")
_FIELD_LABELS = {"last_name": "HPRIM patient last name", "first_name": "HPRIM patient first name",
                 "address1": "HPRIM patient address", "address2": "HPRIM patient address",
                 "postcode_city": "HPRIM patient city", "sender_name": "HPRIM lab (sender)",
                 "recipient_name": "HPRIM prescriber (recipient)"}


def repair_headers(documents: Sequence[HprimDocument],
                   repair: Callable[[str, str], str]) -> list[HprimDocument]:
    """Each document with its name lines passed through ``repair(value, where)`` (the text
    engine's short-string repair, which records what it does): a header line garbled unlike
    the rest of the letter is read on its own evidence."""
    out = []
    for doc in documents:
        h = doc.header
        new = h
        for name in NAME_FIELDS:
            value = getattr(h, name)
            fixed = repair(value, _FIELD_LABELS[name])
            if fixed != value:
                new = replace(new, **{name: fixed})  # type: ignore[arg-type]
        out.append(doc if new is h else replace(doc, header=new))
    return out


def _party(code: str, name: str) -> str:
    return f"{code:<10} {name}" if name else code


_BREAK = re.compile(r"\r\n|\r|\n")


def _one_line(value: str) -> str:
    """A value on one line: what was a line break becomes a space (a parsed file has none;
    a CDA's text may)."""
    return _BREAK.sub(" ", value)


def _field(value: str) -> str:
    """A RES field: one line and no `|`, which would shift every field after it."""
    return _one_line(value).replace("|", "/")


def _header_lines(h: HprimHeader) -> list[str]:
    lines = [
        h.patient_code,
        h.last_name,
        h.first_name,
        f"{h.address1:<30}" if h.address1 else " ",
        f"{h.address2:<30}" if h.address2 else " ",
        h.postcode_city,
        h.birth_date,
        h.nir,
        h.lab_ref,
        h.exam_date,
        _party(h.sender_code, h.sender_name),
        _party(h.recipient_code, h.recipient_name),
    ]
    lines = [_one_line(x) for x in lines]
    return [*lines, ""] if h.blank_line_13 else lines


def _res_text(r: ResLine) -> str:
    fields = [_field(f) for f in r.fields()]
    # The second-unit group (fields 11-14) is written only when it holds something, as the
    # labs do; fields 2-10 are always written so that positions stay unambiguous.
    if not any(fields[9:]):
        fields = fields[:9]
    return "|".join(["RES", *fields])


def write(
    file_or_docs: HprimFile | HprimDocument | Sequence[HprimDocument],
    *,
    newline: str = "\r\n",
    end_file: bool = True,
) -> str:
    """HPRIM Net text for the documents, each ended by ****FIN****, then ****FINFICHIER****."""
    if isinstance(file_or_docs, HprimFile):
        docs: Sequence[HprimDocument] = file_or_docs.documents
    elif isinstance(file_or_docs, HprimDocument):
        docs = [file_or_docs]
    else:
        docs = file_or_docs
    out: list[str] = []
    for doc in docs:
        out += _header_lines(doc.header)
        if doc.free_text:
            # a line of text that reads as a marker would end the document early
            out += [" ".join(x) if x.strip() in (LAB, FIN, FINFICHIER) else x
                    for x in _BREAK.split(doc.free_text)]
        if doc.lab is not None:
            out.append(LAB)
            for item in doc.lab:
                if isinstance(item, ResLine):
                    out.append(_res_text(item))
                else:
                    out += [f"TEX|{x}" if x else "TEX" for x in _BREAK.split(item.text)]
        out.append(FIN)
    if end_file:
        out.append(FINFICHIER)
    return newline.join(out) + newline
