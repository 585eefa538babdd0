"""The CDA narrative of an HPRIM report: free text and a results table whose cells keep the
exact HPRIM fields, each with an ID that observations point to (CDA `reference`); and the
XML text writing (escaping as lxml serialises) that cda builds documents with."""

from __future__ import annotations

import re

from lxml import etree

from gateway.documents.cdaconst import H
from gateway.documents.model import LabLine, ResLine, TexLine

# Column layout: (heading, field numbers shown in that cell).  Every RES field 2-14 has a
# `content` with ID "<row>-f<n>" so the reader can restore it exactly.
COLUMNS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Code", (3, 4)),
    ("Analyse", (2,)),
    ("Résultat", (5,)),
    ("Unité", (6,)),
    ("Normales", (7, 8)),
    ("Anomalie", (9,)),
    ("Statut", (10,)),
    ("Résultat (2)", (11,)),
    ("Unité (2)", (12,)),
    ("Normales (2)", (13, 14)),
)
SEPARATOR = {4: " ", 8: " – ", 14: " – "}  # shown between two fields of one cell


# The CDA is written as text, not as an lxml tree (an element a field: some 300 SubElement
# calls a document were most of the time it took).  What is written is exactly what lxml
# wrote for the same tree — the golden files (tests/documents/test_golden.py) hold it to that —
# so the escaping below is libxml2's serialisation: `<`, `>`, `&` and CR in text; those, `"`,
# TAB and LF in attribute values.  Strings XML cannot carry are refused as lxml refused them.
_UNFIT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r]')
_TEXT_ANY = re.compile("[&<>\\x00-\\x08\\x0b-\\x1f\\ufffe\\uffff\\ud800-\\udfff]")
_ATTR_ANY = re.compile('[&<>"\\x00-\\x1f\\ufffe\\uffff\\ud800-\\udfff]')
_ESCAPES = {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "\t": "&#9;", "\n": "&#10;", "\r": "&#13;",
}


def _refuse(value: str, found: str) -> None:
    if "\ud800" <= found <= "\udfff":
        value.encode("utf-8")  # UnicodeEncodeError, as lxml raised
    raise ValueError("All strings must be XML compatible: Unicode or ASCII, no NULL bytes or "
                     "control characters")


def text(value: str) -> str:
    """`value` as element content."""
    if _TEXT_ANY.search(value) is None:  # the usual case: one scan
        return value
    bad = _UNFIT.search(value)
    if bad:
        _refuse(value, bad.group())
    return _TEXT_SPECIAL.sub(lambda m: _ESCAPES[m.group()], value)


def attr(value: str) -> str:
    """`value` as an attribute value (between double quotes)."""
    if _ATTR_ANY.search(value) is None:
        return value
    bad = _UNFIT.search(value)
    if bad:
        _refuse(value, bad.group())
    return _ATTR_SPECIAL.sub(lambda m: _ESCAPES[m.group()], value)


def el(tag: str, content: str | None = None, **attrs: str) -> str:
    """One element with no child element: `content` is text (None: an empty `<tag/>`)."""
    head = "<" + tag + "".join(f' {k.rstrip("_")}="{attr(v)}"' for k, v in attrs.items())
    if content is None:
        return head + "/>"
    return f"{head}>{text(content)}</{tag}>"


def free_text(text_: str) -> str:
    """A paragraph holding the report's free text, one `br` between lines."""
    return '<paragraph ID="freetext">' + "<br/>".join(map(text, text_.split("\n"))) + "</paragraph>"


def _row_template() -> str:
    # "{n}" is RES field n (field 1, the tag, is "RES"); "{0}" is the row ID
    cells = []
    for _, numbers in COLUMNS:
        parts = []
        for k, n in enumerate(numbers):
            parts.append(f'<content ID="{{0}}-f{n}">{{{n}}}</content>')
            if k + 1 < len(numbers):
                parts.append(SEPARATOR[numbers[k + 1]])
        cells.append("<td>" + "".join(parts) + "</td>")
    return '<tr ID="{0}">' + "".join(cells) + "</tr>"


_ROW = _row_template()
_HEAD = "<thead><tr>" + "".join(f"<th>{text(t)}</th>" for t, _ in COLUMNS) + "</tr></thead>"


def table(rows: list[tuple[str, LabLine]]) -> str:
    """The results table: one row per RES (ID res<n>) or TEX line (ID tex<n>), in order."""
    out = ['<table border="1">', _HEAD, "<tbody>"]
    for row_id, item in rows:
        if not isinstance(item, ResLine):
            out.append(f'<tr ID="{row_id}"><td colspan="{len(COLUMNS)}" ID="{row_id}-text">'
                       f"{text(item.text)}</td></tr>")
            continue
        out.append(_ROW.format(row_id, "RES", *map(text, item.fields())))
    out.append("</tbody></table>")
    return "".join(out)


def read_free_text(para: etree._Element) -> str:
    parts = [para.text or ""]
    for br in para:
        parts.append(br.tail or "")
    return "\n".join(parts)


def read_row(tr: etree._Element) -> LabLine | None:
    """The TEX or RES line of one of our table rows; None if the row is not in our layout."""
    row_id = tr.get("ID") or ""
    if row_id.startswith("tex"):
        td = tr.find(H + "td")
        return None if td is None else TexLine(td.text or "")
    if not row_id.startswith("res"):
        return None
    found = {c.get("ID"): c.text or "" for c in tr.iter(H + "content")}
    keys = [f"{row_id}-f{n}" for n in range(2, 15)]
    if not all(k in found for k in keys):
        return None
    return ResLine(*(found[k] for k in keys))
