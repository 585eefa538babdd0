"""The byte encodings legacy clients write, and the misreadings between them.

Windows reads CP1252 "sloppily": its five undefined bytes (0x81 0x8D 0x8F 0x90 0x9D) come
through as the Latin-1 control characters of the same value instead of failing.  Text that
went through such a reading must be encoded back the same way, so we build that codec here
(charmap tables, C speed) rather than depend on a registered codec name.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

_CP1252_HOLES = (0x81, 0x8D, 0x8F, 0x90, 0x9D)


def _sloppy_cp1252_table() -> str:
    chars = []
    for b in range(256):
        if b in _CP1252_HOLES:
            chars.append(chr(b))
        else:
            chars.append(bytes([b]).decode("cp1252"))
    return "".join(chars)


_SLOPPY_DECODE = _sloppy_cp1252_table()
_SLOPPY_ENCODE = codecs.charmap_build(_SLOPPY_DECODE)
# Python's cp850 codec encodes through a dict (slow); the same table as an EncodingMap.
_CP850_DECODE = bytes(range(256)).decode("cp850")
_CP850_ENCODE = codecs.charmap_build(_CP850_DECODE)


def decode(data: bytes, codec: str) -> str:
    """Decode strictly; ``cp1252`` means the sloppy Windows reading described above."""
    if codec == "cp1252":
        return codecs.charmap_decode(data, "strict", _SLOPPY_DECODE)[0]
    return data.decode(codec)


def encode(text: str, codec: str) -> bytes:
    """Encode strictly (raises UnicodeEncodeError when a character has no byte)."""
    if codec == "cp1252":
        return codecs.charmap_encode(text, "strict", _SLOPPY_ENCODE)[0]
    if codec == "cp850":
        return codecs.charmap_encode(text, "strict", _CP850_ENCODE)[0]
    return text.encode(codec)


# Single-byte encodings a legacy message may be written in, in order of prior likelihood.
SINGLE_BYTE = ("cp1252", "iso8859_15", "mac_roman", "cp850", "latin_1")

# Names we report (stable, what an operator would type as a hint).
DISPLAY = {
    "cp1252": "cp1252",
    "iso8859_15": "iso-8859-15",
    "latin_1": "iso-8859-1",
    "mac_roman": "mac_roman",
    "cp850": "cp850",
    "utf-8": "utf-8",
    "utf-16": "utf-16",
}

# Hints accepted on the command line and in the address book → our codec names.
HINTS = {
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
    "pc": "cp1252",
    "windows": "cp1252",
    "iso-8859-1": "latin_1",
    "latin-1": "latin_1",
    "latin1": "latin_1",
    "iso-8859-15": "iso8859_15",
    "latin-9": "iso8859_15",
    "mac_roman": "mac_roman",
    "macroman": "mac_roman",
    "mac-roman": "mac_roman",
    "mac": "mac_roman",
    "cp850": "cp850",
    "dos": "cp850",
    "utf-8": "utf-8",
    "utf8": "utf-8",
}


@dataclass(frozen=True)
class Misreading:
    """Text written in ``written`` was read as ``read_as`` and saved again.

    Undoing it: encode the text with ``read_as``, decode the bytes with ``written``.
    """

    written: str
    read_as: str

    @property
    def name(self) -> str:
        return f"{DISPLAY[self.written]} read as {DISPLAY[self.read_as]}"

    @property
    def kind(self) -> str:
        if self.written == "utf-8":
            return "mojibake"
        if {self.written, self.read_as} == {"mac_roman", "cp1252"}:
            return "mac_pc"
        return "misread"

    def undo(self, text: str) -> str:
        return decode(encode(text, self.read_as), self.written)


# Every misreading we know how to undo.  UTF-8 read as a single-byte charset is the classic
# mojibake; the Mac/PC pairs are the legacy network's own garbling.
MISREADINGS: tuple[Misreading, ...] = (
    Misreading("utf-8", "cp1252"),
    Misreading("utf-8", "latin_1"),
    Misreading("utf-8", "mac_roman"),
    Misreading("utf-8", "cp850"),
    Misreading("mac_roman", "cp1252"),
    Misreading("cp1252", "mac_roman"),
    Misreading("cp850", "cp1252"),
    Misreading("cp1252", "cp850"),
    Misreading("cp850", "mac_roman"),
    Misreading("mac_roman", "cp850"),
    Misreading("cp1252", "latin_1"),
    Misreading("iso8859_15", "cp1252"),
    Misreading("cp1252", "iso8859_15"),
)
