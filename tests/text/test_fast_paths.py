"""The facts each shortcut of the fast paths rests on, proved against the plain way (a regex, a
whole-text call, ftfy itself).  That the fast paths never change a result — text, encodings,
confidences, every repair — is held by the golden files (tests/text/test_golden.py: every corpus
case under every hint, 20 KB letters of every garbling, seeded made-up inputs, the word judge
and the per-word repairs, recorded when the frozen pre-fast-path implementation agreed)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import ftfy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import TextError
from gateway.text import repair as fast
from gateway.text.charsets import SINGLE_BYTE, decode
from gateway.text.score import _WORD, judge, judge_words, words
from tests.conftest import FIXTURES

_CASES = sorted([*(FIXTURES / "text").glob("*/garbled/*.bin"),
                 *(FIXTURES / "text").glob("*.bin")])
_TEXTS = [p.read_text("utf-8") for p in sorted((FIXTURES / "text").glob("*/texts/*.txt"))]
_PIECES = st.sampled_from(["é", "è", "à", "ç", "œ", "É", "°", "µ", "€", "«\u00a0", "\u00a0»",
                           "’", "–", "…", "Ã©", "Ã", "Â", "â€™", "Ž", "È", "\u0301", "²", "\t",
                           " ", "\n", "\r\n", "\r", "a", "E", "1", "ß", "Ω", "\x85", "\x9d"])


def test_every_codec_reads_ascii_as_ascii_and_the_rest_as_non_ascii() -> None:
    for codec in SINGLE_BYTE:
        assert decode(bytes(range(128)), codec) == bytes(range(128)).decode("ascii")
        assert all(not decode(bytes([b]), codec).isascii() for b in range(128, 256))


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(max_codepoint=0x2FF) | st.sampled_from(" \t\r\n\u00a0\x0b\x0c")))
def test_words_are_the_regex_words(text: str) -> None:
    assert words(text) == _WORD.findall(text)
    assert judge(text) == judge_words(_WORD.findall(text))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120) | st.sampled_from([t.encode(c, "replace") for t in _TEXTS[:6]
                                                  for c in ("utf-8", "cp1252", "mac_roman")]))
def test_byte_readings_carry_their_own_words_and_judgement(data: bytes) -> None:
    data = data.replace(b"\x00", b"")
    for r in fast._byte_readings(data, None):
        assert r.words == words(r.text)
        assert r.judgement == judge(r.text)
    for codec in SINGLE_BYTE:  # the mixed readings, whether or not they are candidates
        mixed = fast._Mixed(b" ".join(fast._byte_words(data))).read(codec).split(" ")
        assert [w for w in mixed if w] == words(fast._mixed_decode(data, codec)[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=8) | st.text(max_size=6).map(lambda t: t.encode("utf-8"))
                | st.sampled_from([b" ", b"\xe9", b"\xc3", b"\xa9", b"\xe2\x80", b"\x99"]),
                max_size=12).map(b"".join))
def test_utf8_runs_are_found_as_before(data: bytes) -> None:
    slow = any(fast._is_utf8(m.group()) for m in fast._UTF8_RUN.finditer(data))
    assert fast._has_utf8_runs(data) == slow


def test_nfd_is_judged_the_same() -> None:
    text = unicodedata.normalize("NFD", "Créatinine élevée à l’entrée")
    assert judge(text) == judge_words(_WORD.findall(text))


def test_corpus_cases_are_there() -> None:
    assert Path(FIXTURES / "text" / "sample-letter-mac-read-as-pc.bin").is_file()


_SPACED = st.text(st.sampled_from("ab é\t\r\n\u00a0Ã©"), max_size=80)


@settings(max_examples=500, deadline=None)
@given(_SPACED | st.text(max_size=40))
def test_tokens_are_the_regex_tokens(text: str) -> None:
    assert fast._tokens(text) == [(m.start(), m.group()) for m in fast._TOKEN.finditer(text)]


@settings(max_examples=500, deadline=None)
@given(_SPACED, st.data())
def test_locator_is_count_and_rfind(text: str, data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    assert fast._Locator(text)(offset) == (line, column)


_FTFY_PIECES = st.sampled_from(["Ã©", "Ã", "Â", "â€™", "Ã ", " Â ", "Ž", "\x85", "\x9d", "é",
                                "\n", "\r", "&amp;", "\x1b[1m", "ﬁ", "“", "Ã\xa0", "√©", "\u2028"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_FTFY_PIECES | st.text(max_size=5), max_size=30).map("".join))
def test_ftfy_by_lines_is_ftfy(text: str) -> None:
    assert fast._ftfy(text) == ftfy.fix_text(text, fast._FTFY_CONFIG)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=0x7F)))
def test_ftfy_leaves_ascii_alone(text: str) -> None:
    assert ftfy.fix_text(text, fast._FTFY_CONFIG) == text


def test_ftfy_by_lines_on_every_corpus_reading() -> None:
    for case in _CASES:
        data = case.read_bytes()
        for codec in ("cp1252", "mac_roman"):
            text = decode(data, codec)
            assert fast._ftfy(text) == ftfy.fix_text(text, fast._FTFY_CONFIG)


def test_cp850_encodes_as_python_does() -> None:
    from gateway.text.charsets import encode

    table = bytes(range(256)).decode("cp850")
    assert encode(table, "cp850") == table.encode("cp850") == bytes(range(256))
    for ch in map(chr, range(0x3000)):
        try:
            want: bytes | None = ch.encode("cp850")
        except UnicodeEncodeError:
            want = None
        try:
            got: bytes | None = encode(ch, "cp850")
        except UnicodeEncodeError:
            got = None
        assert got == want, ch


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=6) | st.text(max_size=6).map(lambda t: t.encode("utf-8"))
                | st.sampled_from([b" ", b"\xe9", b"\xc3\xa9", b"\xe2\x80\x99", b"\x00"]),
                max_size=16).map(b"".join))
def test_mixed_reading_all_at_once_is_run_by_run(data: bytes) -> None:
    mixed = fast._Mixed(data)
    for codec in SINGLE_BYTE:
        assert mixed.read(codec) == fast._mixed_decode(data, codec)[0]


def test_ftfy_step_is_used_with_the_installed_ftfy() -> None:
    assert fast._FTFY_STEP is not None  # else the fallback (fix_text per line) is what runs


def test_ftfy_on_every_corpus_reading_of_utf8_bytes() -> None:
    for case in _CASES:
        data = case.read_bytes()
        if not fast._is_utf8(data):
            continue
        for codec in ("utf-8", *SINGLE_BYTE):
            text = data.decode("utf-8") if codec == "utf-8" else decode(data, codec)
            assert fast._ftfy(text) == ftfy.fix_text(text, fast._FTFY_CONFIG)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=5), max_size=30).map("".join),
       st.sampled_from(fast.MISREADINGS))
def test_undo_by_words_is_undo_of_the_text(text: str, mis: Any) -> None:
    start = fast._reading(text, "word", prior=0.0)
    try:
        whole: str | None = mis.undo(text)
    except (UnicodeEncodeError, UnicodeDecodeError):
        whole = None
    got = fast._undo(start, mis)
    if whole is None or whole == text:
        assert got is None
    else:
        assert got is not None and got.text == whole and got.words == words(whole)
        assert got.judgement == judge(whole)


def test_every_reading_carries_its_own_words_and_judgement() -> None:
    """What the whole-text search makes, on every corpus case: words and judgement are those
    of the reading's text (the shortcuts above never drift from it)."""
    checked = 0
    for case in _CASES[::3]:
        body, _ = fast._byte_level_repairs(case.read_bytes())
        if body.isascii():
            continue
        start = sorted(fast._byte_readings(body, None), key=lambda r: r.value, reverse=True)
        for r in fast._search(start) if start[0].judgement.suspicious else start:
            assert r.words == words(r.text)
            assert r.judgement == judge(r.text)
            checked += 1
    assert checked > 500


@settings(max_examples=500, deadline=None)
@given(_SPACED | st.text(max_size=40))
def test_non_ascii_tokens_are_the_regex_tokens_not_ascii(text: str) -> None:
    assert fast._non_ascii_tokens(text) == [(m.start(), m.group())
                                            for m in fast._TOKEN.finditer(text)
                                            if not m.group().isascii()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\xe9", b"\x1a"]), max_size=20)
       .map(b"".join))
def test_line_ends_as_the_regex(data: bytes) -> None:
    got, _ = fast._byte_level_repairs(data)
    body = data.rstrip(b"\x1a") if data.endswith(b"\x1a") else data
    assert got == fast._LINE_ENDS_B.sub(b"\n", body)


@settings(max_examples=300, deadline=None)
@given(_SPACED, st.lists(st.integers(0, 80), max_size=10))
def test_locator_many_is_one_by_one(text: str, offsets: list[int]) -> None:
    offsets = [min(o, len(text)) for o in offsets]
    locate = fast._Locator(text)
    lines, columns = locate.many(offsets)
    assert list(zip(lines, columns, strict=True)) == [locate(o) for o in offsets]


# ftfy's badness check, the windowed way (repair._is_bad): the premises, proved on the regex.

def _code_points(items: list[Any]) -> set[int] | None:
    """The characters a parsed single-character item can match; None when unbounded."""
    out: set[int] = set()
    for op, av in items:
        name = str(op)
        if name == "LITERAL":
            out.add(av)
        elif name == "RANGE":
            out.update(range(av[0], av[1] + 1))
        else:  # NEGATE, CATEGORY (\s, \w), ANY: not a finite set we can compare
            return None
    return out


def _badness_parsed() -> Any:
    import re
    from re import _parser

    return _parser.parse(ftfy.badness.BADNESS_RE.pattern, re.VERBOSE)


def test_badness_shortcut_is_used_with_the_installed_ftfy() -> None:
    assert fast._is_bad is not ftfy.badness.is_bad  # else ftfy's own check is what runs


def test_every_badness_match_holds_a_trigger_character() -> None:
    import re
    from re import _parser

    trigger = _code_points(_parser.parse(
        fast._TRIGGER_CLASS.format(**ftfy.badness.MOJIBAKE_CATEGORIES))[0][1])
    assert trigger is not None
    assert not trigger & set(map(ord, "éèàçêëîïôûùâ°’\u00a0–…"))  # the point of it
    (op, (_, alternatives)), = _badness_parsed()
    assert str(op) == "BRANCH" and len(alternatives) > 30
    for alternative in alternatives:
        required = []
        for item_op, av in alternative:
            if str(item_op) == "LITERAL":
                required.append({av})
            elif str(item_op) == "IN":
                chars = _code_points(av)
                if chars is not None:
                    required.append(chars)
        # a match of the alternative matches every required item: one lies in the trigger set
        assert any(chars <= trigger for chars in required), alternative
    assert re.compile(fast._TRIGGER_CLASS.format(**ftfy.badness.MOJIBAKE_CATEGORIES))


def test_badness_matches_are_short_and_need_no_context() -> None:
    parsed = _badness_parsed()
    assert parsed.getwidth()[1] <= fast._BADNESS_WIDTH
    seen: set[tuple[str, str]] = set()

    def walk(items: Any) -> None:
        for op, av in items:
            name = str(op)
            seen.add((name, str(av) if name == "AT" else ""))
            if name == "BRANCH":
                for alternative in av[1]:
                    walk(alternative)
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                walk(av[2])
            elif name == "SUBPATTERN":
                walk(av[3])

    walk(parsed)
    # No lookaround, no word boundary, no end anchor; ^ matches at 0 only, window or not.
    assert seen <= {("AT", "AT_BEGINNING"), ("ANY", ""), ("LITERAL", ""), ("IN", ""),
                    ("MAX_REPEAT", ""), ("BRANCH", ""), ("SUBPATTERN", "")}, seen
    assert not ftfy.badness.BADNESS_RE.flags & (2 | 8 | 16)  # IGNORECASE, MULTILINE, DOTALL


@settings(max_examples=1000, deadline=None)
@given(st.lists(_FTFY_PIECES | _PIECES | st.text(max_size=5)
                | st.sampled_from(["µ", "²", "À", "×²", "à²", "œ.", "√±", "ВЂ", "ΒΓΟ", "Ù·Ø·",
                                   "ГўВЂВ a", "É°", "Ã ", " Â ", "a\u00a0Ã "]),
                max_size=30).map("".join))
def test_is_bad_windowed_is_ftfy_is_bad(text: str) -> None:
    assert fast._is_bad(text) == ftfy.badness.is_bad(text)


def test_is_bad_windowed_on_every_corpus_reading_line() -> None:
    for case in _CASES:
        data = case.read_bytes()
        texts = [decode(data, codec) for codec in SINGLE_BYTE]
        if fast._is_utf8(data):
            texts.append(data.decode("utf-8"))
        for text in texts:
            for line in text.splitlines(keepends=True):
                assert fast._is_bad(line) == ftfy.badness.is_bad(line), line


_HINTS = st.sampled_from([None, "cp1252", "mac_roman", "cp850", "utf-8", "latin-9"])
_UTF8_PIECES = _PIECES | st.sampled_from(["João", "Ångström", "Wałęsa", "Μmol", "µmol", "π",
                                          "Œdème", "naïve", "ﬁn", "Ž", "中文", "Ä", "ÃÂ"])


def _both_ways(data: bytes, hint: str | None) -> None:
    try:
        shortcut = fast.normalize(data, hint=hint)
    except TextError as exc:
        with pytest.raises(TextError, match=re.escape(str(exc))):
            fast._normalize(data, hint, shortcut=False)
        return
    assert shortcut == fast._normalize(data, hint, shortcut=False)


@settings(max_examples=400, deadline=None)
@given(st.lists(_UTF8_PIECES | st.text(max_size=6), max_size=40).map("".join), _HINTS)
def test_clean_utf8_returned_at_once_is_what_the_whole_reading_gives(text: str,
                                                                    hint: str | None) -> None:
    """Valid UTF-8 without a sign of mojibake is returned before any candidate is judged:
    text, encodings, confidence and repairs are those of the whole reading."""
    _both_ways(text.encode("utf-8"), hint)


def test_corpus_and_letters_read_the_same_with_or_without_the_shortcut() -> None:
    for text in _TEXTS:
        for hint in (None, "utf-8", "cp1252", "mac_roman"):
            _both_ways(text.encode("utf-8"), hint)
            _both_ways(text.encode("utf-8").replace(b"\n", b"\r\n"), hint)
    for case in _CASES:  # the garbled ones take the whole reading either way
        _both_ways(case.read_bytes(), None)
