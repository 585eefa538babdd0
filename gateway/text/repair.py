"""Read legacy bytes back into exactly what the author wrote (pure: bytes in, TextResult out).

How a text is read:

0. Before any judging (once step 1 has looked at the bytes), valid UTF-8 without a positive
   sign of mojibake (:mod:`gateway.text.names`: a word no
   typist makes that undoing a known misreading makes more plausible, or a C1 control) was
   written right: it is returned as it came, whatever the judge below would make of it (the
   names of patients — João, Ångström, Wałęsa — are not French, and are right).  Only words
   with a sign are ever mended.  Short strings (a name, a subject) are read by
   :mod:`gateway.text.short` on their own evidence.
1. A byte-order mark decides at once (and is removed); NUL bytes or many control bytes mean
   the input is not text at all: :class:`~gateway.errors.TextError`, never a guess.
2. Candidate readings of the bytes: UTF-8 when the bytes are valid UTF-8; otherwise each
   single-byte encoding legacy clients write (CP1252, ISO-8859-15, Mac Roman, CP850,
   ISO-8859-1), and for each of them a *mixed* reading in which every run of non-ASCII bytes
   that is valid UTF-8 is read as UTF-8 (a UTF-8 fragment pasted into a CP1252 letter).
   chardet's guess joins the candidates when it names something else.
3. Each candidate that still looks wrong is searched for misreadings baked into it — UTF-8
   read as CP1252/Latin-1/Mac Roman (once or twice), Mac Roman read as CP1252 and the reverse,
   CP850 read as CP1252 … (:data:`~gateway.text.charsets.MISREADINGS`), a small beam search
   over chains of up to three undoings; ftfy's own repair (quote uncurling off: it would
   destroy CP850 text) is one more candidate.
4. The French-aware judge (:mod:`gateway.text.score`) picks the whole-text reading; words
   that still look wrong are then repaired one by one, so a garbled fragment inside a clean
   letter is mended without touching the rest.
5. Line ends become LF, the text NFC.  Every change after the first reading is a Repair.

No byte is ever dropped: every decoder is strict, and what a reading cannot explain stays
visible in the text and lowers the confidence.

Speed, without changing any result (the golden files, tests/text/test_golden.py, hold every
output to what the implementation before the shortcuts gave): the judge only looks at
words holding a non-ASCII character, and every reading and every misreading we know maps ASCII
to the same ASCII and the rest to non-ASCII, so a reading is judged — and a misreading undone —
on those words alone, read or undone all at once, each distinct word judged once (and
remembered across letters); ftfy runs a line at a time, as it does itself, its one-step repair
memoised so that readings which repair into one another share the work, and it is not asked
about a line its own badness check passes — a check made only around the few characters every
match of ftfy's badness regex holds (most clean French lines have none).

The module stays whole (some 700 lines): the readings, the search for misreadings and the
word-by-word repair are one algorithm whose shortcuts (above) rely on each other's
invariants; they are read, and changed, together.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import math
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache, reduce
from itertools import accumulate, chain, compress, filterfalse, repeat
from operator import add, itemgetter, ne, not_

import chardet
import ftfy

from gateway.errors import TextError
from gateway.text.charsets import DISPLAY, HINTS, MISREADINGS, SINGLE_BYTE, Misreading, decode
from gateway.text.model import EncodingFound, Repair, TextResult
from gateway.text.names import any_sign, word_sign
from gateway.text.score import Judgement, judge, judge_word, judge_words, words

_UTF8_RUN = re.compile(rb"[\x80-\xff]+")
_WS_TO_SPACE = bytes.maketrans(b"\t\r\n", b"   ")
_CONTROLS = bytes(b for b in range(0x20) if b not in (9, 10, 12, 13, 26, 27))
_TOKEN = re.compile(r"[^ \t\r\n]+")
_LINE_ENDS_B = re.compile(rb"\r\n?")

# Priors, in score units: small nudges that only decide between readings the judge finds
# (nearly) equally plausible.  Undoing a misreading must earn its keep.
_PRIOR = {"cp1252": 0.3, "iso8859_15": 0.0, "mac_roman": 0.0, "cp850": 0.0, "latin_1": -0.2}
_HINT_BONUS = 2.0
_STEP_COST = 1.0
_MIXED_COST = 2.0
_FTFY_COST = 1.5
_BEAM = 4
_DEPTH = 3

_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=False,
    decode_inconsistent_utf8=True,
    fix_c1_controls=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=False,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


@dataclass(frozen=True)
class _Reading:
    """One candidate reading: the text, how it was obtained, and what it is worth."""

    text: str
    base: str  # the byte-level encoding (utf-8, cp1252, …)
    mixed: bool
    steps: tuple[str, ...]  # names of misreadings undone, in order
    kinds: tuple[str, ...]
    judgement: Judgement
    prior: float
    # The words of ``text`` holding a non-ASCII character, in order (score.words(text)):
    # all the judge looks at, and what a misreading changes.  Kept as a table and where each
    # word stands in it, ``words == [table[i] for i in where]``: a misreading maps each word
    # alone, so it is undone on the table and the readings it leads to share ``where``.
    table: list[str]
    where: list[int]

    @property
    def value(self) -> float:
        return self.judgement.score + self.prior

    @property
    def words(self) -> list[str]:
        return list(map(self.table.__getitem__, self.where))


def normalize(data: bytes, *, hint: str | None = None) -> TextResult:
    """Return the faithful text of ``data`` (see the module docstring).

    ``hint`` is the sender's known charset or platform (``cp1252``, ``mac_roman``, ``cp850``,
    ``utf-8``, or ``pc``/``mac``/``dos``); it tips the balance, it never overrules evidence.
    Raises :class:`TextError` for input that is not text.
    """
    return _normalize(data, hint, shortcut=True)


def _normalize(data: bytes, hint: str | None, *, shortcut: bool) -> TextResult:
    """:func:`normalize`; ``shortcut=False`` reads valid UTF-8 without a sign of mojibake the
    whole way (every candidate judged) instead of returning it at once: the same result,
    which tests/text/test_fast_paths.py proves on random and corpus text."""
    hinted = _resolve_hint(hint)
    repairs: list[Repair] = []
    body, bom = _strip_bom(data)
    if bom == "utf-16":
        text = _decode_utf16(body).replace("\r\n", "\n").replace("\r", "\n")
        return _finish(text, [EncodingFound("utf-16", 1.0)], repairs, bom_note="utf-16")
    _refuse_binary(body)

    body, pre = _byte_level_repairs(body)
    repairs.extend(pre)

    if body.isascii():
        return _finish(body.decode("ascii"), [EncodingFound("utf-8" if bom else "ascii", 1.0)],
                       repairs, bom_note=bom)
    as_utf8 = _utf8_or_none(body)
    written_right: str | None = None
    utf8_words = words(as_utf8) if as_utf8 is not None else []
    if as_utf8 is not None and not any_sign(utf8_words):
        # The invariant, before any judging: valid UTF-8 without a positive sign of mojibake
        # (gateway.text.names) was written right and is returned as it is.
        if shortcut and not judge_words(utf8_words).suspicious:
            return _finish(as_utf8, [EncodingFound("utf-8", 0.99)], repairs, bom_note=bom)
        # What the letter judge doubts (a capital Mu, a Mac pi) is weighed as before, for the
        # confidence, but the text is the one written whatever the weighing would change.
        written_right = as_utf8

    candidates = list(_byte_readings(body, hinted))
    best_first = sorted(candidates, key=lambda r: r.value, reverse=True)
    if best_first[0].judgement.suspicious:
        best_first = sorted(_search(best_first), key=lambda r: r.value, reverse=True)
    best = best_first[0]
    runner_up = next((r for r in best_first[1:] if r.text != best.text), None)
    confidence = _confidence(best, runner_up)

    text = best.text
    if written_right is not None and text != written_right:
        doubts = judge(written_right).suspicious
        return _finish(written_right, [EncodingFound("utf-8", round(
            max(0.5, 0.99 - 0.1 * min(doubts, 5)), 3))], repairs, bom_note=bom)
    if best.mixed:
        repairs.extend(_mixed_repairs(body, best.base))
    if best.steps:
        repairs.extend(_word_repairs(_first_reading(body, best), text, ",".join(best.kinds),
                                     " then ".join(best.steps)))
    text, word_fixes = _mend_words(text, best.judgement)
    repairs.extend(word_fixes)

    encodings = _encodings_found(body, best, confidence)
    return _finish(text, encodings, repairs, bom_note=bom)


def _resolve_hint(hint: str | None) -> str | None:
    if hint is None:
        return None
    try:
        return HINTS[hint.strip().lower()]
    except KeyError:
        raise TextError(
            f"unknown charset hint {hint!r} (expected one of: {', '.join(sorted(HINTS))})"
        ) from None


def _strip_bom(data: bytes) -> tuple[bytes, str | None]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:], "utf-8"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data, "utf-16"
    return data, None


def _decode_utf16(data: bytes) -> str:
    try:
        return data.decode("utf-16")
    except UnicodeDecodeError as exc:
        raise TextError(f"input has a UTF-16 byte-order mark but is not UTF-16 (byte {exc.start})")\
            from None


def _refuse_binary(data: bytes) -> None:
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TextError(f"input is not text: NUL byte at offset {nul}")
    controls = len(data) - len(data.translate(None, _CONTROLS))
    if controls > max(8, len(data) // 100):
        raise TextError(f"input is not text: {controls} control bytes in {len(data)} bytes")


def _utf8_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _mixed_decode(data: bytes, codec: str) -> tuple[str, int]:
    """Read every run of non-ASCII bytes as UTF-8 when it is valid UTF-8, else as ``codec``."""
    parts: list[str] = []
    pos = 0
    utf8_runs = 0
    for m in _UTF8_RUN.finditer(data):
        parts.append(data[pos : m.start()].decode("ascii"))
        run = m.group()
        try:
            parts.append(run.decode("utf-8"))
            utf8_runs += 1
        except UnicodeDecodeError:
            parts.append(decode(run, codec))
        pos = m.end()
    parts.append(data[pos:].decode("ascii"))
    return "".join(parts), utf8_runs


class _Mixed:
    """Bytes read the mixed way (:func:`_mixed_decode`) in any codec, the runs found once.

    The bytes are cut around the runs that are valid UTF-8; the pieces between (ASCII and the
    other runs) are read in the codec all at once, NUL-separated (``data`` holds no NUL: a
    single-byte codec reads NUL, and only NUL, as NUL), and the UTF-8 runs put back between.
    """

    def __init__(self, data: bytes) -> None:
        self._slow = b"\x00" in data
        self._data = data
        self._pieces: list[bytes] = []
        self._utf8: list[str] = []
        utf8: dict[bytes, str | None] = {}
        pos = 0
        for m in _UTF8_RUN.finditer(data):
            run = m.group()
            if run not in utf8:
                try:
                    utf8[run] = run.decode("utf-8")
                except UnicodeDecodeError:
                    utf8[run] = None
            as_utf8 = utf8[run]
            if as_utf8 is not None:
                self._pieces.append(data[pos : m.start()])
                self._utf8.append(as_utf8)
                pos = m.end()
        self._pieces.append(data[pos:])

    def read(self, codec: str) -> str:
        if self._slow:
            return _mixed_decode(self._data, codec)[0]
        pieces = decode(b"\x00".join(self._pieces), codec).split("\x00")
        return "".join(chain.from_iterable(zip(pieces, [*self._utf8, ""], strict=True)))


def _reading(text: str, base: str, *, prior: float, mixed: bool = False,
             steps: tuple[str, ...] = (), kinds: tuple[str, ...] = (),
             text_words: list[str] | None = None,
             judgement: Judgement | None = None) -> _Reading:
    """A candidate; ``text_words`` is ``score.words(text)`` when the caller knows it, and
    ``judgement`` its judgement."""
    if text_words is None:
        text_words = words(text)
    if judgement is None:
        judgement = judge_words(text_words)
    table = list(dict.fromkeys(text_words))
    where = list(map({w: i for i, w in enumerate(table)}.__getitem__, text_words))
    return _Reading(text, base, mixed, steps, kinds, judgement, prior, table, where)


def _judge_table(table: list[str], where: list[int]) -> Judgement:
    """``judge_words([table[i] for i in where])``: each entry judged once, the scores added
    in the words' order (the same floats)."""
    verdicts = list(map(judge_word, table))
    scores = list(map(itemgetter(0), verdicts))
    bad = list(map(itemgetter(1), verdicts))
    return Judgement(reduce(add, map(scores.__getitem__, where), 0.0),
                     sum(map(bad.__getitem__, where)))


def _byte_words(data: bytes) -> list[bytes]:
    """The words of ``data`` holding a non-ASCII byte, in order, split on ASCII white space.

    Every reading we make of bytes (UTF-8, each single-byte codec, the mixed readings) maps
    ASCII bytes to the same ASCII characters and non-ASCII bytes to non-ASCII characters, and
    no character spans an ASCII byte: the words the judge sees in a reading are these words,
    each read alone.  So each reading is judged word by word, each distinct word once.
    """
    return list(filterfalse(bytes.isascii, data.translate(_WS_TO_SPACE).split(b" ")))


def _has_utf8_runs(data: bytes) -> bool:
    """Whether some run of non-ASCII bytes is valid UTF-8 as a whole.

    Such a run holds a multi-byte sequence, which the UTF-8 decoder (starting fresh after the
    ASCII byte before the run) reads as one character where surrogateescape reads every other
    byte as one: without one, the decoded length is the byte length."""
    if len(data.decode("utf-8", "surrogateescape")) == len(data):
        return False
    return any(_is_utf8(run) for run in set(_UTF8_RUN.findall(data)))


def _byte_readings(data: bytes, hinted: str | None) -> Iterable[_Reading]:
    def prior(codec: str) -> float:
        return _PRIOR.get(codec, 0.0) + (_HINT_BONUS if codec == hinted else 0.0)

    # The distinct words, read together (space-separated: no reading turns a non-space byte
    # into a space), make each reading's table; where they stand is the same for all.
    byte_words = _byte_words(data)
    byte_table = list(dict.fromkeys(byte_words))
    where = list(map({w: i for i, w in enumerate(byte_table)}.__getitem__, byte_words))
    joined = b" ".join(byte_table)
    read_before: dict[str, _Reading] = {}  # by text (Latin-1 often reads as ISO-8859-15)
    mixed_text: _Mixed | None = None
    mixed_table: _Mixed | None = None

    def reading(codec: str, *, prior: float, mixed: bool = False) -> _Reading:
        nonlocal mixed_text, mixed_table
        if mixed:
            if mixed_text is None or mixed_table is None:
                mixed_text, mixed_table = _Mixed(data), _Mixed(joined)
            text = mixed_text.read(codec)
        elif codec == "utf-8":
            text = data.decode("utf-8")
        else:
            text = decode(data, codec)
        same = read_before.get(text)
        if same is None:
            if not byte_table:
                table: list[str] = []
            elif mixed:
                assert mixed_table is not None
                table = mixed_table.read(codec).split(" ")
            else:
                table = (joined.decode("utf-8") if codec == "utf-8"
                         else decode(joined, codec)).split(" ")
            same = read_before[text] = _Reading(text, codec, mixed, (), (),
                                                _judge_table(table, where), prior, table, where)
        return replace(same, base=codec, prior=prior, mixed=mixed)

    if _is_utf8(data):
        utf8 = reading("utf-8", prior=prior("utf-8") + 1.0)
        yield utf8
        if not utf8.judgement.suspicious:
            return  # clean UTF-8: nothing to doubt
        # Rarely, a single-byte text is valid UTF-8 by accident (Mac Roman "’é" is D5 8E).
        for codec in SINGLE_BYTE:
            yield reading(codec, prior=prior(codec) - 3.0)
        return
    has_utf8_runs = _has_utf8_runs(data)
    readings = []
    for codec in SINGLE_BYTE:
        readings.append(reading(codec, prior=prior(codec)))
        if has_utf8_runs:
            readings.append(reading(codec, prior=prior(codec) - _MIXED_COST, mixed=True))
    yield from readings
    if all(r.judgement.suspicious for r in readings):
        yield from _chardet_reading(data)


def _chardet_reading(data: bytes) -> Iterable[_Reading]:
    """chardet's guess, when it names an encoding none of ours is (another language…)."""
    guess = chardet.detect(data[:65536]).get("encoding")
    codec = _chardet_codec(guess)
    if codec is not None and codec not in SINGLE_BYTE and codec != "utf-8":
        with contextlib.suppress(UnicodeDecodeError, LookupError):
            yield _reading(data.decode(codec), codec, prior=-1.0)


def _chardet_codec(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _undo(reading: _Reading, mis: Misreading) -> _Reading | None:
    # A misreading maps ASCII to the same ASCII, the rest to non-ASCII, and no character
    # spans an ASCII byte: undoing the text is undoing each word holding a non-ASCII
    # character (all together, space-separated) and leaving the rest.  So the words decide
    # whether the text undoes and whether it changes; only then is the text undone.
    if not reading.table:
        return None  # ASCII: nothing changes
    try:
        table = mis.undo(" ".join(reading.table)).split(" ")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    if table == reading.table:
        return None  # every entry stands somewhere: the words are unchanged
    fixed = mis.undo(reading.text)
    return _Reading(fixed, reading.base, reading.mixed, (*reading.steps, mis.name),
                    (*reading.kinds, mis.kind), _judge_table(table, reading.where),
                    reading.prior - _STEP_COST, table, reading.where)


def _search(start: list[_Reading]) -> list[_Reading]:
    """Beam search over chains of misreadings to undo, from the byte-level readings."""
    seen = {r.text: r for r in start}
    beam = [r for r in start if r.judgement.suspicious][:_BEAM]
    for _ in range(_DEPTH):
        grown: list[_Reading] = []
        for r in beam:
            for mis in MISREADINGS:
                nxt = _undo(r, mis)
                if nxt is not None and nxt.text not in seen:
                    seen[nxt.text] = nxt
                    grown.append(nxt)
        beam = sorted((r for r in grown if r.judgement.suspicious),
                      key=lambda r: r.value, reverse=True)[:_BEAM]
        clean = max((r.value for r in seen.values() if not r.judgement.suspicious),
                    default=None)
        if not beam or (clean is not None and clean >= beam[0].value):
            break  # a clean reading beats anything still garbled: deeper chains only cost
    if all(r.judgement.suspicious for r in seen.values()):
        # Nothing we know undoes it: let ftfy try its own repairs (quote uncurling off).
        for r in start[:_BEAM]:
            fixed = _ftfy(r.text)
            if fixed not in seen:
                seen[fixed] = _reading(fixed, r.base, prior=r.prior - _FTFY_COST, mixed=r.mixed,
                                       steps=(*r.steps, "ftfy"), kinds=(*r.kinds, "mojibake"))
    return list(seen.values())


def _ftfy(text: str) -> str:
    """``ftfy.fix_text(text, _FTFY_CONFIG)``, a line at a time as fix_text works, skipping
    ASCII lines (ftfy's fixes we leave on only touch non-ASCII text) and remembering lines
    (the candidate readings of one letter share lines, letters of one sender too)."""
    out = []
    pos = 0
    end = len(text)
    limit = _FTFY_CONFIG.max_decode_length
    while pos < end:
        brk = text.find("\n", pos) + 1 or end
        brk = min(brk, pos + limit)
        segment = text[pos:brk]
        out.append(segment if segment.isascii() or not _is_bad(segment)
                   else _ftfy_segment(segment))
        pos = brk
    return "".join(out)


@lru_cache(maxsize=2048)
def _ftfy_segment(segment: str) -> str:
    if _FTFY_STEP is None:
        return ftfy.fix_text(segment, _FTFY_CONFIG)
    # What fix_text does to one segment with our config: fix_and_explain runs fix_encoding
    # (one-step repairs, with ftfy's *default* config, until nothing changes) and then only
    # fixers our config turns off, until nothing changes: the fixed point of the one step.
    # Memoising the step means the candidate readings of a letter, which often repair into
    # one another's lines, share the work (a Mac Roman line repairs into the UTF-8 line).
    # The step leaves text the badness check passes alone (see _is_bad): most lines, once
    # repaired, are not asked again.
    text = segment
    while True:
        fixed = _ftfy_step(text)
        if fixed == text or not _is_bad(fixed):
            return fixed
        text = fixed


@lru_cache(maxsize=8192)  # a 20 KB UTF-8 letter's four readings: ~900 lines
def _ftfy_step(text: str) -> str:
    assert _FTFY_STEP is not None
    return _FTFY_STEP(text, _FTFY_STEP_CONFIG).text


def _ftfy_one_step() -> Callable[[str, ftfy.TextFixerConfig], ftfy.ExplainedText] | None:
    """ftfy's one-step encoding repair, where the reasoning above holds (ftfy 6, every fixer
    but fix_encoding off in our config); else None and segments go through fix_text."""
    step = getattr(ftfy, "_fix_encoding_one_step_and_explain", None)
    others = ("unescape_html", "fix_c1_controls", "fix_latin_ligatures", "fix_character_width",
              "uncurl_quotes", "fix_line_breaks", "fix_surrogates", "remove_terminal_escapes",
              "remove_control_chars", "normalization", "explain")
    if (not ftfy.__version__.startswith("6.") or not callable(step)
            or any(getattr(_FTFY_CONFIG, name) for name in others)):
        return None
    return step  # type: ignore[no-any-return]


_FTFY_STEP = _ftfy_one_step()
_FTFY_STEP_CONFIG = ftfy.TextFixerConfig(explain=False)  # what ftfy.fix_encoding uses

# ftfy changes nothing in a segment its badness regex (ftfy.badness.BADNESS_RE) finds no match
# in: its one step returns such text as it is, so fix_text with our config does too.  Most
# lines are such (every line of a clean reading, every line once repaired), and the regex is
# slow to find nothing (37 alternatives tried at every character).  Every match of it (ftfy
# 6.3) holds a character of _TRIGGER, a class with none of the common French letters (é, è,
# à, ç, ê, …, °, ’, the non-breaking space), and is at most _BADNESS_WIDTH long; it uses no
# lookaround, no word boundary, no end anchor.  So text has a match exactly when one of the
# windows around its trigger characters has one (``search(text, pos, endpos)`` matches there
# as in the whole text; ``^`` only at 0, as in the whole text).  tests/text/test_fast_paths.py
# proves each premise on the regex itself; another ftfy release's regex (another digest)
# falls back to ftfy's own check.
_BADNESS_PROVEN = "9dcc0f2ac90d9ae3c85eb7b9b2c0b8a8e8126153847c2b30c91a0bb263f3b8c4"
_BADNESS_WIDTH = 7
_TRIGGER_CLASS = (
    "[{c1}{bad}{upper_accented}{box}{start_punctuation}{end_punctuation}{currency}{numeric}"
    "ŒœÙЂВГРСΒΓΞΟ]"
)


def _badness_check() -> Callable[[str], bool]:
    """``ftfy.badness.is_bad``, the windowed way where the reasoning above holds."""
    badness = ftfy.badness
    regex = badness.BADNESS_RE
    if hashlib.sha256(regex.pattern.encode()).hexdigest() != _BADNESS_PROVEN:
        return badness.is_bad
    triggers = re.compile(_TRIGGER_CLASS.format(**badness.MOJIBAKE_CATEGORIES)).finditer
    search = regex.search
    reach = _BADNESS_WIDTH - 1

    def is_bad(text: str) -> bool:
        for m in triggers(text):
            at = m.start()
            if search(text, max(0, at - reach), at + _BADNESS_WIDTH):
                return True
        return False

    return is_bad


_is_bad = _badness_check()


def _confidence(best: _Reading, runner_up: _Reading | None) -> float:
    penalty = 0.1 * min(best.judgement.suspicious, 5)
    if runner_up is None:
        return round(max(0.5, 0.99 - penalty), 3)
    margin = best.value - runner_up.value
    return round(max(0.05, 0.5 + 0.49 * (1 - math.exp(-margin / 4)) - penalty), 3)


def _first_reading(data: bytes, best: _Reading) -> str:
    """What the bytes said before any misreading was undone (for the repair list)."""
    if best.mixed:
        return _Mixed(data).read(best.base)
    if best.base == "utf-8":
        return data.decode("utf-8")
    return decode(data, best.base)


class _Locator:
    """Line and column (1-based) of offsets in one text: its line starts, found once."""

    def __init__(self, text: str) -> None:
        self._starts = [0]
        at = text.find("\n")
        while at >= 0:
            self._starts.append(at + 1)
            at = text.find("\n", at + 1)

    def many(self, offsets: list[int]) -> tuple[list[int], list[int]]:
        """The lines and the columns of ``offsets``."""
        lines = list(map(bisect_right, repeat(self._starts), offsets))
        columns = [offset - self._starts[line - 1] + 1
                   for offset, line in zip(offsets, lines, strict=True)]
        return lines, columns

    def __call__(self, offset: int) -> tuple[int, int]:
        # as text.count("\n", 0, offset) + 1 and offset - (text.rfind("\n", 0, offset) + 1) + 1
        i = bisect_right(self._starts, offset) - 1
        return i + 1, offset - self._starts[i] + 1


def _spaced(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _tokens(text: str) -> list[tuple[int, str]]:
    """``(m.start(), m.group())`` for every match of ``_TOKEN`` in ``text``, without the regex."""
    out = []
    pos = 0
    for part in _spaced(text).split(" "):
        if part:
            out.append((pos, part))
        pos += len(part) + 1
    return out


def _non_ascii_tokens(text: str) -> list[tuple[int, str]]:
    """The tokens of :func:`_tokens` that hold a non-ASCII character (ASCII ones are judged 0,
    never suspicious), found without a Python step per token."""
    parts = _spaced(text).split(" ")
    ends = list(accumulate(map(len, parts)))  # part i starts at ends[i] - len(parts[i]) + i
    return [(ends[i] - len(parts[i]) + i, parts[i])
            for i in compress(range(len(parts)), map(not_, map(str.isascii, parts)))]


def _word_repairs(before: str, after: str, kind: str, detail: str) -> list[Repair]:
    """One Repair per word that a whole-text undoing changed (ASCII spacing is preserved)."""
    out: list[Repair] = []
    bp = _spaced(before).split(" ")
    ap = _spaced(after).split(" ")
    if len(bp) == len(ap) and list(map(bool, bp)) == list(map(bool, ap)):
        # Same white space (a misreading keeps ASCII): the words pair up where they stand.
        ends = list(accumulate(map(len, ap)))  # part i starts at ends[i] - len(ap[i]) + i
        changed = list(compress(range(len(ap)), map(ne, bp, ap)))
        starts = [ends[i] - len(ap[i]) + i for i in changed]
        return list(map(Repair, repeat(kind.split(",")[0]), repeat(detail), starts,
                        *_Locator(after).many(starts), map(bp.__getitem__, changed),
                        map(ap.__getitem__, changed)))
    bw = _tokens(before)
    aw = _tokens(after)
    if len(bw) != len(aw):
        line, col = 1, 1
        return [Repair(kind, detail, 0, line, col, before[:80], after[:80])]
    locate = _Locator(after)
    for (_, b), (start, a) in zip(bw, aw, strict=True):
        if b != a:
            line, col = locate(start)
            out.append(Repair(kind.split(",")[0], detail, start, line, col, b, a))
    return out


def _mixed_repairs(data: bytes, codec: str) -> list[Repair]:
    out: list[Repair] = []
    text = _Mixed(data).read(codec)
    locate = _Locator(text)
    detail = f"utf-8 span in {DISPLAY.get(codec, codec)} text"
    readings: dict[bytes, tuple[str | None, str]] = {}  # run → (as UTF-8, in codec)
    pos_bytes = 0
    pos_text = 0
    for m in _UTF8_RUN.finditer(data):
        pos_text += m.start() - pos_bytes
        run = m.group()
        read = readings.get(run)
        if read is None:
            try:
                as_utf8: str | None = run.decode("utf-8")
            except UnicodeDecodeError:
                as_utf8 = None
            read = readings[run] = (as_utf8, decode(run, codec))
        as_utf8, in_codec = read
        if as_utf8 is not None:
            line, col = locate(pos_text)
            out.append(Repair("mixed_encoding", detail, pos_text, line, col, in_codec, as_utf8))
            pos_text += len(as_utf8)
        else:
            pos_text += len(in_codec)
        pos_bytes = m.end()
    return out


def _mend_words(text: str, judgement: Judgement) -> tuple[str, list[Repair]]:
    """Repair words that still look wrong, one at a time (a garbled span in a clean text).

    ``judgement`` is ``judge(text)``, already made when ``text`` was a candidate."""
    if not judgement.suspicious:
        return text, []
    changes: list[tuple[int, str, _Reading]] = []
    pieces: list[str] = []
    pos = 0
    for start, word in _non_ascii_tokens(text):
        if word_sign(word) is None:
            continue  # plausible as typed in some alphabet (João, Wałęsa): never mended
        best = _mend_word(word)
        if best is None:
            continue
        pieces.append(text[pos:start])
        pieces.append(best.text)
        pos = start + len(word)
        changes.append((start, word, best))
    if not changes:
        return text, []
    pieces.append(text[pos:])
    mended = "".join(pieces)
    out: list[Repair] = []
    shift = 0
    locate = _Locator(mended)
    for start, word, best in changes:
        offset = start + shift
        line, col = locate(offset)
        out.append(Repair(best.kinds[0] if best.kinds else "mojibake", " then ".join(best.steps),
                          offset, line, col, word, best.text))
        shift += len(best.text) - len(word)
    return mended, out


@lru_cache(maxsize=4096)
def _mend_word(word: str) -> _Reading | None:
    """The best repair of one word judged wrong, or None when nothing does better."""
    verdict = judge(word)
    if not verdict.suspicious:
        return None
    start = _reading(word, "word", prior=0.0)
    best = max(_search([start]), key=lambda r: r.value)
    if best.text == word or best.value < verdict.score + _STEP_COST:
        return None
    if len(best.text) >= len(word) and not any(ch.isalpha() and ch >= "\x80" for ch in best.text):
        return None  # out of context, a lone symbol cannot be told from another one
    return best


def _encodings_found(data: bytes, best: _Reading, confidence: float) -> list[EncodingFound]:
    name = DISPLAY.get(best.base, best.base)
    if not best.mixed:
        return [EncodingFound(name, confidence)]
    utf8_bytes = other = 0
    valid: dict[bytes, bool] = {}
    for run in _UTF8_RUN.findall(data):
        ok = valid.get(run)
        if ok is None:
            ok = valid[run] = _is_utf8(run)
        if ok:
            utf8_bytes += len(run)
        else:
            other += len(run)
    total = max(1, utf8_bytes + other)
    return [EncodingFound(name, confidence, round(other / total, 3)),
            EncodingFound("utf-8", confidence, round(utf8_bytes / total, 3))]


def _byte_level_repairs(data: bytes) -> tuple[bytes, list[Repair]]:
    """DOS end-of-file marker and line ends, fixed on the bytes (both are ASCII everywhere)."""
    repairs: list[Repair] = []
    if data.endswith(b"\x1a"):  # DOS end-of-file marker, not part of the letter
        data = data.rstrip(b"\x1a")
        repairs.append(Repair("dos_eof", "DOS end-of-file marker removed", 0, 1, 1, "\x1a", ""))
    crlf = data.count(b"\r\n")
    cr = data.count(b"\r") - crlf
    if crlf or cr:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # as _LINE_ENDS_B.sub
        what = ", ".join(p for p in (f"{crlf} CRLF" if crlf else "", f"{cr} CR" if cr else "") if p)
        repairs.append(Repair("line_ends", f"{what} → LF", 0, 1, 1,
                              "CRLF" if crlf >= cr else "CR", "LF"))
    return data, repairs


def _finish(text: str, encodings: list[EncodingFound], repairs: list[Repair],
            *, bom_note: str | None) -> TextResult:
    if bom_note:
        repairs.insert(0, Repair("bom", f"{bom_note} byte-order mark removed", 0, 1, 1,
                                 "\ufeff", ""))
    nfc = unicodedata.normalize("NFC", text)
    if nfc != text:
        repairs.append(Repair("nfc", "decomposed accents composed (NFC)", 0, 1, 1, "NFD", "NFC"))
        text = nfc
    return TextResult(text=text, encodings=tuple(encodings), repairs=tuple(repairs))
