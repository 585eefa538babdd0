"""A small PDF writer for the report renditions: A4 pages of text lines and rules.

The fonts are reportlab's: its TrueType parser gives the metrics and its subsetter the embedded
font programme (`/FontFile2`); everything else (objects, content streams, xref) is written here,
because reportlab's general-purpose object model and platypus layout cost several milliseconds
per report. What does not depend on the document (the body face's embedded subset, widths and
ToUnicode map) is built and compressed once per process; the bytes depend only on the input.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

A4 = (595.2755905511812, 841.8897637795277)
_NOTDEF = 0xFFFD  # what a reader copies for a character the face has no glyph for
_LEVEL = 6  # zlib level of the per-report content streams (small: the level barely matters)


class _Codes(dict[int, str]):
    """`str.translate` table from a character to its escaped code in a PDF literal string."""

    def __missing__(self, key: int) -> str:
        return "\\000"  # .notdef: a box, like reportlab does for a missing glyph


def _literal(code: int) -> str:
    if code in (0x28, 0x29, 0x5C):  # ( ) \
        return "\\" + chr(code)
    if 0x20 <= code < 0x7F or code >= 0x80:
        return chr(code)  # the stream is written as Latin-1: one byte per code
    return f"\\{code:03o}"  # control codes (CR, LF among them) must be escaped


@dataclass(frozen=True)
class Subset:
    """One simple TrueType font resource: up to 255 characters of a face plus .notdef (code 0)."""

    font: TTFont
    chars: tuple[int, ...]  # code -> Unicode; 0 where the code is unused
    codes: _Codes = field(compare=False, hash=False)

    @property
    def tag(self) -> str:
        # The six-letter subset tag of ISO 32000 9.6.4, derived from the subset so that
        # different subsets of one face get different names.
        digest = hashlib.sha256(repr(self.chars).encode()).digest()
        return "".join(chr(65 + b % 26) for b in digest[:6])

    def objects(self, first: int) -> list[bytes]:
        """The font dictionary (numbered `first`), its descriptor, font file and ToUnicode map."""
        return _font_objects(self, first)


def subset(font: TTFont, chars: Iterable[int]) -> Subset:
    """The subset of `font` for these characters; ASCII keeps its own codes (readable streams)."""
    face = font.face
    table = _Codes()
    by_glyph: dict[int, int] = {}
    slots = [0] * 256
    rest: list[int] = []
    for char in sorted(set(chars)):
        glyph = face.charToGlyph.get(char)
        if glyph is None or glyph == 0:
            continue
        if glyph in by_glyph:
            table[char] = table[by_glyph[glyph]]
            continue
        by_glyph[glyph] = char
        if 0x20 <= char < 0x7F:
            slots[char] = char
            table[char] = _literal(char)
        else:
            rest.append(char)
    free = [c for c in [*range(0x80, 0x100), *range(0x01, 0x20), 0x7F] if not slots[c]]
    if len(rest) > len(free):
        raise ValueError(f"{len(by_glyph)} glyphs do not fit one simple font")
    for code, char in zip(free, rest, strict=False):
        slots[code] = char
        table[char] = _literal(code)
    if 0x20 in by_glyph and 0xA0 not in table:
        table[0xA0] = table[0x20]
    last = max(code for code, char in enumerate(slots) if char) if by_glyph else 0
    return Subset(font, tuple(slots[: last + 1]), table)


@functools.cache
def whole(font_name: str) -> Subset:
    """Every glyph of a registered face (Vera has 256, .notdef included: one simple font)."""
    font = pdfmetrics.getFont(font_name)
    assert isinstance(font, TTFont)
    return subset(font, font.face.charToGlyph)


@functools.lru_cache(maxsize=64)
def used(font_name: str, chars: frozenset[int]) -> Subset:
    """The subset of a registered face for the characters a report uses (cached: the bold face
    only sets the title and the table header, the same few characters every time)."""
    font = pdfmetrics.getFont(font_name)
    assert isinstance(font, TTFont)
    return subset(font, chars)


@functools.lru_cache(maxsize=64)
def _font_objects(sub: Subset, first: int) -> list[bytes]:
    face = sub.font.face
    base = f"{sub.tag}+{face.name.decode('latin-1')}"
    widths = " ".join(
        str(round(face.getCharWidth(c) if c else face.defaultWidth)) for c in sub.chars
    )
    font = (
        f"<< /Type /Font /Subtype /TrueType /BaseFont /{base} /FirstChar 0"
        f" /LastChar {len(sub.chars) - 1} /Widths [{widths}]"
        f" /FontDescriptor {first + 1} 0 R /ToUnicode {first + 3} 0 R >>"
    ).encode("ascii")
    flags = (face.flags & ~(1 << 5)) | (1 << 2)  # symbolic: the codes are the subset's own
    bbox = " ".join(str(v) for v in face.bbox)
    descriptor = (
        f"<< /Type /FontDescriptor /FontName /{base} /Flags {flags} /FontBBox [{bbox}]"
        f" /ItalicAngle {face.italicAngle} /Ascent {face.ascent} /Descent {face.descent}"
        f" /CapHeight {face.capHeight} /StemV {face.stemV} /MissingWidth {face.defaultWidth}"
        f" /FontFile2 {first + 2} 0 R >>"
    ).encode("ascii")
    program = face.makeSubset(list(sub.chars))
    fontfile = stream(program, extra=f"/Length1 {len(program)}", level=9)
    pairs = [(code, char) for code, char in enumerate(sub.chars) if char]
    cmap = "\n".join(
        [
            "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
            f"/CIDSystemInfo << /Registry ({base}) /Ordering ({base}) /Supplement 0 >> def",
            f"/CMapName /{base} def /CMapType 2 def",
            f"1 begincodespacerange <00> <{len(sub.chars) - 1:02X}> endcodespacerange",
            f"1 beginbfchar <00> <{_NOTDEF:04X}> endbfchar",
            *(
                f"{len(chunk)} beginbfchar\n"
                + "\n".join(f"<{code:02X}> <{char:04X}>" for code, char in chunk)
                + "\nendbfchar"
                for chunk in (pairs[i : i + 100] for i in range(0, len(pairs), 100))
            ),
            "endcmap CMapName currentdict /CMap defineresource pop end end",
        ]
    )
    return [font, descriptor, fontfile, stream(cmap.encode("ascii"), level=9)]


def stream(data: bytes, *, extra: str = "", level: int = _LEVEL) -> bytes:
    """A Flate-compressed stream object body."""
    packed = zlib.compress(data, level)
    head = f"<< /Length {len(packed)} /Filter /FlateDecode {extra}".rstrip() + " >>"
    return head.encode("ascii") + b"\nstream\n" + packed + b"\nendstream"


def text_string(value: str) -> str:
    """A PDF text string (Info values): UTF-16BE with its byte-order mark, in hex."""
    return "<FEFF" + value.encode("utf-16-be").hex().upper() + ">"


def write(pages: list[str], fonts: list[Subset], *, info: dict[str, str]) -> bytes:
    """A whole PDF: each page's content stream (PDF operators, text in `fonts`' codes; the
    fonts are /F1, /F2, ...), A4 pages, and a document information dictionary."""
    objects: list[bytes] = [b"", b"", b""]  # catalog, pages, info: filled below
    resources = []
    for n, sub in enumerate(fonts, start=1):
        resources.append(f"/F{n} {len(objects) + 1} 0 R")
        objects += sub.objects(len(objects) + 1)
    font_dict = " ".join(resources)
    kids = []
    for content in pages:
        number = len(objects) + 1
        kids.append(f"{number} 0 R")
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {A4[0]:.4f} {A4[1]:.4f}]"
                f" /Resources << /Font << {font_dict} >> /ProcSet [/PDF /Text] >>"
                f" /Contents {number + 1} 0 R >>"
            ).encode("ascii")
        )
        objects.append(stream(content.encode("latin-1")))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode("ascii")
    objects[2] = (
        "<< " + " ".join(f"/{k} {text_string(v)}" for k, v in info.items()) + " >>"
    ).encode("ascii")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number
        out += body
        out += b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    # /ID: required when encrypting only, but some readers like it; a digest keeps it invariant.
    ident = hashlib.md5(bytes(out), usedforsecurity=False).hexdigest().upper()
    out += (
        b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, ident.encode(), ident.encode(), xref)
    )
    return bytes(out)
