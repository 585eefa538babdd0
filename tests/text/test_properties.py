"""Properties: clean text is never altered; garbled real sentences always come back."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.text import normalize
from tests.conftest import FIXTURES

_TEXTS = [
    p.read_text("utf-8")
    for d in ("corpus", "extra")
    for p in sorted((FIXTURES / "text" / d / "texts").glob("*.txt"))
]
_WORDS = sorted({w for t in _TEXTS for w in t.split()})
_LINES = sorted({line for t in _TEXTS for line in t.splitlines() if line.strip()})

french_words = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=60)
separators = st.sampled_from([" ", " ", " ", "\n", " : ", ", ", " ; ", "\u00a0: ", " « ", " » "])


@st.composite
def french_text(draw: st.DrawFn) -> str:
    words = draw(french_words)
    seps = draw(st.lists(separators, min_size=len(words), max_size=len(words)))
    case = draw(st.sampled_from(["as is", "upper", "capitalised"]))
    if case == "upper":
        words = [w.upper() for w in words]
    elif case == "capitalised":
        words = [w[:1].upper() + w[1:] for w in words]
    return "".join(w + s for w, s in zip(words, seps, strict=True))


@settings(max_examples=300, deadline=None)
@given(french_text())
def test_french_text_in_utf8_comes_back_unchanged(text: str) -> None:
    result = normalize(text.encode("utf-8"))
    assert result.text == text
    assert [r.kind for r in result.repairs] == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\n")
               | st.just("\t")))
def test_ascii_is_untouched(text: str) -> None:
    assert normalize(text.encode("ascii")).text == text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_LINES), min_size=2, max_size=6),
       st.sampled_from(["mac_roman", "cp1252", "mac-read-as-pc", "pc-read-as-mac", "mojibake"]))
def test_garbled_sentences_come_back(lines: list[str], garbling: str) -> None:
    text = "\n".join(lines) + "\n"
    try:
        if garbling == "mac-read-as-pc":
            data = text.encode("mac_roman").decode("cp1252", errors="strict").encode("utf-8")
        elif garbling == "pc-read-as-mac":
            data = text.encode("cp1252").decode("mac_roman").encode("utf-8")
        elif garbling == "mojibake":
            data = text.encode("utf-8").decode("cp1252").encode("utf-8")
        else:
            data = text.encode(garbling)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return  # not representable that way (œ in CP850, a CP1252 hole): nothing to test
    assert normalize(data).text == text


def test_word_pool_is_french() -> None:
    assert len(_WORDS) > 500 and any("œ" in w for w in _WORDS)
    assert Path(FIXTURES / "text" / "extra" / "texts").is_dir()
