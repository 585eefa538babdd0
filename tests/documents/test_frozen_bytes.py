"""The CDA and XDM speed-ups never change a byte: `cda.build_crbio`, `cda.build_level1` and
`xdm.pack` give exactly what the frozen reference (tests/documents/reference, the implementation
of commit b6d87a1) gives — the CDA bytes, the findings, the zip bytes — for the same inputs and
time, on every HPRIM fixture (built the way legacy_to_trust._documents builds them), on the
optional author/organisation/version variants, and on generated documents.  An input the
reference refuses is refused by the same exception type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.documents import cda, ebrim, hprim, narrative, pdf, xdm
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


def _message(
    cda_mod: Any, xdm_mod: Any, docs: list[HprimDocument], renditions: list[bytes],
    now: datetime, key: str,
) -> tuple[list[bytes], list[Any], bytes]:
    """What legacy_to_trust._documents does with one message's documents."""
    xmls: list[bytes] = []
    findings: list[Any] = []
    for n, (doc, rendition) in enumerate(zip(docs, renditions, strict=True), start=1):
        doc_id = f"{key}.{n}"
        if doc.results:
            built = cda_mod.build_crbio(doc, tables=TABLES, document_id=doc_id, effective_time=now)
            findings.extend(built.findings)
            xmls.append(built.xml)
        else:
            xmls.append(cda_mod.build_level1(doc, rendition, document_id=doc_id,
                                             effective_time=now))
    package = xdm_mod.pack(
        [xdm_mod.XdmDocument(x) for x in xmls],
        submission_time=now,
        sender=xdm_mod.XdmSender(name="Laboratoire d'Analyses Évry", address="labo@evry.test"),
    )
    return xmls, findings, package


@pytest.mark.parametrize("path", corpus_files(), ids=[p.name for p in corpus_files()])
def test_fixture_messages_are_byte_identical(path: Any) -> None:
    docs = hprim.parse(path.read_bytes().decode("utf-8")).documents
    renditions = [pdf.render(d) for d in docs]
    for now in (WHEN, datetime(2023, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=2)))):
        want = _message(ref_cda, ref_xdm, docs, renditions, now, "2.25.1234")
        got = _message(cda, xdm, docs, renditions, now, "2.25.1234")
        assert got[0] == want[0]  # every CDA
        assert got[1] == want[1]  # findings
        assert got[2] == want[2]  # the zip


def _docs_with_results() -> list[HprimDocument]:
    out: list[HprimDocument] = []
    for p in corpus_files():
        out.extend(d for d in hprim.parse(p.read_bytes().decode("utf-8")).documents if d.results)
    return out


@pytest.mark.parametrize(
    "who",
    [
        {},
        {"author": ("10001234567", "Martin", "Claire")},
        {"author": ("10001234567", "", "")},
        {"organisation": ("3123456789", "Labo Central")},
        {"organisation": ("3123456789", "")},
        {"author": ("10001234567", "Dupont", ""), "organisation": ("3123456789", "Labo")},
    ],
)
def test_author_organisation_and_version_variants(who: dict[str, Any]) -> None:
    docs = _docs_with_results()[:6]

    def kw(mod: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"document_id": "1.2.250.9.7", "effective_time": WHEN}
        if "author" in who:
            out["author"] = mod.Author(*who["author"])
        if "organisation" in who:
            out["organisation"] = mod.Organisation(*who["organisation"])
        return out

    for doc in docs:
        assert _crbio(cda, doc, **kw(cda)) == _crbio(ref_cda, doc, **kw(ref_cda))
        assert _crbio(cda, doc, set_id="1.2.3", version=3, **kw(cda)) == _crbio(
            ref_cda, doc, set_id="1.2.3", version=3, **kw(ref_cda)
        )
        fake = b"%PDF-1.4 not really"
        got = _outcome(partial(cda.build_level1, doc, fake, title="Titre", **kw(cda)))
        want = _outcome(partial(ref_cda.build_level1, doc, fake, title="Titre", **kw(ref_cda)))
        assert got == want
    xmls = [cda.build_crbio(d, tables=TABLES, **kw(cda)).xml for d in docs]
    assert xdm.pack([xdm.XdmDocument(x) for x in xmls], submission_time=WHEN,
                    sender=xdm.XdmSender(name="S")) == ref_xdm.pack(
        [ref_xdm.XdmDocument(x) for x in xmls], submission_time=WHEN,
        sender=ref_xdm.XdmSender(name="S"))


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


@settings(max_examples=200, deadline=None)
@given(
    _headers(), st.one_of(st.just(""), _text, st.sampled_from(["a\nb", "\n", "l1\n\nl3\n"])),
    _lab, st.sampled_from([WHEN, datetime(2024, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5)))]),
    st.sampled_from(["", "", "", "", "", "\x00", "\x0b", "\ufffe"]),
    st.sampled_from(["last_name", "free", "label", "tex", "unit"]),
)
def test_generated_documents_are_byte_identical(
    header: HprimHeader, free: str, lab: list[LabLine], now: datetime, bad: str, where: str
) -> None:
    if bad and where == "last_name":
        header = dataclasses.replace(header, last_name=header.last_name + bad)
    elif bad and where == "free":
        free += bad
    elif bad:
        lab = [
            TexLine(x.text + bad) if isinstance(x, TexLine) and where == "tex"
            else dataclasses.replace(x, **{where: getattr(x, where) + bad})
            if isinstance(x, ResLine) and where != "tex" else x
            for x in lab
        ]
    doc = HprimDocument(header, free, lab)
    got = _crbio(cda, doc, document_id="1.2.250.9.1", effective_time=now)
    want = _crbio(ref_cda, doc, document_id="1.2.250.9.1", effective_time=now)
    assert got == want
    if got[0] == "ok":
        docs = [got[1][0], got[1][0].replace(b"1.2.250.9.1", b"1.2.250.9.2")]
        assert xdm.pack([xdm.XdmDocument(x) for x in docs], submission_time=now,
                        sender=xdm.XdmSender(name=header.sender_name or "S")) == ref_xdm.pack(
            [ref_xdm.XdmDocument(x) for x in docs], submission_time=now,
            sender=ref_xdm.XdmSender(name=header.sender_name or "S"))


def test_the_reference_is_not_the_module() -> None:
    # the oracle must stay a copy: comparing the module with itself would prove nothing
    pairs = ((ref_cda, cda), (ref_xdm, xdm), (ref_ebrim, ebrim), (ref_narrative, narrative))
    for ref, mod in pairs:
        assert ref.__name__.startswith("tests.documents.reference.")
        assert mod.__name__.startswith("gateway.documents.")
    assert ref_xdm.ebrim is ref_ebrim and ref_cda.narrative is ref_narrative  # type: ignore[attr-defined]
    assert WHEN.tzinfo is UTC
