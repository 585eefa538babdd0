from __future__ import annotations

import importlib.util
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from gateway.documents import hprim
from gateway.documents.hprim import ResLine
from tests.documents.conftest import ROOT, corpus_files

SAMPLE = (
    "P1\r\nDUPONT\r\nJean\r\n \r\n \r\n75012 PARIS\r\n01/02/1950\r\n1500275123456 12\r\n"
    "L1\r\n03/04/2024\r\nLABO01     Labo\r\nDRX        drx\r\n\r\nTexte libre\r\n"
    "****LAB****\r\nTEX|titre\r\nRES|LEUCOCYTES|gb|N|2920|/mm3|4000|10000|L|F\r\n"
    "****FIN****\r\n****FINFICHIER****\r\n"
)


def test_corpus_has_every_variant() -> None:
    names = [p.name for p in corpus_files()]
    assert len(names) >= 20
    for part in ("-cr-", "-lf-", "-crlf-", "-13", "-12", "several-documents"):
        assert any(part in n for n in names), part


def test_corpus_is_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("mk", ROOT / "tools" / "make_hprim_corpus.py")
    assert spec and spec.loader
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    written = mk.corpus()
    assert {p.name: p.read_bytes() for p in corpus_files()} == written


def test_parse_sample_fields() -> None:
    f = hprim.parse(SAMPLE)
    assert f.findings == [] and f.ended
    (doc,) = f.documents
    h = doc.header
    assert (h.patient_code, h.last_name, h.sender_code, h.sender_name) == (
        "P1",
        "DUPONT",
        "LABO01",
        "Labo",
    )
    assert (h.recipient_code, h.postcode, h.city) == ("DRX", "75012", "PARIS")
    assert h.birth == date(1950, 2, 1) and h.exam == date(2024, 4, 3) and h.blank_line_13
    assert doc.free_text == "Texte libre"
    assert doc.lab == [
        hprim.TexLine("titre"),
        ResLine("LEUCOCYTES", "gb", "N", "2920", "/mm3", "4000", "10000", "L", "F"),
    ]


def test_writer_output_is_byte_exact_for_canonical_input() -> None:
    assert hprim.write(hprim.parse(SAMPLE)) == SAMPLE


def test_line_ends_do_not_matter() -> None:
    base = hprim.parse(SAMPLE).documents
    assert hprim.parse(SAMPLE.replace("\r\n", "\r")).documents == base
    assert hprim.parse(SAMPLE.replace("\r\n", "\n")).documents == base


def test_short_res_line_is_padded_and_real_lines_parse() -> None:
    f = hprim.parse(
        SAMPLE.replace(
            "RES|LEUCOCYTES|gb|N|2920|/mm3|4000|10000|L|F",
            "RES|CRP|CRPS33|A|    < 0.12  mg/l |||||F",
        )
    )
    res = f.documents[0].results[0]
    assert res.value == "    < 0.12  mg/l " and res.status == "F" and res.high2 == ""
    assert f.findings == []


def test_findings_name_line_and_field_not_content() -> None:
    bad = SAMPLE.replace("|N|2920|/mm3|4000|10000|L|F", "|Q|29x0|/mm3|4000|10000|Z|W")
    bad = bad.replace("01/02/1950", "01/02/50")
    f = hprim.parse(bad)
    codes = {(x.code, x.line) for x in f.findings}
    assert ("birth-date", 7) in codes
    assert {("res-type", 17), ("res-flag", 17), ("res-status", 17)} <= codes
    assert f.documents[0].header.birth is None  # two-digit year: no guess
    assert all("DUPONT" not in x.message and "50" not in x.message for x in f.findings)


def test_missing_fin_and_trailing_garbage_are_reported() -> None:
    text = SAMPLE.replace("****FIN****\r\n", "") + "junk\r\n"
    codes = [x.code for x in hprim.parse(text).findings]
    assert "no-fin" in codes and "after-end" in codes


def test_garbage_never_raises() -> None:
    f = hprim.parse("hello\x00\r\nworld")
    assert f.findings and not hprim.looks_like_hprim("hello world")


def test_looks_like_hprim_on_corpus() -> None:
    for p in corpus_files():
        assert hprim.looks_like_hprim(p.read_bytes().decode("utf-8")), p.name


def test_several_documents() -> None:
    (p,) = [p for p in corpus_files() if "several" in p.name]
    f = hprim.parse(p.read_bytes().decode())
    assert len(f.documents) == 3
    assert hprim.parse(hprim.write(f)).documents == f.documents


# any text a field can hold: not the separators, not what the reader leaves out (controls)
LEFT_OUT = "".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32)])) + "\ufffe\uffff"
field_text = st.text(
    st.characters(blacklist_characters="|\r\n" + LEFT_OUT, blacklist_categories=("Cs",)),
    max_size=12,
)


@given(st.lists(field_text, min_size=13, max_size=13))
def test_any_res_line_round_trips_through_the_writer(fields: list[str]) -> None:
    res = ResLine(*fields)
    doc = hprim.parse(SAMPLE).documents[0]
    again = hprim.parse(hprim.write(hprim.HprimDocument(doc.header, doc.free_text, [res])))
    assert again.documents[0].lab == [res]


def test_control_characters_are_left_out_and_reported() -> None:
    """Old lab systems write form feeds (page breaks), Ctrl-Z and NULs into their files; a
    CDA (XML) and a PDF cannot hold them, and lxml refused the whole document. They are left
    out, counted in a finding, and the documents are built."""
    from datetime import UTC, datetime

    from gateway.documents import cda, pdf
    from gateway.documents.codes import load_tables

    noisy = (SAMPLE.replace("Texte libre", "Texte\x0c libre\x00")
             .replace("LEUCOCYTES", "LEUCO\x1aCYTES"))
    f = hprim.parse(noisy)
    assert [x.code for x in f.findings] == ["control-characters"]
    assert "3 control character(s)" in str(f.findings[0])
    (doc,) = f.documents
    assert doc.free_text == "Texte libre"
    assert doc.lab[1].label == "LEUCOCYTES"  # type: ignore[union-attr]
    when = datetime(2026, 11, 30, tzinfo=UTC)
    tables = load_tables()
    lab = tables.labs.lookup("BIOLAB")
    built = cda.build_crbio(doc, tables=tables, document_id="1.2.250.9.1",
                            effective_time=when, lab=lab)
    assert b"LEUCOCYTES" in built.xml
    rendition = pdf.render(doc)
    assert rendition.startswith(b"%PDF")
    cda.build_level1(doc, rendition, tables=tables, document_id="1.2.250.9.2",
                     effective_time=when, lab=lab)


def _looks_like_hprim_scanning_every_line(text: str) -> bool:
    lines = [x.strip() for x in hprim._LINE_END.split(text)]
    for i, line in enumerate(lines):
        if line in (hprim.FIN, hprim.FINFICHIER, hprim.LAB):
            return i >= 10
    return False


@given(st.lists(st.sampled_from([hprim.FIN, hprim.FINFICHIER, hprim.LAB, "***FIN***", " ",
                                 "****", "Dr X", ""]) | st.text(max_size=12), max_size=14),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_looks_like_hprim_as_a_scan_of_every_line(lines: list[str], end: str) -> None:
    text = end.join(lines)
    assert hprim.looks_like_hprim(text) == _looks_like_hprim_scanning_every_line(text)
