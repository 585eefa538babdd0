"""What a reader of the PDF sees: the text drawn, read back through the fonts' ToUnicode maps."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics

from gateway.documents import hprim, pdf
from gateway.documents.model import HprimDocument, ResLine, TexLine
from tests.conftest import require_tool
from tests.documents.conftest import corpus_files

PAGE_WIDTH = 595.2755905511812


@dataclass(frozen=True)
class Drawn:
    """One string shown on a page: where, in which font and size, and its text."""

    page: int
    x: float
    y: float
    font: str  # the registered face: pdf.FONT or pdf.BOLD
    size: float
    text: str

    @property
    def right(self) -> float:
        return self.x + float(pdfmetrics.stringWidth(self.text, self.font, self.size))


def _objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """Each object's dictionary and decompressed stream, found through the xref table."""
    start = int(data[data.rindex(b"startxref") :].split()[1])
    head = re.match(rb"xref\n0 (\d+)\n", data[start:])
    assert head is not None
    table = data[start + head.end() :].split(b"\n")[: int(head[1])]
    found: dict[int, tuple[bytes, bytes | None]] = {}
    for number, entry in enumerate(table[1:], start=1):
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj\n" % number), number
        body = data[offset + len(b"%d 0 obj\n" % number) :]
        if b"stream\n" in body[: body.index(b"endobj")]:
            dictionary, rest = body.split(b"\nstream\n", 1)
            length = re.search(rb"/Length (\d+)", dictionary)
            assert length is not None
            raw = rest[: int(length[1])]
            assert rest[int(length[1]) :].startswith(b"\nendstream")
            found[number] = (dictionary, zlib.decompress(raw) if b"Flate" in dictionary else raw)
        else:
            found[number] = (body[: body.index(b"\nendobj")], None)
    return found


def _unescape(literal: bytes) -> bytes:
    def one(m: re.Match[bytes]) -> bytes:
        escaped = m[1]
        return bytes([int(escaped, 8)]) if escaped[:1].isdigit() else escaped

    return re.sub(rb"\\([0-7]{1,3}|.)", one, literal)


def drawn(data: bytes) -> list[Drawn]:
    objects = _objects(data)
    fonts: dict[int, tuple[str, dict[int, str]]] = {}
    for number, (dictionary, _) in objects.items():
        if b"/Type /Font " in dictionary:
            name = re.search(rb"/BaseFont /[A-Z]{6}\+(\S+)", dictionary)
            cmap_ref = re.search(rb"/ToUnicode (\d+) 0 R", dictionary)
            assert name is not None and cmap_ref is not None
            cmap = objects[int(cmap_ref[1])][1] or b""
            to_unicode = {
                int(code, 16): chr(int(char, 16))
                for code, char in re.findall(rb"<([0-9A-F]{2})> <([0-9A-F]{4})>", cmap)
            }
            face = pdf.BOLD if name[1].endswith(b"Bold") else pdf.FONT
            fonts[number] = (face, to_unicode)
    shown: list[Drawn] = []
    pages = [(d, s) for d, s in objects.values() if b"/Type /Page " in d]
    for page, (dictionary, _) in enumerate(pages):
        resources = {int(n): int(ref) for n, ref in re.findall(rb"/F(\d+) (\d+) 0 R", dictionary)}
        contents = re.search(rb"/Contents (\d+) 0 R", dictionary)
        assert contents is not None
        stream = objects[int(contents[1])][1] or b""
        for f, size, x, y, literal in re.findall(
            rb"BT /F(\d+) ([\d.]+) Tf ([\d.-]+) ([\d.-]+) Td \(((?:\\.|[^\\)])*)\) Tj ET", stream
        ):
            face, to_unicode = fonts[resources[int(f)]]
            text = "".join(to_unicode[b] for b in _unescape(literal))
            shown.append(Drawn(page, float(x), float(y), face, float(size), text))
    return shown


def _text(data: bytes) -> str:
    return "\n".join(d.text for d in drawn(data))


def _corpus() -> list[HprimDocument]:
    docs = []
    for path in corpus_files():
        raw = path.read_bytes()
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        docs += hprim.parse(text).documents
    return docs


def _result(n: int, **changes: str) -> ResLine:
    return replace(
        ResLine(f"Analyse {n}", f"C{n}", "N", f"{n}.{n % 10}", "mmol/l", "1", "9"), **changes
    )


@pytest.mark.parametrize("doc", _corpus(), ids=lambda d: d.header.lab_ref)
def test_every_fixture_shows_identity_free_text_and_results(doc: HprimDocument) -> None:
    data = pdf.render(doc)
    shown = drawn(data)
    text = _text(data)
    words = set(text.split())
    h = doc.header
    assert shown[0].text == "Compte rendu d'examens biologiques" and shown[0].font == pdf.BOLD
    for value in (h.last_name, h.first_name, h.birth_date, h.lab_ref, h.sender_name):
        assert value.strip() in text
    for line in doc.free_text.split("\n"):
        assert set(line.split()) <= words, line
    for item in doc.lab or []:
        if isinstance(item, ResLine):
            assert set(item.label.split()) <= words
            for value in (item.value, item.unit, item.flag):
                assert value.strip() in text
        else:
            assert set(item.text.split()) <= words
    if doc.lab:
        assert [d.text for d in shown if d.font == pdf.BOLD][1:] == [
            "Analyse",
            "Résultat",
            "Unité",
            "Normales",
            "Résultat (2)",
        ]
    assert all(15 * mm - 1 <= d.x and d.right <= PAGE_WIDTH - 15 * mm + 1 for d in shown)


def test_french_and_pdf_delimiters_read_back_and_a_missing_glyph_is_a_box() -> None:
    doc = _corpus()[0]
    line = "éèêàçùœŒ«»€…’ÉÈ (parenthèses) \\ barre β"
    data = pdf.render(replace(doc, free_text=line))
    assert "éèêàçùœŒ«»€…’ÉÈ (parenthèses) \\ barre \ufffd" in _text(data).split("\n")


def test_a_long_report_continues_with_the_header_row_on_every_page() -> None:
    doc = _corpus()[0]
    lab: list[ResLine | TexLine] = [_result(n) for n in range(150)]
    lab.insert(70, TexLine("Commentaire au milieu du tableau"))
    data = pdf.render(replace(doc, lab=lab))
    shown = drawn(data)
    pages = {d.page for d in shown}
    assert len(pages) >= 3
    for page in pages:
        top = max((d for d in shown if d.page == page and d.font == pdf.BOLD), key=lambda d: d.y)
        assert top.text in ("Compte rendu d'examens biologiques", "Analyse")
        assert [d.text for d in shown if d.page == page].count("Analyse") == 1
    values = [d.text for d in shown if d.font == pdf.FONT and re.fullmatch(r"\d+\.\d", d.text)]
    assert values == [f"{n}.{n % 10}" for n in range(150)]  # every row once, in order
    assert "Commentaire au milieu du tableau" in _text(data)
    assert all(d.y >= 72 for d in shown)


def test_a_long_label_wraps_inside_its_column() -> None:
    doc = _corpus()[0]
    label = " ".join(f"mot{n}" for n in range(60)) + " " + "X" * 120
    data = pdf.render(replace(doc, lab=[_result(1, label=label)]))
    lines = [d for d in drawn(data) if d.text.startswith(("mot", "X"))]
    assert len(lines) > 4
    assert "".join(d.text.replace(" ", "") for d in lines) == label.replace(" ", "")
    left = min(d.x for d in lines)
    assert all(d.x == left and d.right <= left + 62 * mm - 12 for d in lines)


def test_free_text_keeps_its_lines_and_wraps_a_long_one() -> None:
    doc = _corpus()[0]
    free = "\n\nPremière ligne\n    indentée\n\n" + "long " * 80 + "\nDernière\n\n"
    shown = drawn(pdf.render(replace(doc, free_text=free)))
    texts = [d.text for d in shown]
    start = texts.index("Première ligne")
    assert texts[start + 1] == "    indentée"
    wrapped = texts[start + 2 : texts.index("Dernière")]
    assert len(wrapped) > 1 and " ".join(wrapped).split() == ["long"] * 80


def test_a_comment_taller_than_a_page_goes_on_over_the_next_one() -> None:
    doc = _corpus()[0]
    comment = " ".join(f"c{n:04d}" for n in range(3000))
    shown = drawn(pdf.render(replace(doc, free_text="", lab=[TexLine(comment), _result(1)])))
    words = [w for d in shown for w in d.text.split() if w.startswith("c") and w[1:].isdigit()]
    assert words == comment.split() and len({d.page for d in shown}) > 1
    assert "1.1" in [d.text for d in shown]


def test_same_bytes_in_another_process() -> None:
    code = (
        "import sys; from tests.documents.test_pdf_content import _corpus; "
        "from gateway.documents import pdf; sys.stdout.buffer.write(pdf.render(_corpus()[-2]))"
    )
    root = Path(__file__).resolve().parents[2]
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            capture_output=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] == pdf.render(_corpus()[-2])


def test_qpdf_finds_the_structure_sound(tmp_path: Path) -> None:
    """An independent PDF reader's check (qpdf, installed by .ci/run: skipped elsewhere
    without it, never in CI)."""
    require_tool("qpdf")
    doc = _corpus()[0]
    lab: list[ResLine | TexLine] = [_result(n) for n in range(120)]
    for n, data in enumerate((pdf.render(doc), pdf.render(replace(doc, lab=lab)))):
        path = tmp_path / f"{n}.pdf"
        path.write_bytes(data)
        check = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
