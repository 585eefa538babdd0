from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "hprim"
WHEN = datetime(2024, 4, 3, 10, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(ROOT / "fixtures" / "ans" / "infrastructure" / "cda"
                                           / "CDA_extended.xsd")))


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.hpr"))
