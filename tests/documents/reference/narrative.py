"""Frozen reference (see __init__).

The CDA narrative of an HPRIM report: free text and a results table whose cells keep the
exact HPRIM fields, each with an ID that observations point to (CDA `reference`)."""

from __future__ import annotations

from lxml import etree

from gateway.documents.cdaconst import H
from gateway.documents.model import LabLine, ResLine

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


def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, H + tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def free_text(parent: etree._Element, text: str) -> None:
    """A paragraph holding the report's free text, one `br` between lines."""
    para = sub(parent, "paragraph", ID="freetext")
    lines = text.split("\n")
    para.text = lines[0]
    for line in lines[1:]:
        br = sub(para, "br")
        br.tail = line


def table(parent: etree._Element, rows: list[tuple[str, LabLine]]) -> None:
    """The results table: one row per RES (ID res<n>) or TEX line (ID tex<n>), in order."""
    tab = sub(parent, "table", border="1")
    head = sub(sub(tab, "thead"), "tr")
    for title, _ in COLUMNS:
        sub(head, "th", title)
    body = sub(tab, "tbody")
    for row_id, item in rows:
        tr = sub(body, "tr", ID=row_id)
        if not isinstance(item, ResLine):
            sub(tr, "td", item.text, colspan=str(len(COLUMNS)), ID=f"{row_id}-text")
            continue
        fields = ("RES", *item.fields())
        for _, numbers in COLUMNS:
            td = sub(tr, "td")
            for k, n in enumerate(numbers):
                content = sub(td, "content", fields[n - 1], ID=f"{row_id}-f{n}")
                if k + 1 < len(numbers):
                    content.tail = SEPARATOR[numbers[k + 1]]
