"""Writing text for legacy software: in the recipient's charset, with CRLF line ends.

What a legacy charset cannot hold is written the way a typist would (curly quotes become
straight ones, « » become ", € becomes EUR …) or, failing that, as ``?`` — never dropped
silently: each replacement is counted, and the caller records the count in the trace.
"""

from __future__ import annotations

# What legacy charsets cannot hold, written the way a typist would (never dropped silently:
# each replacement is counted in the trace).
_FALLBACK = {
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ",
    "\u0153": "oe", "\u0152": "OE", "\u20ac": "EUR", "\u2264": "<=", "\u2265": ">=",
    "\u00b5": "u", "\u00b0": " deg", "\u2022": "-",
}


def encode_for(text: str, charset: str) -> tuple[bytes, int]:
    """Text in the recipient's charset with CRLF; returns the bytes and replacements made."""
    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    try:
        return text.encode(charset), 0
    except UnicodeEncodeError:
        pass
    out: list[str] = []
    replaced = 0
    for ch in text:
        try:
            ch.encode(charset)
            out.append(ch)
        except UnicodeEncodeError:
            out.append(_FALLBACK.get(ch, "?"))
            replaced += 1
    return "".join(out).encode(charset), replaced
