"""Text for a legacy recipient whose charset cannot hold every character: a readable
transliteration, and the list of what was replaced (for the note the reader is shown and the
trace).

Each character the charset lacks is written, in order of preference:

1. as typists write French typography without it (’ → ', « → ", – → -, œ → oe, € → EUR);
2. a Greek letter standing alone or as a prefix (γGT, β-HCG, chaînes κ) by its name:
   γ → gamma, β → beta (a Greek *word* is romanised instead: Παπαδόπουλος → Papadopoulos);
3. a letter with an accent the charset lacks, as the letter without it, when the charset has
   that (ő → o, ș → s, ł → l by anyascii);
4. anything else romanised by ``anyascii`` (ISC licence; Cyrillic, Arabic, Vietnamese …);
5. ``?`` when nothing readable exists (never silently: it is listed as well).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from anyascii import anyascii

# What legacy charsets cannot hold, written the way a typist would.
TYPOGRAPHY = {
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ",
    "\u0153": "oe", "\u0152": "OE", "\u20ac": "EUR", "\u2264": "<=", "\u2265": ">=",
    "\u00b5": "u", "\u00b0": " deg", "\u2022": "-",
}
GREEK_NAMES = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta",
    "η": "eta", "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu",
    "ξ": "xi", "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau",
    "υ": "upsilon", "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
}


def _greek(c: str) -> bool:
    return unicodedata.name(c, "").startswith("GREEK")


def _fits(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def replacement(text: str, i: int, charset: str) -> str:
    """What to write for ``text[i]``, which ``charset`` cannot hold."""
    c = text[i]
    if c in TYPOGRAPHY and _fits(TYPOGRAPHY[c], charset):
        return TYPOGRAPHY[c]
    lower = c.lower()
    if lower in GREEK_NAMES:
        prev = text[i - 1] if i else " "
        nxt = text[i + 1] if i + 1 < len(text) else " "
        if not (_greek(prev) or _greek(nxt)):
            name = GREEK_NAMES[lower]
            return name.capitalize() if c != lower else name
    base = "".join(ch for ch in unicodedata.normalize("NFD", c) if not unicodedata.combining(ch))
    if base and base != c and _fits(base, charset):
        return base
    roman = anyascii(c)
    if roman and _fits(roman, charset):
        return roman
    return "?"


def transliterate(text: str, charset: str) -> tuple[str, dict[str, str]]:
    """``text`` with every character ``charset`` cannot hold replaced (see the module
    docstring), and what each replaced character — or word of another script — became (in
    order of first appearance)."""
    if _fits(text, charset):
        return text, {}
    out: list[str] = []
    replaced: dict[str, str] = {}
    if not _holds_ascii(charset):
        _replace_span(text, 0, len(text), charset, out, replaced)
        return "".join(out), replaced
    # ASCII is written as it is (the charset holds it) and never starts or continues a word
    # of another script: only the runs of non-ASCII characters are looked at, and those that
    # fit are copied whole — the same text and list as the character-by-character walk.
    pos = 0
    for m in _NON_ASCII_RUN.finditer(text):
        start, end = m.span()
        out.append(text[pos:start])
        if _fits(m.group(), charset):
            out.append(m.group())
        else:
            _replace_span(text, start, end, charset, out, replaced)
        pos = end
    out.append(text[pos:])
    return "".join(out), replaced


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


@functools.lru_cache(maxsize=64)
def _holds_ascii(charset: str) -> bool:
    return _fits("".join(map(chr, range(128))), charset)


def _replace_span(text: str, start: int, stop: int, charset: str, out: list[str],
                  replaced: dict[str, str]) -> None:
    """Write ``text[start:stop]`` for ``charset`` into ``out``, character by character, a
    word of another script whole (``replaced`` records what became what).  A word never
    reaches past ``stop``: ``stop`` is the text's end or an ASCII character."""
    i = start
    while i < stop:
        c = text[i]
        end = i
        while end < stop and _word_letter(text[end]) and not text[end].isascii():
            end += 1
        run = text[i:end]
        if len(run) > 1 and not _fits(run, charset) and len({_script(x) for x in run}) == 1 \
                and _script(c) != "LATIN":
            # a word of another script (Παπαδόπουλος) is romanised whole, not letter by letter
            replaced.setdefault(run, anyascii(run) or "?")
            out.append(anyascii(run) or "?")
            i = end
            continue
        if _fits(c, charset):
            out.append(c)
        else:
            new = replacement(text, i, charset)
            out.append(new)
            replaced.setdefault(c, new)
        i += 1


def _word_letter(c: str) -> bool:
    return c.isalpha() or unicodedata.category(c) == "Mn"


def _script(c: str) -> str:
    return unicodedata.name(c, " ").split(" ", 1)[0]


def note(replaced: dict[str, str]) -> str:
    """The short note that tells the reader what was replaced: French, one line, in characters
    every legacy charset holds (each original named by its code point and Unicode name)."""
    pairs = "; ".join(
        (f"un mot en écriture {_script(c).lower()} -> {new}" if len(c) > 1 else
         f"U+{ord(c):04X} ({unicodedata.name(c, 'sans nom').lower()}) -> {new}")
        for c, new in replaced.items())
    return ("Note de la passerelle : caractères que votre logiciel ne peut pas afficher, "
            f"remplacés : {pairs}.")
