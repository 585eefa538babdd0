"""A PDF rendition of an HPRIM report: identity, free text and the results table.

reportlab with Bitstream Vera (shipped inside reportlab, embedded as TrueType subsets), which
covers French text including œ Œ « » € …; `invariant=1` makes the bytes depend only on the input.
"""

from __future__ import annotations

import io
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, Preformatted, SimpleDocTemplate, Spacer, Table, TableStyle

from gateway.documents.model import HprimDocument, ResLine

FONT, BOLD = "PasserelleVera", "PasserelleVera-Bold"
_FONTS = Path(reportlab.__file__).resolve().parent / "fonts"


def _register() -> None:
    registered = pdfmetrics.getRegisteredFontNames()
    for name, file in ((FONT, "Vera.ttf"), (BOLD, "VeraBd.ttf")):
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(_FONTS / file)))


def _range(low: str, high: str) -> str:
    return f"{low.strip()} – {high.strip()}" if low.strip() or high.strip() else ""


def render(doc: HprimDocument, *, title: str = "Compte rendu d'examens biologiques") -> bytes:
    """The PDF bytes of one HPRIM document."""
    _register()
    h = doc.header
    body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=11)
    head = ParagraphStyle("head", parent=body, fontName=BOLD, fontSize=13, leading=16)
    mono = ParagraphStyle("mono", parent=body, fontName=FONT, fontSize=8, leading=10)
    story: list[object] = [Paragraph(escape(title), head), Spacer(1, 3 * mm)]
    identity = [
        f"Patient : {h.last_name} {h.first_name}".strip(),
        f"Né(e) le : {h.birth_date}   Dossier : {h.lab_ref}   Examen du : {h.exam_date}",
        f"Émetteur : {h.sender_name} ({h.sender_code})   Destinataire : {h.recipient_name}",
    ]
    story += [Paragraph(escape(line), body) for line in identity]
    story.append(Spacer(1, 4 * mm))
    if doc.free_text:
        story.append(Preformatted(doc.free_text, mono))
        story.append(Spacer(1, 4 * mm))
    if doc.lab:
        rows: list[list[object]] = [
            ["Analyse", "Résultat", "Unité", "Normales", "", "Résultat (2)"]
        ]
        for item in doc.lab:
            if isinstance(item, ResLine):
                second = f"{item.value2.strip()} {item.unit2.strip()}".strip()
                rows.append(
                    [
                        Paragraph(escape(item.label), body),
                        item.value.strip(),
                        item.unit,
                        _range(item.low, item.high),
                        item.flag,
                        second,
                    ]
                )
            else:
                rows.append([Paragraph(escape(item.text), body), "", "", "", "", ""])
        table = Table(
            rows, colWidths=[62 * mm, 25 * mm, 22 * mm, 30 * mm, 10 * mm, 28 * mm], repeatRows=1
        )
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), FONT, 8),
                    ("FONT", (0, 0), (-1, 0), BOLD, 8),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story.append(table)
    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=title,
        author=h.sender_name,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        invariant=1,
        initialFontName=FONT,
    )
    pdf.build(story)
    return out.getvalue()
