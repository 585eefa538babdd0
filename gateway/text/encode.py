"""Writing text for legacy software: in the recipient's charset, with CRLF line ends.

What a legacy charset cannot hold is written readably (``gateway.text.transliterate``: γ →
gamma, ő → o, a word of another script romanised whole) — never dropped silently: each
replacement is counted, and the caller records it in the trace and tells the reader.
"""

from __future__ import annotations

from gateway.text.transliterate import transliterate


def encode_for(text: str, charset: str) -> tuple[bytes, int]:
    """Text in the recipient's charset with CRLF; returns the bytes and replacements made."""
    data, replaced = encode_noting(text, charset)
    return data, sum(replaced.values())


def encode_noting(text: str, charset: str) -> tuple[bytes, dict[str, int]]:
    """Text in the recipient's charset with CRLF, what it cannot hold transliterated
    (gateway.text.transliterate); returns the bytes and how many times each character (or
    word of another script) was replaced, keyed ``"γ -> gamma"``."""
    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    try:
        return text.encode(charset), {}
    except UnicodeEncodeError:
        pass
    written, replaced = transliterate(text, charset)
    counts = {f"{old} -> {new}": text.count(old) for old, new in replaced.items()}
    return written.encode(charset), counts
