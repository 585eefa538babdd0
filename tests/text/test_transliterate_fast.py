"""The transliteration toward a legacy charset looks only at the runs of non-ASCII characters
(ASCII is written as it is): it gives what the walk over every character gives — the same text
and the same list of replacements, in the same order — on random text of every script the
walk treats apart, on the corpus and a letter, for every charset a legacy
user may have and a few that hold less (ASCII, Greek, Cyrillic)."""

from __future__ import annotations

from anyascii import anyascii
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.text.encode import encode_noting
from gateway.text.transliterate import _fits, _script, _word_letter, replacement, transliterate
from tests.conftest import FIXTURES

CHARSETS = ("mac_roman", "cp850", "cp1252", "iso8859_15", "latin_1", "ascii", "utf-8",
            "iso8859_7", "koi8_r", "cp437")
_TEXTS = [p.read_text("utf-8") for p in sorted((FIXTURES / "text").glob("*/texts/*.txt"))]
_PIECES = st.sampled_from(["é", "è", "à", "ç", "œ", "Œ", "«\u00a0", "\u00a0»", "’", "–", "…", "€",
                           "µ", "°", "²", "γ", "β", "Γ", "Π", "α", "όλ", "Παπαδόπουλος", "Жиз",
                           "中文", "ñ", "ø", "ł", "ő", "ș", "Å", "e\u0301", "\u0301", "\t", " ",
                           "\n", "-", "a", "Z", "1", "Ω", "日本", "\U0001f600", "\x85", "ﬁ"])


def walk(text: str, charset: str) -> tuple[str, dict[str, str]]:
    """What ``transliterate`` did before: every character of ``text`` looked at in turn."""
    if _fits(text, charset):
        return text, {}
    out: list[str] = []
    replaced: dict[str, str] = {}
    i = 0
    while i < len(text):
        c = text[i]
        end = i
        while end < len(text) and _word_letter(text[end]) and not text[end].isascii():
            end += 1
        run = text[i:end]
        if len(run) > 1 and not _fits(run, charset) and len({_script(x) for x in run}) == 1 \
                and _script(c) != "LATIN":
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
    return "".join(out), replaced


def _same(text: str, charset: str) -> None:
    fast = transliterate(text, charset)
    assert fast == walk(text, charset)
    assert list(fast[1]) == list(walk(text, charset)[1])  # the order the reader is told in


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=4), max_size=30).map("".join),
       st.sampled_from(CHARSETS))
def test_the_runs_give_what_the_walk_gives(text: str, charset: str) -> None:
    _same(text, charset)


def test_the_corpus_gives_what_the_walk_gives() -> None:
    letter = ("Créatinine à 78 µmol/L (DFG estimé à 84 mL/min/1,73 m²), γGT 40 UI/L ; "
              "« Œdème » – chez M. Παπαδόπουλος, née Wałęsa…\n") * 40
    for text in [*_TEXTS, letter]:
        for charset in CHARSETS:
            _same(text, charset)


def test_a_charset_without_ascii_is_walked_whole() -> None:
    # the one codec of Python's that cannot write every ASCII character (Arabic DOS: %)
    for text in ("Résultat : 5 % µmol/L [γGT] ~ {x}", "Παπαδόπουλος ^ a % b", "100 %"):
        _same(text, "cp864")


def test_the_mac_recipient_is_told_what_was_replaced() -> None:
    body, counts = encode_noting("Surface 1,73 m² et γGT à 40 UI/L", "mac_roman")
    assert body == "Surface 1,73 m2 et gammaGT à 40 UI/L".encode("mac_roman")
    assert counts == {"² -> 2": 1, "γ -> gamma": 1}
