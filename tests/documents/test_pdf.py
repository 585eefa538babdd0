from __future__ import annotations

from gateway.documents import hprim, pdf
from tests.documents.conftest import corpus_files


def _doc() -> hprim.HprimDocument:
    text = next(p for p in corpus_files() if "several" in p.name).read_bytes().decode()
    return hprim.parse(text).documents[2]


def test_pdf_is_deterministic_with_embedded_truetype() -> None:
    data = pdf.render(_doc())
    assert data.startswith(b"%PDF-") and data == pdf.render(_doc())
    assert b"/FontFile2" in data  # TrueType embedded, not a base-14 font
    assert b"/Helvetica" not in data and b"/ToUnicode" in data


def test_font_covers_french() -> None:
    from reportlab.pdfbase import pdfmetrics

    pdf.render(_doc())
    face = pdfmetrics.getFont(pdf.FONT).face
    assert all(ord(c) in face.charToGlyph for c in "éèêàçùœŒ«»€…’ÉÈ")


def test_text_changes_the_pdf() -> None:
    doc = _doc()
    other = hprim.HprimDocument(doc.header, doc.free_text + "\nœ", doc.lab)
    assert pdf.render(other) != pdf.render(doc)
