"""Hypothesis strategies for made-up HPRIM documents: headers, RES/TEX lines and text with every
awkward character (markup, non-ASCII; characters XML cannot carry are put in by a test itself).
tests/golden/documents.py draws a seeded sample of the same kind for the golden files."""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

from gateway.documents.codes import load_tables
from gateway.documents.model import HprimHeader, LabLine, ResLine, TexLine

TABLES = load_tables()

codes = st.sampled_from([*sorted(TABLES.lab_codes)[:25], "LOCAL9", "", " x y ", "GLY "])
units = st.sampled_from(["g/l", "mmol/l", "G/L", "%", "", " g/l ", "U/zz", "10 3/µl", "a b"])
numbers = st.one_of(
    st.decimals(min_value=-1000, max_value=100000, places=3, allow_nan=False).map(str),
    st.sampled_from(["0", ".5", "+1.2", "12.", "", "< 0.5", "1,2", " 3 ", "-"]),
)
# markup characters and non-ASCII; characters XML cannot carry are put in by the test itself
# (one in a field would make nearly every generated document a refusal)
text = st.text(
    st.one_of(
        st.sampled_from(list("<>&\"' \t]]>éß€–\u00a0")),
        st.characters(blacklist_categories=("Cs", "Cc")),
    ),
    max_size=12,
)


@st.composite
def res_lines(draw: st.DrawFn) -> ResLine:
    kind = draw(st.sampled_from(["N", "A", "C", "", "X"]))
    return ResLine(
        draw(text), draw(codes), kind, draw(numbers) if kind == "N" else draw(text),
        draw(units), draw(numbers), draw(numbers),
        draw(st.sampled_from(["", "N", "L", "H", "LL", "HH", "Z"])),
        draw(st.sampled_from(["F", "R", "C", "", "Q"])),
        draw(st.one_of(st.just(""), numbers)), draw(units), draw(numbers), draw(numbers),
    )


lab_lines: st.SearchStrategy[list[LabLine]] = st.lists(
    st.one_of(res_lines(), res_lines(), st.builds(TexLine, text)), min_size=1, max_size=6
)
dates = st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 1, 1)))


@st.composite
def headers(draw: st.DrawFn) -> HprimHeader:
    return HprimHeader(
        patient_code=draw(st.sampled_from(["", "P123", "  "])),
        last_name=draw(text), first_name=draw(text),
        address1=draw(text), address2=draw(st.sampled_from(["", "  ", "Bât. B"])),
        postcode_city=draw(st.sampled_from(["", "91000Évry", "75 Paris", "12345"])),
        birth_date="", nir=draw(st.sampled_from(
            ["", "1840775123456 12", "2850599123456 77", "184072A123456 12", "bad nir", " "])),
        lab_ref=draw(st.sampled_from(["", "REF-1"])), exam_date="",
        sender_code=draw(st.sampled_from(["", "LAB1"])), sender_name=draw(text),
        recipient_code=draw(st.sampled_from(["", "DR9"])), recipient_name=draw(text),
        birth=draw(dates), exam=draw(dates),
    )


