"""The facts a CDA builder carries (`CdaResult.facts`) are what `xdm.pack` would read from the
XML it wrote (`xdm._read_facts`), so a package packed with them is the package packed without:
on every HPRIM fixture, with author/organisation variants, and on generated documents.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.documents import cda, hprim, xdm
from gateway.documents.codes import load_tables
from gateway.documents.model import HprimDocument, HprimHeader, LabLine
from tests.documents.conftest import WHEN, corpus_files
from tests.documents.strategies import headers as _headers
from tests.documents.strategies import lab_lines as _lab
from tests.documents.strategies import text as _text

TABLES = load_tables()
TIMES = (WHEN, datetime(2023, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=2))))
_BIOLAB = TABLES.labs.lookup("BIOLAB")
assert _BIOLAB is not None
LABS = [
    _BIOLAB,
    replace(_BIOLAB, biologist_given="", telecom="", street="", postcode="", city=""),
    replace(_BIOLAB, name="Laboratoire d'Analyses <Évry> & Cie", patient_oid="1.2.3.4.5"),
]
WHO: list[dict[str, Any]] = [{}, *({"lab": lab} for lab in LABS)]


def _carried_and_read(built: cda.CdaResult) -> tuple[cda.CdaFacts | None, cda.CdaFacts]:
    return built.facts, xdm._read_facts(1, built.xml)


def _docs() -> list[HprimDocument]:
    return [d for p in corpus_files() for d in hprim.parse(p.read_bytes().decode()).documents
            if d.results]


@pytest.mark.parametrize("who", WHO)
def test_fixture_facts_are_what_the_xml_says(who: dict[str, Any]) -> None:
    for doc in _docs():
        for now in TIMES:
            built = cda.build_crbio(doc, tables=TABLES, document_id="2.25.77.1",
                                    effective_time=now, **who)
            carried, read = _carried_and_read(built)
            assert carried == read


def _with_results() -> list[Any]:
    """The fixtures with at least one report holding results (a CR-BIO to pack)."""
    return [p for p in corpus_files()
            if any(d.results for d in hprim.parse(p.read_bytes().decode()).documents)]


@pytest.mark.parametrize("path", _with_results(), ids=[p.name for p in _with_results()])
def test_a_package_with_facts_is_the_package_without(path: Any) -> None:
    docs = [d for d in hprim.parse(path.read_bytes().decode()).documents if d.results]
    for now in TIMES:
        built = [cda.build_crbio(d, tables=TABLES, document_id=f"2.25.77.{n}",
                                 effective_time=now) for n, d in enumerate(docs, start=1)]
        sender = xdm.XdmSender(name="Laboratoire d'Analyses Évry", address="labo@evry.test")
        with_facts = xdm.pack([xdm.XdmDocument(b.xml, facts=b.facts) for b in built],
                              submission_time=now, sender=sender)
        without = xdm.pack([xdm.XdmDocument(b.xml) for b in built],
                           submission_time=now, sender=sender)
        assert with_facts == without


_who = st.one_of(
    st.sampled_from(LABS).map(lambda lab: {"lab": lab}),
    st.builds(lambda f, g, name: {"lab": replace(LABS[0], biologist_family=f or "X",
                                                 biologist_given=g, name=name or "L")},
              _text, _text, _text),
)


@settings(max_examples=200, deadline=None)
@given(
    _headers(), st.one_of(st.just(""), _text), _lab, _who,
    st.sampled_from([WHEN, datetime(2024, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
                     datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=timezone(
                         timedelta(hours=5, minutes=45)))]),
    st.sampled_from(["1.2.250.9.1", "2.25.123456789"]),
)
def test_generated_facts_are_what_the_xml_says(
    header: HprimHeader, free: str, lab: list[LabLine], who: dict[str, Any], now: datetime,
    document_id: str,
) -> None:
    doc = HprimDocument(header, free, lab)
    assume(bool(doc.results))
    try:
        built = cda.build_crbio(doc, tables=TABLES,
                                document_id=document_id, effective_time=now, **who)
    except ValueError:
        return  # a string XML cannot carry: refused, nothing to pack
    carried, read = _carried_and_read(built)
    assert carried == read
    assert xdm._entry(1, built.xml, read) == xdm._entry(1, built.xml, carried)


def test_documents_without_facts_are_read() -> None:
    assert xdm.XdmDocument(b"<x/>").facts is None
    assert cda.build_crbio(_docs()[0], tables=TABLES, document_id="1",
                           effective_time=WHEN).facts is not None
    assert WHEN.tzinfo is UTC
