"""A PDF rendition of an HPRIM report: identity, free text and the results table.

Bitstream Vera (shipped inside reportlab, embedded as TrueType subsets) covers French text
including œ Œ « » € …; the bytes depend only on the input. The layout is drawn line by line
here (wrapping by the fonts' widths, page breaks, the table header repeated on each page) and
written by `pdfout`: reportlab's platypus did the same in 5–10 ms per report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import reportlab
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

from gateway.documents import pdfout
from gateway.documents.model import HprimDocument, ResLine

FONT, BOLD = "PasserelleVera", "PasserelleVera-Bold"
_FONTS = Path(reportlab.__file__).resolve().parent / "fonts"

# A4 with 15 mm side margins and 1 inch top and bottom; text starts 6 pt inside.
_WIDTH, _HEIGHT = pdfout.A4
_LEFT = 15 * mm + 6
_TOP = _HEIGHT - 72 - 6
_BOTTOM = 72 + 6
_TEXT_WIDTH = _WIDTH - 2 * _LEFT
_COLUMNS = (62 * mm, 25 * mm, 22 * mm, 30 * mm, 10 * mm, 28 * mm)
_TABLE_LEFT = 15 * mm + (180 * mm - sum(_COLUMNS)) / 2
_HEADER = ("Analyse", "Résultat", "Unité", "Normales", "", "Résultat (2)")
_PAD_X, _PAD_Y = 6.0, 3.0  # cell padding


@dataclass(frozen=True)
class _Style:
    font: int  # 1 regular, 2 bold (the /F1 /F2 resources)
    size: float
    leading: float


_TITLE = _Style(2, 13, 16)
_BODY = _Style(1, 9, 11)
_MONO = _Style(1, 8, 10)
_CELL = _Style(1, 8, 9.6)
_HEAD = _Style(2, 8, 9.6)


def _register() -> None:
    registered = pdfmetrics.getRegisteredFontNames()
    for name, file in ((FONT, "Vera.ttf"), (BOLD, "VeraBd.ttf")):
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(_FONTS / file)))


def _range(low: str, high: str) -> str:
    return f"{low.strip()} – {high.strip()}" if low.strip() or high.strip() else ""


def _width(text: str, style: _Style) -> float:
    return float(pdfmetrics.stringWidth(text, BOLD if style.font == 2 else FONT, style.size))


def _cut(word: str, style: _Style, width: float) -> int:
    """How many characters of `word` fit `width` (at least one)."""
    n = 1
    while n < len(word) and _width(word[: n + 1], style) <= width:
        n += 1
    return n


def _wrap(text: str, style: _Style, width: float) -> list[str]:
    """Lines of at most `width`: broken at spaces, a word wider than a line broken anywhere;
    leading spaces are kept (preformatted text), the spaces at a break are dropped."""
    if _width(text, style) <= width:
        return [text]
    lines: list[str] = []
    line: str | None = None
    for word in text.split(" "):
        candidate = word if line is None else f"{line} {word}"
        if _width(candidate, style) <= width:
            line = candidate
            continue
        if line is not None and line.strip():
            lines.append(line.rstrip())
        while _width(word, style) > width:
            n = _cut(word, style, width)
            lines.append(word[:n])
            word = word[n:]
        line = word or None
    if line is not None and line.strip():
        lines.append(line)
    return lines or [""]


@dataclass
class _Cell:
    x: float
    style: _Style
    lines: list[str]


class _Layout:
    """Pages of PDF operators, filled top to bottom."""

    def __init__(self, subsets: dict[int, pdfout.Subset]) -> None:
        self.subsets = subsets
        self.pages: list[str] = []
        self.ops: list[str] = []
        self.y = _TOP
        self.header: list[_Cell] | None = None  # repeated at the top of a page once set

    def line(self, x: float, text: str, style: _Style) -> None:
        """One line of text whose top is at the current position (the position does not move)."""
        if text:
            encoded = text.translate(self.subsets[style.font].codes)
            self.ops.append(
                f"BT /F{style.font} {style.size:g} Tf {x:.2f} {self.y - style.size:.2f} Td"
                f" ({encoded}) Tj ET\n"
            )

    def paragraph(self, lines: list[str], style: _Style, *, x: float = _LEFT) -> None:
        for text in lines:
            if self.y - style.leading < _BOTTOM and self.ops:
                self.new_page()
            self.line(x, text, style)
            self.y -= style.leading

    def space(self, height: float) -> None:
        self.y -= height

    def new_page(self) -> None:
        self.pages.append("".join(self.ops))
        self.ops = []
        self.y = _TOP
        if self.header is not None:
            self._draw_row(self.header, self._height(self.header))
            self.rule()

    def rule(self) -> None:
        left, right = _TABLE_LEFT, _TABLE_LEFT + sum(_COLUMNS)
        self.ops.append(f"0.5 w {left:.2f} {self.y:.2f} m {right:.2f} {self.y:.2f} l S\n")

    @staticmethod
    def _height(cells: list[_Cell]) -> float:
        return max(len(c.lines) * c.style.leading for c in cells) + 2 * _PAD_Y

    def _draw_row(self, cells: list[_Cell], height: float) -> None:
        top = self.y
        for cell in cells:
            self.y = top - _PAD_Y
            for text in cell.lines:
                self.line(cell.x + _PAD_X, text, cell.style)
                self.y -= cell.style.leading
        self.y = top - height

    def row(self, cells: list[_Cell]) -> None:
        """A table row, on the next page (under the header) if it does not fit this one, split
        between pages only when it is taller than a whole page."""
        while True:
            height = self._height(cells)
            if self.y - height >= _BOTTOM:
                self._draw_row(cells, height)
                return
            header = self._height(self.header) if self.header is not None else 0.0
            if height > _TOP - header - _BOTTOM:  # taller than a page: what fits here first
                room = self.y - _BOTTOM - 2 * _PAD_Y
                heads = [
                    _Cell(c.x, c.style, c.lines[: int(room // c.style.leading)]) for c in cells
                ]
                if any(h.lines for h in heads):
                    self._draw_row(heads, self._height(heads))
                    cells = [
                        _Cell(c.x, c.style, c.lines[len(h.lines) :])
                        for c, h in zip(cells, heads, strict=True)
                    ]
            self.new_page()

    def finish(self) -> list[str]:
        self.pages.append("".join(self.ops))
        return self.pages


def _chars(*texts: str) -> frozenset[int]:
    return frozenset(ord(c) for text in texts for c in text)


def render(doc: HprimDocument, *, title: str = "Compte rendu d'examens biologiques") -> bytes:
    """The PDF bytes of one HPRIM document."""
    _register()
    h = doc.header
    subsets = {
        1: pdfout.whole(FONT),
        2: pdfout.used(BOLD, _chars(title, *(_HEADER if doc.lab else ()))),
    }
    out = _Layout(subsets)
    out.paragraph(_wrap(title, _TITLE, _TEXT_WIDTH), _TITLE)
    out.space(3 * mm)
    identity = [
        f"Patient : {h.last_name} {h.first_name}".strip(),
        f"Né(e) le : {h.birth_date}   Dossier : {h.lab_ref}   Examen du : {h.exam_date}",
        f"Émetteur : {h.sender_name} ({h.sender_code})   Destinataire : {h.recipient_name}",
    ]
    for line in identity:
        out.paragraph(_wrap(line, _BODY, _TEXT_WIDTH), _BODY)
    out.space(4 * mm)
    free = doc.free_text.expandtabs(8).split("\n")
    while free and not free[0].strip():
        free.pop(0)
    while free and not free[-1].strip():
        free.pop()
    if free:
        out.paragraph([w for line in free for w in _wrap(line.rstrip(), _MONO, _TEXT_WIDTH)], _MONO)
        out.space(4 * mm)
    if doc.lab:
        _table(out, doc)
    return pdfout.write(
        out.finish(),
        [subsets[1], subsets[2]],
        info={"Title": title, "Author": h.sender_name, "Producer": "passerelle"},
    )


def _table(out: _Layout, doc: HprimDocument) -> None:
    xs = [_TABLE_LEFT + sum(_COLUMNS[:i]) for i in range(len(_COLUMNS))]
    # A label wraps inside its padding like a paragraph; a value, unit or range may run over
    # the paddings, up to 1 pt before the next column's text (platypus let such strings
    # overflow), before it wraps.
    inner = [_COLUMNS[0] - 2 * _PAD_X] + [w - 1 for w in _COLUMNS[1:]]
    header = [_Cell(x, _HEAD, [text]) for x, text in zip(xs, _HEADER, strict=True)]
    out.row(header)
    out.rule()
    out.header = header
    for item in doc.lab or []:
        if isinstance(item, ResLine):
            second = f"{item.value2.strip()} {item.unit2.strip()}".strip()
            texts = [item.value.strip(), item.unit, _range(item.low, item.high), item.flag, second]
            cells = [_Cell(xs[0], _BODY, _wrap(item.label, _BODY, inner[0]))]
            cells += [
                _Cell(x, _CELL, _wrap(text, _CELL, w))
                for x, text, w in zip(xs[1:], texts, inner[1:], strict=True)
            ]
        else:  # a comment line spans the table
            cells = [_Cell(xs[0], _BODY, _wrap(item.text, _BODY, sum(_COLUMNS) - 2 * _PAD_X))]
        out.row(cells)
