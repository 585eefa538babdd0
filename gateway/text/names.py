"""Whether a word could have been typed as it reads, in any of the alphabets of the names of
patients treated in France — and the positive signs of mojibake that this judge allows.

The letter judge (:mod:`gateway.text.score`) knows French: it frowns on ``ã`` or ``ł`` because
a French letter seldom holds one.  Names and short strings do: Gonçalves João, Ångström,
Wałęsa, Işık, Țepeș, Nguyễn, Erdős, Þórður, Ђорђе, محمد.  This judge has no favourite language:
a letter of any script is plausible; what is not plausible is what a *misreading* makes and a
typist does not —

* a C0/C1 control character, U+FFFD;
* a symbol glued to letters (``Ã©``, ``Jo√£o``, ``No‘l``, ``M¸ller``, ``Gon├ºalves``) other
  than the apostrophes, hyphens and closing typography typists put there;
* a change of case inside a word on a non-ASCII letter (``CrÈatinine``, ``JoÃ£o``,
  ``GONçALVES``), an upper-case accented letter followed by what UTF-8 continuation bytes
  read as (``Ã§``, ``Ã‰``), letters of two scripts in one word (``lՎcole``) — the Greek
  letters of medicine as a prefix (γGT, β-HCG, μmol/L) excepted;
* ``ƒ``, ``ﬁ``, ``ﬂ`` and the spacing accents (``ˆ ˜ ¸ ¨ ´ ¯ ˘ ˙``) inside words.

A **positive sign of mojibake** (:func:`signs`) is a word this judge finds implausible *and*
that undoing one known misreading (:data:`~gateway.text.charsets.MISREADINGS`) makes more
plausible; a C1 control is one by itself.  Text without a sign was written right: the engine
returns it as it came (see :func:`gateway.text.repair.normalize`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import filterfalse

from gateway.text.charsets import MISREADINGS

# Scripts whose letters are plausible in a name (others still read as letters, a little less).
_KNOWN_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC", "ARABIC", "HEBREW"})
# Letters no typist puts in a name or a French subject: what Mac Roman and CP1252 make of
# UTF-8 lead bytes and of each other's letters.
_NEVER_IN_WORDS = frozenset("ƒﬁﬂ")
# Spacing accents: Mac Roman's reading of CP1252 ö ü ú ø (ˆ ¸ ˙ ¯) and CP1252's of its own.
_SPACING_ACCENTS = frozenset("ˆ˜¸¨´¯˘˙˚˛˝ˇ`")
# Between two letters a typist puts an apostrophe, a hyphen or a middle dot (Catalan l·l).
_INSIDE_OK = frozenset("'’ʼ-‐‑.")
_DASHES = frozenset("–—")
# Glued after a word: closing punctuation and marks.
_AFTER_OK = frozenset("’'”»…)]°²³®™©.,;:!?-‐")
# Glued before a word: opening punctuation.
_BEFORE_OK = frozenset("‘’'“«([¿¡-‐")
# What the UTF-8 continuation bytes 0x80-0xBF read as in CP1252 or Latin-1 when they are not
# letters: after an upper-case letter of Latin-1 (the UTF-8 lead bytes 0xC2-0xDF) they are the
# classic mojibake (Ã©, Ã§, Ã‰, Â°).
_CONTINUATIONS = frozenset(
    c for b in range(0x80, 0xC0)
    for c in {bytes([b]).decode("latin-1"), bytes([b]).decode("cp1252", "replace")}
    if c != "\ufffd"
)
_GREEK_PREFIX_OK = "GREEK"
_VOWELS_ALL = frozenset("aeiouyAEIOUYàâäáãåéèêëíìîïóòôöõúùûüýÿÀÂÄÁÃÅÉÈÊËÍÌÎÏÓÒÔÖÕÚÙÛÜÝ")


def _lead_and_continuations() -> list[tuple[str, dict[str, int], frozenset[str]]]:
    """For CP1252, Latin-1 and Mac Roman: what the UTF-8 lead bytes read as (with how many
    continuation bytes each needs) and what the continuation bytes (0x80-0xBF) read as."""
    out = []
    for codec in ("cp1252", "latin-1", "mac_roman"):
        def read(b: int, codec: str = codec) -> str:
            if codec == "cp1252" and b in (0x81, 0x8D, 0x8F, 0x90, 0x9D):
                return chr(b)
            return bytes([b]).decode(codec)
        leads = {read(b): 1 if b < 0xE0 else 2 if b < 0xF0 else 3 for b in range(0xC2, 0xF5)}
        out.append((codec, leads, frozenset(read(b) for b in range(0x80, 0xC0))))
    return out


_LEAD_CONT = _lead_and_continuations()
# Mac Roman reads some UTF-8 lead bytes as the typography French is typed with (’é is D5 8E):
# next to a letter they are typed, not a sign.
_TYPED_LEADS = frozenset("«»…\u00a0–—“”‘’")


def _utf8_sequence(word: str, i: int) -> bool:
    """Whether the characters of ``word`` from ``i`` are what one charset reads a whole UTF-8
    sequence as (a lead byte and its continuation bytes), not all of them letters (Ã©,
    â€™, √†, Â°, ¬µ)."""
    c = word[i]
    if c in _TYPED_LEADS:
        return False
    letter = _is_letter(c)
    for codec, leads, conts in _LEAD_CONT:
        need = leads.get(c)
        if need is None:
            continue
        tail = word[i + 1 : i + 1 + need]
        if len(tail) == need and all(t in conts for t in tail) and not (
                letter and all(_is_letter(t) or t in _TYPED_LEADS for t in tail)
                and not (_name_letter_bytes(c + tail, codec)
                         and (codec == "mac_roman" or not all(map(_is_letter, tail))))):
            return True
        # After a letter, letters and typed marks are typing (é’, été»…, ÁÑÉ) unless their
        # bytes are one letter of the names' alphabets: á»‘ is ố, á»… ễ (Nguyá»…n), Î» λ,
        # Ÿä ي in Mac Roman.  CP1252's letters among the continuation bytes (ÓŽ in LURÓŽY)
        # are judged as letters (_letter).
    return False


def _name_letter_bytes(seq: str, codec: str, *, latin1: bool = False) -> bool:
    """Whether ``seq``, encoded back in ``codec``, is the UTF-8 of a letter of the alphabets
    of names beyond Latin-1 (ễ is á»… in CP1252, λ is Î», Ÿä is ي in Mac Roman): Latin
    Extended-A, Romanian ș ț, Vietnamese, Greek, Cyrillic, Armenian, Hebrew, Arabic — not the
    letters of Latin Extended-B and IPA that a capital and a mark can happen to spell (ÉŠ in
    VÉŠI, ÇŒ, É» at the end of a quoted word)."""
    try:
        letter = (seq.encode("latin-1") if codec == "latin-1" else
                  seq.encode("cp1252" if codec == "cp1252" else "mac_roman")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    if len(letter) != 1 or not letter.isalpha():
        return False
    o = ord(letter)
    return (0xC0 <= o <= 0xFF and latin1) or 0x100 <= o <= 0x17F or 0x218 <= o <= 0x21B \
        or 0x370 <= o <= 0x6FF or 0x1E00 <= o <= 0x1EFF


_JOINING_MARKS = frozenset("’‘")


def _joining(word: str, i: int) -> bool:
    """Whether the letter ``word[i]`` is followed by an apostrophe joining it to another
    letter (N’Diaye, VEGÓ’CI): typed, whatever bytes the two may also spell."""
    return i + 2 < len(word) and word[i + 1] in _JOINING_MARKS and _is_letter(word[i]) \
        and _is_letter(word[i + 2])


@lru_cache(maxsize=16384)
def word_doubt(word: str) -> bool:
    """Whether ``word`` is plausible as typed and as the CP1252 reading of UTF-8 alike: a
    capital of Latin-1 and an apostrophe joining it to a letter are also the two bytes of one
    letter of the names' alphabets (SAFÄ’TAKE or SAFĒTAKE, TILÅ’TAGA or TILŒTAGA, LÃ’GI or
    LÒGI, VEGÓ’CI or VEGӒCI).  The bytes do not tell: such a word is left as received and
    said undecided, never changed."""
    if word.isascii():
        return False
    return any(_joining(word, i) and "\u00c2" <= word[i] <= "\u00df"
               and _name_letter_bytes(word[i : i + 2], "cp1252", latin1=True)
               for i in range(len(word) - 2))


def has_doubt(text: str) -> bool:
    """Whether some word of ``text`` is one :func:`word_doubt` cannot tell."""
    return not text.isascii() and any(map(word_doubt, filterfalse(str.isascii,
                                                                   split_words(text))))


@lru_cache(maxsize=4096)
def script(c: str) -> str:
    """The script of a letter, from its Unicode name (``LATIN``, ``GREEK`` …)."""
    name = unicodedata.name(c, "")
    return name.split(" ", 1)[0] if name else ""


def _is_letter(c: str) -> bool:
    return c.isalpha() and c not in _SPACING_ACCENTS and c not in "ªºµ" and not (
        "\u02b0" <= c <= "\u02ff")


@dataclass(frozen=True)
class Plausibility:
    """How plausible a word is as typed: the sum, and how many characters no typist makes."""

    score: float
    bad: int


def plausibility(text: str) -> Plausibility:
    """The judgement of every word of ``text`` (split on white space) added up."""
    score = 0.0
    bad = 0
    for word in split_words(text):
        if not word.isascii():
            s, b = word_plausibility(word)
            score += s
            bad += b
    return Plausibility(score, bad)


@lru_cache(maxsize=65536)
def word_plausibility(word: str) -> tuple[float, int]:
    """(score, characters no typist makes) for one word; ASCII characters count 0."""
    letters = [c for c in word if _is_letter(c)]
    caps_word = sum(1 for c in letters if c.isupper()) >= 2 and not any(
        c.islower() for c in letters if c.isascii())
    scripts = {script(c) for c in letters if not c.isascii()} | (
        {"LATIN"} if any(c.isascii() for c in letters) else set())
    total = 0.0
    bad = 0
    last = len(word) - 1
    for i, c in enumerate(word):
        if c.isascii():
            continue
        prev = word[i - 1] if i else " "
        nxt = word[i + 1] if i < last else " "
        if _joining(word, i):
            nxt = "'"  # an apostrophe joining two parts of a name (see word_doubt)
        if unicodedata.category(c) == "Mn" and unicodedata.category(prev) == "Mn":
            prev = _cluster(word, i)  # ṃ̤̫: the letter and all its marks, judged together
        s = -3.0 if not nxt.isascii() and _utf8_sequence(word, i) else _char(
            c, prev, nxt, caps_word, len(scripts) > 1)
        total += s
        if s <= -2.0:
            bad += 1
    latin = sum(1 for c in letters if not c.isascii() and script(c) == "LATIN")
    plain = sum(1 for c in letters if c.isascii())
    if latin > plain + 1:
        total -= 1.0 * (latin - plain - 1)  # "ÌÊ", "Çÿ": words are mostly plain letters

    return total, bad


def _cluster(word: str, i: int) -> str:
    """The letter and the combining marks before ``word[i]`` (itself a mark)."""
    j = i - 1
    while j > 0 and unicodedata.category(word[j]) == "Mn":
        j -= 1
    return word[j:i]


# Letters of scripts no name written in France is in, that UTF-8's two-byte sequences spell
# (Syriac, Thaana, N'Ko, Samaritan, Mandaic), and the Arabic letters of the languages beyond
# Arabic, Persian and Urdu (Uyghur ۇ, ۿ …).
_RARE_SCRIPTS = frozenset({"SYRIAC", "THAANA", "NKO", "SAMARITAN", "MANDAIC"})
_ARABIC_NAMES = frozenset("پچژگکیٹڈڑںہھےۀ")


def _rare_letter(c: str) -> bool:
    sc = script(c)
    return sc in _RARE_SCRIPTS or (sc == "ARABIC" and "\u066e" <= c <= "\u06ff"
                                   and c not in _ARABIC_NAMES)


def _char(c: str, prev: str, nxt: str, caps_word: bool, mixed_scripts: bool) -> float:
    cat = unicodedata.category(c)
    if c == "\ufffd" or cat in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp"):
        return -6.0
    if cat == "Mn":  # a combining accent (NFD text, Arabic vowel marks): after its letter
        if not (prev[0].isalpha() or unicodedata.category(prev[0]) == "Mn"):
            return -3.0
        if script(prev[0]) == "LATIN" and len(unicodedata.normalize("NFC", prev + c)) != 1:
            return -3.0  # n̤, o̱, ṃ̤: no letter of any alphabet, what Mac Roman makes of UTF-8
        return 0.0
    if cat == "Cf":
        return 0.0 if c in "\u200c\u200d\u200e\u200f" else -2.0  # ZWNJ/ZWJ, bidi marks
    if _is_letter(c):
        if _rare_letter(c):
            return -2.0
        return _letter(c, prev, nxt, caps_word, mixed_scripts)
    if cat == "Nd":  # a digit of another script: Arabic's among Arabic letters only
        return 0.3 if any(_is_letter(x) and script(x) == "ARABIC" for x in (prev, nxt)) or (
            unicodedata.category(prev) == "Nd" and not prev.isascii()) else -2.0
    if cat[0] == "Z":  # non-breaking and narrow spaces: French typography
        return 0.3 if not (_is_letter(prev) and _is_letter(nxt)) else -2.0
    return _symbol(c, prev, nxt)


def _letter(c: str, prev: str, nxt: str, caps_word: bool, mixed_scripts: bool) -> float:
    if c in _NEVER_IN_WORDS:
        return -4.0
    sc = script(c)
    if mixed_scripts and sc != "LATIN":
        if sc == _GREEK_PREFIX_OK and not _is_letter(prev) and nxt.isascii():
            return 0.5  # γGT, β-HCG, μmol: a prefix before ASCII
        return -4.0
    if c.isupper() and _is_letter(prev) and prev.islower():
        return -3.0  # CrÈatinine, JoÃ£o
    if c.isupper() and _is_letter(prev) and prev.isupper() and nxt.islower():
        return -2.0  # HŽmoglobine, BÈrenger: a capital between a capital and small letters
    if c.islower() and caps_word and c != "ß" and _is_letter(prev) and prev.isupper() \
            and _is_letter(nxt) and nxt.isupper():
        return -3.0  # GONçALVES: a small letter between capitals
    if nxt.isupper() and c.islower() and nxt.isalpha():
        return -2.0  # JeanñPierre: a lower-case accented letter before a capital
    if "\u00c2" <= c <= "\u00df" and nxt in _CONTINUATIONS and not _is_letter(nxt) \
            and (c in "ÂÃÄÅ" or nxt not in "’‘“”«»…–—"):
        return -3.0  # Ã©, Ã‰, Â°: a UTF-8 lead byte before a continuation byte
    if c in "œŒ" and not nxt.isascii() and _is_letter(nxt):
        return -3.0  # Œí, œâ: Mac Roman's reading of Greek in UTF-8 (œ comes before u, i, s)
    if c in "ÂÃÄÅÆÈÎÏÐÑÒØÙÛ" and nxt in "ŠŒŽšœžŸƒ":
        return -3.0  # Ãœ (Ü), Èš (Ț), Ïƒ (σ), ÙŠ (ي): CP1252's letters among the
        # continuation bytes, after a letter of no alphabet that has them
    if c in "œŒ" and prev in _VOWELS_ALL:
        return -3.0  # Araœjo: œ follows a consonant (cœur, manœuvre, Œdipe); after a vowel
        # it is Mac Roman's ú read on a PC
    if sc == "LATIN" and not prev.isascii() and _is_letter(prev) and script(prev) == "LATIN" \
            and prev + c not in ("ươ", "ƯƠ", "ưở", "ƯỞ"):
        return -1.5  # two accented Latin letters in a row (créé, Þórður): rarer than one
    if sc == "LATIN" and not _is_letter(prev) and not _is_letter(nxt) and not prev.isdigit() \
            and nxt != "." and c not in "àÀôÔýÝ":
        return -2.0  # a letter alone: only à and ô are French words (Ð, ñ: a dash misread)
    if prev.isdigit() and nxt.isdigit():
        return -2.0  # 20Ð200: a dash misread between two numbers
    if c.islower() and not _is_letter(prev) and _is_letter(nxt) and "\u00df" <= c <= "\u00ff" \
            and c not in "éàêîôâçèäöüåæøœ":
        return -1.0  # a word seldom starts with ÿ, ñ, ì … (ÿstergaard: Ø read on a Mac)
    return 0.5 if sc in _KNOWN_SCRIPTS else 0.3


def _symbol(c: str, prev: str, nxt: str) -> float:
    after_letter = _is_letter(prev)
    before_letter = _is_letter(nxt)
    if c in "µ":  # the micro sign: a unit prefix (µg, µmol, µL, µUI, µs)
        return 0.5 if nxt in "gmlLUusVAK" and not after_letter else -3.0
    if c in "ºª":  # ordinal indicators: Nº 3, 1º, 2ª
        return 0.3 if (prev in "nN" or prev.isdigit()) and not before_letter else -3.0
    if after_letter and before_letter:
        if c in _INSIDE_OK or (c == "·" and prev in "lL" and nxt in "lL"):
            return 0.3  # (a middle dot only in Catalan l·l)
        if c == "–" and nxt.isupper():
            return 0.2  # Jean–Pierre typed with a dash
        if c == "—" and nxt.isupper():
            return -1.0  # an em dash is spaced (— dit-il), seldom glued between names
        return -4.0  # No‘l, Mu–oz, M¸ller, Ã©t, Jo√£o
    if after_letter:
        if c in _AFTER_OK and not (c in "°²³" and not prev.isascii()):
            return 0.3  # (a degree or a square after an accented letter is a UTF-8 byte)
        return -4.0  # AndrÃ© already caught on Ã; Gon√ (a lead) and the rest
    if before_letter:
        if c in _BEFORE_OK:
            return 0.3
        if c == "°" and nxt in "CF":
            return 0.3
        return -4.0  # …lise, ≈sa, ƒRIC
    if _odd_pair(c, prev) or _odd_pair(c, nxt):
        return -3.0  # –®–£, ∑–∏: Mac Roman's reading of Cyrillic in UTF-8
    if "\u2500" <= c <= "\u259f":
        if (not nxt.isascii() and not "\u2500" <= nxt <= "\u259f") or (
                not prev.isascii() and not "\u2500" <= prev <= "\u259f"):
            return -3.0  # ┼¢, ├® : CP850's reading of UTF-8
        return -1.0  # box drawing between non-letters: a DOS table
    if c in _SPACING_ACCENTS or c == "‡":
        return -2.0  # a lone accent, a double dagger: what à becomes on a Mac or a PC
    return 0.2  # a symbol standing alone or among digits: € 37,5° ≥ ± « »


# Typography that may stand glued to another sign («…», »., –», ±0,5°, µg/m³).
_TYPOGRAPHY = frozenset("«»“”‘’„…–—\u00a0\u202f°²³±€§%µ")


def _odd_pair(c: str, other: str) -> bool:
    """Whether the symbol ``c`` and its neighbour ``other`` are two non-ASCII signs glued
    together that typography does not pair (not letters, not digits, not spaces)."""
    return not other.isascii() and not _is_letter(other) and not other.isspace() \
        and not unicodedata.category(other).startswith(("Z", "M", "N")) \
        and not (c in _TYPOGRAPHY and other in _TYPOGRAPHY) \
        and not ("\u2500" <= c <= "\u259f" and "\u2500" <= other <= "\u259f")


# Every misreading a single word can show (UTF-8 read as a single-byte charset, and the
# single-byte charsets read as one another).
_SIGN_MISREADINGS = MISREADINGS


@lru_cache(maxsize=16384)
def word_sign(word: str) -> str | None:
    """The misreading whose undoing makes ``word`` more plausible, when the word is not
    plausible as it stands (a positive sign of mojibake); ``"c1"`` for a C1 control; else
    None."""
    if word.isascii():
        return None
    score, bad = word_plausibility(word)
    if any("\x80" <= c <= "\x9f" for c in word):
        return "c1"
    if not bad:
        return None
    for mis in _SIGN_MISREADINGS:
        try:
            undone = mis.undo(word)
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if undone == word:
            continue
        s2, b2 = word_plausibility(undone)
        if b2 < bad or (b2 == bad and s2 > score + 1.0 and mis.written == "utf-8"):
            return mis.name  # (a single-byte remap keeping as many bad characters
            # explains nothing: Mœçé is no worse than M½çé)
    return None


def signs(text: str) -> list[tuple[str, str]]:
    """The words of ``text`` that carry a positive sign of mojibake, with the misreading
    (or ``c1``) each shows; empty for text written right."""
    out: list[tuple[str, str]] = []
    for word in dict.fromkeys(split_words(text)):
        sign = word_sign(word)
        if sign is not None:
            out.append((word, sign))
    return out


def has_sign(text: str) -> bool:
    """Whether some word of ``text`` carries a positive sign of mojibake."""
    if text.isascii():
        return False
    return any_sign(filterfalse(str.isascii, split_words(text)))


def any_sign(words: Iterable[str]) -> bool:
    """Whether one of ``words`` (each holding a non-ASCII character) carries a sign."""
    return any(map(word_sign, dict.fromkeys(words)))


def split_words(text: str) -> list[str]:
    """The words of ``text`` split on ASCII white space only (a non-breaking space is part of
    what is judged: UTF-8's is ``Â`` and a space to CP1252)."""
    spaced = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    if "\x0b" in spaced or "\x0c" in spaced:
        spaced = spaced.replace("\x0b", " ").replace("\x0c", " ")
    return [w for w in spaced.split(" ") if w]
