"""Short strings — a name, a subject, an HPRIM header line, a file name — repaired on their
own evidence, or left as received.

A letter has hundreds of words to tell a reading from another; a name has one or two, and
the letters of names come from every alphabet (:mod:`gateway.text.names`).  So:

1. Valid UTF-8 (or text already decoded) without a positive sign of mojibake is returned as
   it came, byte for byte: no judging, no normalisation.
2. Otherwise every reading of the bytes (each single-byte charset legacy clients write, the
   sender's known charset weighing as it does for letters) and every chain of up to three
   misreadings undone from it (:data:`~gateway.text.charsets.MISREADINGS`) is judged by the
   names judge; the string is repaired when **one** plausible reading stands out.
3. When none does, or several readings are plausible and close, the string is left as
   received and the result says ``decided=False`` (the caller records it in the trace).
   A string whose words were garbled in different ways is then repaired word by word, each
   word on its own evidence.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from gateway.text.charsets import DISPLAY, HINTS, MISREADINGS, SINGLE_BYTE, Misreading, decode
from gateway.text.model import Repair
from gateway.text.names import has_doubt, has_sign, plausibility, split_words, word_sign

_PRIOR = {"cp1252": 0.3, "iso8859_15": 0.0, "mac_roman": 0.0, "cp850": 0.0, "latin_1": -0.2}
_HINT_BONUS = 2.0
_MARGIN = 0.45  # a plausible reading must beat any other plausible one by this much
_BEAM = 6
_DEPTH = 3
# How often a letter is met in the names and words written in France (a rough prior): a nudge
# between two plausible readings (Résultats or Râsultats, Noël or Noæl), never enough to beat
# a sign.
_FREQUENT = {
    "é": 1.0, "É": 0.8, **dict.fromkeys("èàç", 0.5), "ë": 0.45,
    **dict.fromkeys("üöäãñ", 0.4), **dict.fromkeys("ïêôøåæ", 0.35),
    **dict.fromkeys("õóáíúłşıășțčšžřßœ", 0.3),
    **dict.fromkeys("âîÈÀÇÔÜÖÄÃÑÅØÆŁŞİĂȘȚÓÁÍÚČŠŽŘŒśźżąęńğőűđýěůťďňľĺŕ", 0.2),
    **dict.fromkeys("ðþÐÞ", 0.05),  # Icelandic: few patients in France
    **dict.fromkeys("ÊÂÎÛûù", 0.1),
    "µ": 0.4, "–": 0.2, "°": 0.2,  # the micro sign of units, the dash of ranges, degrees
}
_VOWELS = frozenset("aeiouyAEIOUY")
# What undoing each kind of misreading costs: the UTF-8 misreadings and the Mac/PC pairs are
# what legacy clients do; CP850 less often; Latin-1/ISO-8859-15 against CP1252 seldom.
_COST = {"mojibake": 0.8, "mac_pc": 1.0, "misread": 1.0}
_RARE_MISREADINGS = frozenset({"cp1252 read as iso-8859-1", "iso-8859-15 read as cp1252",
                               "cp1252 read as iso-8859-15"})
_RARE_COST = 2.0
_HINT_WRITTEN_BONUS = 1.0  # the sender's charset is the one a misread text was written in
# Readers today are Windows and Mac clients; DOS code pages live on in what laboratory systems
# write, seldom in what reads a message: a misreading *as* CP850 costs this much more.
_DOS_READER_COST = 0.7
# Bytes that decode as UTF-8 are evidence by themselves (a single-byte text seldom spells a
# lead byte followed by the right number of continuation bytes): undoing a UTF-8 misreading
# gains this much for each letter or sign it puts together, up to _UTF8_EVIDENCE_MAX.
_UTF8_EVIDENCE = 1.0
_UTF8_EVIDENCE_MAX = 4


def _cost(mis: Misreading, undone: str, *, remapped: bool) -> float:
    """What undoing ``mis`` (giving ``undone``) costs: how often clients misread that way,
    less the evidence of UTF-8 sequences put together — when the bytes spelled them as
    received, not after a single-byte remap picked among several (``remapped``)."""
    cost = _RARE_COST if mis.name in _RARE_MISREADINGS else _COST[mis.kind]
    if mis.read_as == "cp850":
        cost += _DOS_READER_COST
    if mis.written == "utf-8" and not remapped:
        cost -= _UTF8_EVIDENCE * min(sum(1 for c in undone if c > "\x7f"), _UTF8_EVIDENCE_MAX)
    return cost


def _likelihood(text: str) -> float:
    """Small bonuses and maluses from how letters sit in the names and words written in France:
    common letters, ç before a/o/u, ë/ï after a vowel, ã/õ before o/e/s, œ before u; an
    accented vowel next to its own plain vowel (Castaão, Gonàalves), œ after a vowel, an
    umlaut before e (ae, oe, ue are how ä, ö, ü are written without it), a word starting with
    a small accented letter among capitalised names (østergaard)."""
    total = 0.0
    last = len(text) - 1
    words = [w for w in text.split() if w[:1].isalpha()]
    capitalised = any(w[0].isupper() for w in words)
    for i, c in enumerate(text):
        if c.isascii():
            continue
        total += _FREQUENT.get(c, 0.0)
        nxt = text[i + 1] if i < last else " "
        prev = text[i - 1] if i else " "
        base = _base(c)
        if base in "aeiouAEIOU" and base not in "eE" and (
                _base(prev) == base or _base(nxt) == base):
            total -= 0.5  # Castaão, Gonàalves: an accented vowel next to its plain one
        if c in "ñÑ" and prev in _VOWELS and nxt in _VOWELS:
            total += 0.2  # Muñoz, Peña: between vowels
        if c in "çÇ":
            total += 0.2 if nxt in "aouAOU" else 0.0
        elif c in "ëïËÏ":
            total += 0.2 if prev in "aeouAEOU" else -0.2
        elif c in "ãõÃÕ":
            total += 0.2 if nxt in "oesOES" else -0.2  # João, Simões, Magalhães
        elif c in "æÆ" and not nxt.isalpha():
            total -= 0.2  # a word seldom ends in æ (Kjær, Sæther)
        elif c == "ù" and prev.isalpha() and prev not in "oO":
            total -= 0.4  # ù is French after o (où), Italian at a word's end (Cantù)
        elif c in "œŒ":
            total += 0.5 if nxt in "uU" else (-0.5 if prev in _VOWELS else 0.0)  # cœur, œuvre
        elif c in "âêîôûÂÊÎÔÛ" and nxt in _VOWELS:
            total -= 0.5  # a circumflex stands for a lost s: a consonant follows (sûr, île)
        elif c in "äöüÄÖÜ" and nxt in "eE":
            total -= 0.3
        elif c == "ÿ" and prev not in _VOWELS:
            total -= 0.5  # ÿ is French after a vowel (L'Haÿ)
        if capitalised and c.islower() and c.isalpha() and not prev.isalpha() \
                and nxt.isalpha() and c not in "éàêîôœâç":
            total -= 0.5  # østergaard, èsa among capitalised names (not école, à)
    return total


def _base(c: str) -> str:
    return unicodedata.normalize("NFD", c)[:1] if not c.isascii() else c


@dataclass(frozen=True)
class ShortResult:
    """A short string as the author wrote it, or as received when that cannot be told."""

    text: str
    received: str  # the string as first read (what is kept when undecided)
    encoding: str  # how the bytes were first read
    decided: bool  # False: left as received, more than one plausible reading (or none)
    repairs: tuple[Repair, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.text != self.received

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "received": self.received, "encoding": self.encoding,
                "decided": self.decided, "repairs": [asdict(r) for r in self.repairs]}

    def trace_entry(self, where: str) -> dict[str, Any]:
        """What the trace records for this string (``where``: Subject, From display name,
        HPRIM patient name, attachment name …)."""
        entry: dict[str, Any] = {"where": where, "encoding": self.encoding,
                                 "decided": self.decided}
        if self.changed:
            entry.update(before=self.received, after=self.text,
                         how=" ; ".join(r.detail for r in self.repairs))
        return entry


@dataclass(frozen=True)
class _Candidate:
    text: str
    base: str
    steps: tuple[str, ...]
    kinds: tuple[str, ...]
    prior: float
    score: float
    bad: int

    @property
    def value(self) -> float:
        return self.score + self.prior


def _candidate(text: str, base: str, prior: float, steps: tuple[str, ...] = (),
               kinds: tuple[str, ...] = ()) -> _Candidate:
    judged = plausibility(text)
    return _Candidate(text, base, steps, kinds, prior, judged.score + _likelihood(text),
                      judged.bad)


def _resolve_hint(hint: str | None) -> str | None:
    if hint is None:
        return None
    return HINTS.get(hint.strip().lower())


def repair_short(data: bytes | str, *, hint: str | None = None) -> ShortResult:
    """Read a short string (bytes as received, or text a header decoder already made) back
    into what its author wrote; see the module docstring.  ``hint``: the sender's known
    charset (``cp1252``, ``mac_roman``, ``cp850`` …), unknown names ignored."""
    hinted = _resolve_hint(hint)
    if isinstance(data, str):
        text: str | None = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None:
        if text.isascii() or not has_sign(text):
            return ShortResult(text, text, "utf-8" if not text.isascii() else "ascii",
                               not has_doubt(text))
        return _decide(text, [_candidate(text, "utf-8", 0.0)], text, "utf-8", words=True,
                       hinted=hinted)
    assert isinstance(data, bytes)
    starts: dict[str, _Candidate] = {}
    for codec in SINGLE_BYTE:
        prior = _PRIOR.get(codec, 0.0) + (_HINT_BONUS if codec == hinted else 0.0)
        try:
            read = decode(data, codec)
        except UnicodeDecodeError:
            continue
        cand = _candidate(read, codec, prior)
        if read not in starts or starts[read].value < cand.value:
            starts[read] = cand
    fallback = hinted if hinted in SINGLE_BYTE else "cp1252"
    received = decode(data, fallback)
    return _decide(received, list(starts.values()), received, DISPLAY[fallback], words=False,
                   hinted=hinted)


def _decide(received: str, starts: list[_Candidate], first: str, encoding: str, *,
            words: bool, hinted: str | None) -> ShortResult:
    found = _search(starts, hinted)
    best = max(found, key=lambda c: c.value)
    if best.bad == 0 and not _rival(best, found):
        return _result(received, best, encoding_of=best.base)
    if words:
        return _by_word(received, encoding, hinted)
    return ShortResult(first, first, encoding, False)


def _rival(best: _Candidate, found: list[_Candidate]) -> bool:
    """Whether another plausible reading comes close to the best one."""
    return any(c.bad == 0 and c.text != best.text and c.value > best.value - _MARGIN
               for c in found)


def _result(received: str, best: _Candidate, *, encoding_of: str) -> ShortResult:
    repairs: tuple[Repair, ...] = ()
    if best.steps:
        kind = best.kinds[0]
        repairs = (Repair(kind, " then ".join(best.steps), 0, 1, 1, received, best.text),)
    elif best.text != received:  # the bytes read in another charset than the fallback
        repairs = (Repair("charset", f"read as {DISPLAY.get(best.base, best.base)}", 0, 1, 1,
                          received, best.text),)
    return ShortResult(best.text, received, DISPLAY.get(encoding_of, encoding_of), True,
                       repairs)


def _search(starts: list[_Candidate], hinted: str | None = None) -> list[_Candidate]:
    """Chains of up to three misreadings undone from each start that is not plausible."""
    seen: dict[str, _Candidate] = {}
    for c in starts:
        if c.text not in seen or seen[c.text].value < c.value:
            seen[c.text] = c
    beam = sorted((c for c in seen.values() if c.bad), key=lambda c: c.value,
                  reverse=True)[:_BEAM]
    for _ in range(_DEPTH):
        grown: list[_Candidate] = []
        for c in beam:
            remapped = any(k != "mojibake" for k in c.kinds)
            for mis in MISREADINGS:
                if remapped and mis.written != "utf-8":
                    continue  # one single-byte misreading per chain: what clients do
                try:
                    undone = mis.undo(c.text)
                except (UnicodeEncodeError, UnicodeDecodeError):
                    continue
                if undone == c.text:
                    continue
                cost = _cost(mis, undone, remapped=remapped)
                if hinted is not None and mis.written == hinted and not c.steps:
                    cost -= _HINT_WRITTEN_BONUS
                nxt = _candidate(undone, c.base, c.prior - cost, (*c.steps, mis.name),
                                 (*c.kinds, mis.kind))
                old = seen.get(undone)
                if old is None or old.value < nxt.value:
                    seen[undone] = nxt
                    grown.append(nxt)
        beam = sorted((c for c in grown if c.bad), key=lambda c: c.value,
                      reverse=True)[:_BEAM]
        if not beam:
            break
    return list(seen.values())


def _by_word(received: str, encoding: str, hinted: str | None) -> ShortResult:
    """Each word with a sign repaired alone when it allows one plausible reading."""
    pieces: list[str] = []
    repairs: list[Repair] = []
    undecided = False
    pos = 0
    for word in split_words(received):
        at = received.index(word, pos)
        pieces.append(received[pos:at])
        pos = at + len(word)
        if word.isascii() or word_sign(word) is None:
            pieces.append(word)
            continue
        mended = _mend(word, hinted)
        if mended is None:
            pieces.append(word)
            undecided = True
            continue
        offset = sum(map(len, pieces))
        pieces.append(mended.text)
        repairs.append(Repair(mended.kinds[0] if mended.kinds else "mojibake",
                              " then ".join(mended.steps), offset, 1, offset + 1, word,
                              mended.text))
    pieces.append(received[pos:])
    return ShortResult("".join(pieces), received, encoding, not undecided, tuple(repairs))


@lru_cache(maxsize=4096)
def _mend(word: str, hinted: str | None) -> _Candidate | None:
    found = _search([_candidate(word, "utf-8", 0.0)], hinted)
    best = max(found, key=lambda c: c.value)
    if best.bad or best.text == word or _rival(best, found):
        return None
    return best
