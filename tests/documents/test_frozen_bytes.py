"""What is left of the frozen reference (tests/documents/reference, the implementation of
commit b6d87a1): an input the reference refuses is refused by the same exception type, and the
reference stays a copy.

The byte-for-byte comparisons of the CDA and XDM bytes with the reference were dropped when the
documents became CR-BIO 2024.01 conformant (issue 22: lab table, identity without INS, PDF copy
section, one reference range, …): every CDA changed on purpose.  What the documents must be is
now held by the agency's own validator (tests/documents/test_crbio_conformance.py) and by the
facts test (tests/documents/test_xdm_facts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from hypothesis import strategies as st

from gateway.documents import cda, ebrim, hprim, narrative, xdm
from gateway.documents.codes import load_tables
from gateway.documents.model import HprimDocument, HprimHeader, LabLine, ResLine, TexLine
from tests.documents import reference as _reference  # noqa: F401  (the package docstring)
from tests.documents.conftest import WHEN, corpus_files
from tests.documents.reference import cda as ref_cda
from tests.documents.reference import ebrim as ref_ebrim
from tests.documents.reference import narrative as ref_narrative
from tests.documents.reference import xdm as ref_xdm

TABLES = load_tables()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except Exception as exc:  # the type is what is compared
        return ("raised", type(exc).__name__)


def _crbio(mod: Any, doc: HprimDocument, **kw: Any) -> Any:
    def call() -> tuple[bytes, list[Any]]:
        r = mod.build_crbio(doc, tables=TABLES, **kw)
        return r.xml, r.findings

    return _outcome(call)


def _docs_with_results() -> list[HprimDocument]:
    out: list[HprimDocument] = []
    for p in corpus_files():
        out.extend(d for d in hprim.parse(p.read_bytes().decode("utf-8")).documents if d.results)
    return out


def test_refusals_are_the_same() -> None:
    doc = _docs_with_results()[0]
    naive = datetime(2024, 4, 3, 10, 30)
    assert _crbio(cda, doc, document_id="1", effective_time=naive) == _crbio(
        ref_cda, doc, document_id="1", effective_time=naive
    )
    empty = HprimDocument(HprimHeader(), "texte", [TexLine("x")])
    assert _crbio(cda, empty, document_id="1", effective_time=WHEN)[0] == "raised"
    assert _crbio(cda, empty, document_id="1", effective_time=WHEN) == _crbio(
        ref_cda, empty, document_id="1", effective_time=WHEN
    )
    for bad in ([], [b"<x/>"], [b"not xml"]):
        got = _outcome(partial(xdm.pack, [xdm.XdmDocument(b) for b in bad],
                               submission_time=WHEN, sender=xdm.XdmSender(name="S")))
        want = _outcome(partial(ref_xdm.pack, [ref_xdm.XdmDocument(b) for b in bad],
                                submission_time=WHEN, sender=ref_xdm.XdmSender(name="S")))
        assert got == want and got[0] == "raised"


# --- generated documents: headers, RES/TEX lines and text with every awkward character -------

_codes = st.sampled_from([*sorted(TABLES.lab_codes)[:25], "LOCAL9", "", " x y ", "GLY "])
_units = st.sampled_from(["g/l", "mmol/l", "G/L", "%", "", " g/l ", "U/zz", "10 3/µl", "a b"])
_numbers = st.one_of(
    st.decimals(min_value=-1000, max_value=100000, places=3, allow_nan=False).map(str),
    st.sampled_from(["0", ".5", "+1.2", "12.", "", "< 0.5", "1,2", " 3 ", "-"]),
)
# markup characters and non-ASCII; characters XML cannot carry are put in by the test itself
# (one in a field would make nearly every generated document a refusal)
_text = st.text(
    st.one_of(
        st.sampled_from(list("<>&\"' \t]]>éß€–\u00a0")),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    max_size=12,
)


@st.composite
def _res(draw: st.DrawFn) -> ResLine:
    kind = draw(st.sampled_from(["N", "A", "C", "", "X"]))
    return ResLine(
        draw(_text), draw(_codes), kind, draw(_numbers) if kind == "N" else draw(_text),
        draw(_units), draw(_numbers), draw(_numbers),
        draw(st.sampled_from(["", "N", "L", "H", "LL", "HH", "Z"])),
        draw(st.sampled_from(["F", "R", "C", "", "Q"])),
        draw(st.one_of(st.just(""), _numbers)), draw(_units), draw(_numbers), draw(_numbers),
    )


_lab: st.SearchStrategy[list[LabLine]] = st.lists(
    st.one_of(_res(), _res(), st.builds(TexLine, _text)), min_size=1, max_size=6
)
_dates = st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 1, 1)))


@st.composite
def _headers(draw: st.DrawFn) -> HprimHeader:
    return HprimHeader(
        patient_code=draw(st.sampled_from(["", "P123", "  "])),
        last_name=draw(_text), first_name=draw(_text),
        address1=draw(_text), address2=draw(st.sampled_from(["", "  ", "Bât. B"])),
        postcode_city=draw(st.sampled_from(["", "91000Évry", "75 Paris", "12345"])),
        birth_date="", nir=draw(st.sampled_from(
            ["", "1840775123456 12", "2850599123456 77", "184072A123456 12", "bad nir", " "])),
        lab_ref=draw(st.sampled_from(["", "REF-1"])), exam_date="",
        sender_code=draw(st.sampled_from(["", "LAB1"])), sender_name=draw(_text),
        recipient_code=draw(st.sampled_from(["", "DR9"])), recipient_name=draw(_text),
        birth=draw(_dates), exam=draw(_dates),
    )


def test_the_reference_is_not_the_module() -> None:
    # the oracle must stay a copy: comparing the module with itself would prove nothing
    pairs = ((ref_cda, cda), (ref_xdm, xdm), (ref_ebrim, ebrim), (ref_narrative, narrative))
    for ref, mod in pairs:
        assert ref.__name__.startswith("tests.documents.reference.")
        assert mod.__name__.startswith("gateway.documents.")
    assert ref_xdm.ebrim is ref_ebrim and ref_cda.narrative is ref_narrative  # type: ignore[attr-defined]
    assert WHEN.tzinfo is UTC
