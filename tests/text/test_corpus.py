"""Every garbled case of the corpora must read back as exactly what the author wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.text import normalize
from tests.conftest import FIXTURES

CORPORA = {
    "shared": (FIXTURES / "text" / "corpus", "make_garbled.py", 110, 108),
    "extra": (FIXTURES / "text" / "extra", "make_extra.py", 268, 268),
}


def _cases(root: Path) -> list[Path]:
    return sorted((root / "garbled").glob("*.bin"))


def _exact(root: Path) -> tuple[int, list[str]]:
    wrong = []
    for case in _cases(root):
        expected = case.with_suffix(".expected").read_bytes()
        got = normalize(case.read_bytes()).text.encode("utf-8")
        if got != expected:
            wrong.append(case.name)
    return len(_cases(root)) - len(wrong), wrong


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_corpus_reads_back_exactly(name: str) -> None:
    root, _, size, floor = CORPORA[name]
    assert len(_cases(root)) == size
    exact, wrong = _exact(root)
    assert exact >= floor, f"{exact}/{size} exact; wrong: {wrong}"


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_fixtures_match_their_script(name: str, tmp_path: Path) -> None:
    """The committed cases are what the kept script builds (fixtures never drift)."""
    root, script, _, _ = CORPORA[name]
    (tmp_path / "texts").mkdir()
    for text in (root / "texts").glob("*.txt"):
        (tmp_path / "texts" / text.name).write_bytes(text.read_bytes())
    (tmp_path / script).write_bytes((root / script).read_bytes())
    subprocess.run([sys.executable, script], cwd=tmp_path, check=True, capture_output=True)
    built = {p.name: p.read_bytes() for p in (tmp_path / "garbled").iterdir()}
    committed = {p.name: p.read_bytes() for p in (root / "garbled").iterdir()}
    assert built == committed


def test_every_garbling_kind_is_covered() -> None:
    kinds = {p.stem.split("-", 1)[1] for p in _cases(CORPORA["extra"][0])}
    for kind in ("mac-read-as-pc-utf8", "pc-read-as-mac-utf8", "mojibake2-utf8",
                 "mojibake-latin1", "mojibake-macroman", "cp850-crlf", "iso8859-15-lf",
                 "utf8-bom-crlf", "mixed-cp1252-utf8", "mixed-macroman-utf8",
                 "utf8-mojibake-paragraph"):
        assert kind in kinds
