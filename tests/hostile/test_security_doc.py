"""docs/security.md's hostile catalogue names every test of tests/hostile, and only those."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

HOSTILE = ROOT / "tests" / "hostile"


def _tests() -> set[str]:
    found = set()
    for path in sorted(HOSTILE.glob("test_*.py")):
        if path.name == "test_security_doc.py":
            continue
        for node in ast.parse(path.read_text("utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"{path.name}::{node.name}")
    return found


def test_catalogue_names_every_hostile_test() -> None:
    doc = (ROOT / "docs" / "security.md").read_text("utf-8")
    catalogue = doc.split("## The hostile catalogue", 1)[1]
    named = set(re.findall(r"`(test_\w+\.py::test_\w+)`", catalogue))
    assert _tests() - named == set(), "tests missing from docs/security.md"
    assert named - _tests() == set(), "docs/security.md names tests that do not exist"
