"""French-aware plausibility of decoded text: how likely a clinician wrote these characters.

Only non-ASCII characters are judged (ASCII reads the same in every candidate), each in the
context of its word.  The figures are small integers on purpose: they encode what anyone who
has read French clinical letters knows, not a trained model —

* lower-case accented letters of French (é è ê à ç ô î û ù â ë ï ü œ) inside words are good;
* an upper-case accented letter right after a lower-case one (``CrÈatinine``) is the Mac/PC
  garbling, as are ``Ž``, ``ƒ``, ``Õ``, ``‡``, ``√``, C1 controls and letters of other scripts;
* ``Ã`` and ``Â`` outside capitals are UTF-8 mojibake;
* French typography (« » ’ – … ° µ € and the non-breaking spaces) is good in its usual places.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

FR_LOWER = frozenset("éèêàçôîûùâëïüœ")
FR_LOWER_RARE = frozenset("æäöÿ")
FR_UPPER = frozenset("ÉÈÊËÀÂÇÎÏÔÛÙÜŒŸÆ")
FR_UPPER_RARE = frozenset("ÂÛÙËÏÜŸÆ")
FOREIGN_LATIN = frozenset("áíóúñãõøåßÁÍÓÚÑÃÕØÅÄÖ")
# Greek letters clinicians write before a name or a unit: γGT, β-HCG, α-foetoprotéine,
# β2-microglobuline, chaînes κ et λ, μmol/L (a Greek mu for the micro sign).  No single-byte
# encoding a legacy client writes reads a byte as one of them: they come from UTF-8 as typed.
GREEK_PREFIXES = frozenset("αβγδκλμ")
# How often each letter starts a French word (école, être, île, ça, œil) or a capitalised
# one (École, Être, Île, Ça, À): the others never do.
_LOWER_INITIAL = {"é": 2.0, "ê": 1.0, "î": 1.0, "ç": 1.0, "œ": 1.0, "â": 1.0, "à": 0.5}
_UPPER_INITIAL = {"É": 1.5, "À": 1.0, "Ê": 0.5, "Î": 0.5, "Ç": 0.5, "Œ": 0.5, "Â": 0.3}

# A word holding at least one non-ASCII character; words are split on ASCII white space
# only, because a non-breaking space is part of what we judge.
_WORD = re.compile(r"[^ \t\r\n]*[^\x00-\x7f][^ \t\r\n]*")

_ELIDED = frozenset("ldjnusctmLDJNUSCTM")
_SPACES = frozenset(" \t\r\n\u00a0\u202f\u2009")
_OPENERS = frozenset(" \t\r\n\u00a0\u202f(")
_CLOSERS = frozenset(" \t\r\n\u00a0\u202f.,;:!?)")


@dataclass(frozen=True)
class Judgement:
    """The plausibility of a text: the sum, and how many characters look wrong."""

    score: float
    suspicious: int

    def __add__(self, other: Judgement) -> Judgement:
        return Judgement(self.score + other.score, self.suspicious + other.suspicious)


def _typography(c: str, prev: str, nxt: str) -> float:
    if c in "’‘":
        if prev in _ELIDED:
            return 1.0  # l’, d’, qu’, jusqu’ …
        if prev.isalpha() and prev >= "\x80":
            return -1.0  # no French word elides after an accented letter: "Æ’" is mojibake
        return 0.0
    if c == "«":
        return 1.0 if nxt in _SPACES or prev in _OPENERS else -1.0
    if c == "»":
        return 1.0 if prev in _SPACES or nxt in _CLOSERS or nxt == "" else -1.0
    if c in "“”„":
        return 0.3
    if c in "–—":
        return 0.5 if (prev in _SPACES or prev.isdigit() or prev == "") else -1.0
    if c == "…":
        return -2.0 if nxt.isalpha() else 0.5
    if c in "°º":
        if prev.isdigit() or prev in "nN" or nxt.isdigit() or nxt in "CF":
            return 1.0
        return -0.5
    if c == "µ":
        return 1.0 if nxt.isalpha() else -1.0
    if c == "€":
        return 1.0 if prev.isdigit() or prev in _SPACES or nxt.isdigit() else -1.0
    if c in "\u00a0\u202f\u2009":
        if prev.isalpha() and nxt.isalpha():
            return -0.5
        return 0.5
    if c in "²³":
        return 0.5 if prev.isalpha() and not nxt.isalpha() else -1.0
    if c in "±≤≥":
        return 0.5 if not prev.isalpha() and not nxt.isalpha() else -1.0
    if c in "×·•":
        return 0.2
    if c == "§":
        return 0.0
    if c in "½¼¾":
        return -2.0 if prev.isalpha() or nxt.isalpha() else -1.0
    return -9.0  # not typography we know: the caller decides


def _pair(c: str, prev: str, nxt: str) -> float:
    """Letter pairs that settle what single letters cannot (cœur vs cÎur, aiguë vs aiguâ)."""
    lc, lp, ln = c.lower(), prev.lower(), nxt.lower()
    if lc == "œ":
        return 1.0 if ln in ("u", "i", "s", "n") else -0.5
    if lc == "ç":
        return 0.5 if ln in ("a", "o", "u") else (-2.0 if ln in ("e", "i", "y") else 0.0)
    if lc == "ë":
        return 0.5 if lp in ("u", "o", "e", "a") else -0.5
    if lc == "ï":
        return 0.5 if lp in ("a", "o", "u", "e") else -0.5
    if lc == "æ":
        return 0.0 if lp in ("c", "l", "t", "") else -2.5  # cæcum, Lætitia, ex æquo
    if lc == "û":
        return 0.3 if lp in ("o", "u", "s", "d", "f", "m", "r") else 0.0
    return 0.0


def _letter(c: str, prev: str, nxt: str, caps_word: bool) -> float:
    if prev >= "\x80" and prev.isalpha() and c in FR_LOWER | FR_UPPER and prev + c not in "éé ÉÉ":
        return -1.5  # two accented letters in a row: créé, réévaluer — little else
    if c in "Ââ" and not nxt.isalpha():
        return -3.0  # "Â²", "Â°", "Â " : the UTF-8 lead byte of a symbol
    if c in FR_LOWER or c in FR_LOWER_RARE:
        good = 2.0 if c in FR_LOWER else 0.5 + _pair(c, prev, nxt)
        if caps_word:
            return -1.5
        if not prev.isalpha():
            if not nxt.isalpha():
                return 2.0 if c in "àô" else -2.0  # only "à" (and "ô") are words alone
            return _LOWER_INITIAL.get(c, -1.0) + _pair(c, prev, nxt)
        return good + (_pair(c, prev, nxt) if c in FR_LOWER else 0.0)
    if c in FR_UPPER:
        if prev.islower():
            return -3.0  # CrÈatinine
        if prev.isupper() and nxt.islower():
            return -2.0  # BÈrenger
        if prev.isupper() or nxt.isupper():
            return (1.0 if c in FR_UPPER_RARE else 2.0) + _pair(c, prev, nxt)
        if nxt.islower():
            return _UPPER_INITIAL.get(c, -0.5)
        return 1.0 if c in "ÀÔ" else -2.0
    if c in FOREIGN_LATIN:
        return -3.0
    if c in GREEK_PREFIXES and not prev.isalpha() and nxt < "\x80":
        return 0.5  # γGT, β-HCG, μmol: a prefix, after no letter and before ASCII
    return -4.0  # Ž ƒ Š ı ﬁ, Greek, Armenian, CJK …: not what a French clinician typed


def judge(text: str) -> Judgement:
    """Score every non-ASCII character of ``text`` in its word's context."""
    if text.isascii():
        return Judgement(0.0, 0)
    total = 0.0
    bad = 0
    for word in _WORD.findall(text):
        score, suspicious = judge_word(word)
        total += score
        bad += suspicious
    return Judgement(total, bad)


@lru_cache(maxsize=65536)
def judge_word(word: str) -> tuple[float, int]:
    """Score one word (split on ASCII white space, so its outside context is a space)."""
    letters = [ch for ch in word if ch.isalpha()]
    plain = [ch for ch in letters if ch < "\x80"]
    caps_word = len(plain) >= 2 and all(ch.isupper() for ch in plain)
    accented = len(letters) - len(plain)
    total = 0.0
    bad = 0
    if accented > len(plain) + 1:
        # French words are mostly plain letters (été, réévalué); "ÈÙ", "ÔÇö" are not words
        total -= 2.0 * accented
        bad += accented
    last = len(word) - 1
    for i, c in enumerate(word):
        if c < "\x80":
            continue
        prev = word[i - 1] if i else " "
        nxt = word[i + 1] if i < last else " "
        s = _char(c, prev, nxt, caps_word)
        total += s
        if s < 0:
            bad += 1
    return total, bad


def _char(c: str, prev: str, nxt: str, caps_word: bool) -> float:
    if c == "\ufffd":
        return -10.0
    cat = unicodedata.category(c)
    if cat[0] == "L" and c not in "µº":  # micro and ordinal signs are letters to Unicode
        return _letter(c, prev, nxt, caps_word)
    if cat == "Mn":  # a combining accent after its letter: decomposed (NFD) French
        return 1.0 if prev.isalpha() else -2.0
    if cat[0] == "C":
        return -6.0 if cat != "Cf" else -2.0
    s = _typography(c, prev, nxt)
    if s > -9.0:
        return s
    if "\u2500" <= c <= "\u257f":  # box drawing: DOS lab systems draw tables with it
        return -0.5
    return -4.0
