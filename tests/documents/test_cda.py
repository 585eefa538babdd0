from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.documents import cda, hprim
from gateway.documents.cdaconst import LOCAL_LAB_CODES, LOCAL_UNITS, XSI_TYPE, H
from gateway.documents.codes import load_tables
from gateway.documents.hprim import HprimDocument, ResLine
from gateway.errors import DocumentError, TranslationError, UnsafeDocumentError
from tests.documents.conftest import WHEN, corpus_files

TABLES = load_tables()
LAB = TABLES.labs.lookup("BIOLAB")
NS = {"h": H[1:-1]}
RESULTS = "//h:entry/h:act/h:entryRelationship/h:observation"  # not the PDF copy's


def build(doc: HprimDocument) -> cda.CdaResult:
    return cda.build_crbio(doc, tables=TABLES, document_id="1.2.250.9.1", effective_time=WHEN,
                           lab=TABLES.labs.lookup(doc.header.sender_code) or LAB,
                           pdf_copy=b"%PDF-1.4 test")


def corpus_docs() -> list[tuple[str, HprimDocument]]:
    out = []
    for p in corpus_files():
        for k, d in enumerate(hprim.parse(p.read_bytes().decode("utf-8")).documents):
            if d.results:
                out.append((f"{p.name}#{k}", d))
    return out


@pytest.mark.parametrize(("name", "doc"), corpus_docs(), ids=[n for n, _ in corpus_docs()])
def test_corpus_round_trip_and_schema(
    name: str, doc: HprimDocument, schema: etree.XMLSchema
) -> None:
    xml = build(doc).xml
    assert schema.validate(etree.fromstring(xml)), schema.error_log
    back = cda.read_cda(xml)
    assert back.findings == []
    assert back.document.lab == doc.lab  # every RES field, TEX lines and their order
    assert back.document.free_text == doc.free_text
    h, g = back.document.header, doc.header
    for attr in (
        "patient_code",
        "last_name",
        "first_name",
        "address1",
        "address2",
        "postcode_city",
        "lab_ref",
        "exam_date",
        "sender_code",
        "sender_name",
        "recipient_code",
        "recipient_name",
    ):
        assert getattr(h, attr) == getattr(g, attr), attr
    assert h.birth == g.birth
    assert h.nir == ""  # line 8 is never carried: not an identity the gateway can assert


def test_crbio_identifiers(schema: etree.XMLSchema) -> None:
    _, doc = corpus_docs()[0]
    root = etree.fromstring(build(doc).xml)
    templates = root.xpath("h:templateId/@root", namespaces=NS)
    assert templates == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.3.3",
        "1.2.250.1.213.1.1.1.55",
    ]
    assert root.xpath("h:code/@code", namespaces=NS) == ["11502-2"]
    assert root.xpath("h:realmCode/@code", namespaces=NS) == ["FR"]
    assert root.xpath("h:confidentialityCode/@code", namespaces=NS) == ["N"]
    obs = root.xpath(RESULTS, namespaces=NS)
    assert obs and all(
        o.xpath("h:templateId/@root", namespaces=NS)
        == ["1.3.6.1.4.1.19376.1.3.1.6", "1.2.250.1.213.1.1.3.80"]
        for o in obs
    )
    assert root.xpath("//h:entry/@typeCode", namespaces=NS) == ["DRIV"]


def test_glycemie_is_structured_in_loinc_and_ucum() -> None:
    (doc,) = [d for n, d in corpus_docs() if "glycemie" in n][:1]
    root = etree.fromstring(build(doc).xml)
    # RES|GLYCEMIE à jeun|glyc33|N|0.91|g/l|0.74|1.06|N|F|5.05|mmol/l|4.11|5.88: the second
    # unit is a second observation, each with its one range (the agency's two-unit example)
    (o, o2) = root.xpath(RESULTS, namespaces=NS)
    assert o.find(H + "code").get("code") == "1558-6"
    value = o.find(H + "value")
    assert (value.get(XSI_TYPE), value.get("value"), value.get("unit")) == ("PQ", "0.91", "g/L")
    assert o.find(f"{H}value/{H}translation").get("code") == "g/l"
    assert o.find(H + "interpretationCode").get("code") == "N"
    assert o.find(H + "statusCode").get("code") == "completed"
    ranges = o.xpath("h:referenceRange/h:observationRange/h:value/*/@value", namespaces=NS)
    assert ranges == ["0.74", "1.06"]
    assert o2.find(H + "code").get("code") == "14749-6"
    value2 = o2.find(H + "value")
    assert (value2.get("value"), value2.get("unit")) == ("5.05", "mmol/L")
    ranges2 = o2.xpath("h:referenceRange/h:observationRange/h:value/*/@value", namespaces=NS)
    assert ranges2 == ["4.11", "5.88"]


def test_unmapped_code_and_unit_are_findings_and_stay_readable() -> None:
    doc = HprimDocument(
        hprim.HprimHeader(patient_code="X"),
        "",
        [ResLine("Dosage", "XYZ42", "N", "17.3", "U/zz", "10", "20", "N", "F")],
    )
    result = build(doc)
    assert {f.code for f in result.findings} == {
        "code-unmapped",
        "unit-unmapped",
        "birth-date",
        "exam-date",
    }
    root = etree.fromstring(result.xml)
    (o,) = root.xpath(RESULTS, namespaces=NS)
    assert o.find(H + "code").get("nullFlavor") == "OTH"
    assert o.find(H + "value").get("nullFlavor") == "OTH"  # no false UCUM unit
    assert "17.3" in "".join(root.xpath("//h:tr[@ID='res1']//text()", namespaces=NS))
    assert cda.read_crbio(result.xml).lab == doc.lab


def test_foreign_crbio_is_read_from_structured_entries() -> None:
    _, doc = corpus_docs()[0]
    root = etree.fromstring(build(doc).xml)
    for table in root.iter(H + "table"):
        table.getparent().remove(table)  # another producer's narrative: not our layout
    # the second unit is an observation of its own (the agency's "deux unités" example): read
    # from the entries, it is a result line of its own too, with its own range
    res, second = cda.read_crbio(etree.tostring(root)).results
    assert (second.code, second.value, second.unit, second.low, second.high) == (
        "glyc33", "5.05", "mmol/l", "4.11", "5.88")
    assert (res.code, res.kind, res.value, res.unit, res.low, res.high, res.flag, res.status) == (
        "glyc33",
        "N",
        "0.91",
        "g/l",
        "0.74",
        "1.06",
        "N",
        "F",
    )


def test_tampered_structured_value_is_a_finding() -> None:
    _, doc = corpus_docs()[0]
    xml = build(doc).xml.replace(b'value="0.91" unit="g/L"', b'value="9.1" unit="g/L"')
    assert [f.code for f in cda.read_cda(xml).findings] == ["narrative-mismatch"]


def test_no_results_refuses_level_3() -> None:
    with pytest.raises(TranslationError):
        build(HprimDocument(hprim.HprimHeader(), "texte", None))


def test_level1_carries_the_pdf(schema: etree.XMLSchema) -> None:
    _, doc = corpus_docs()[0]
    pdf = b"%PDF-1.4 fake"
    xml = cda.build_level1(doc, pdf, tables=TABLES, document_id="1.2.250.9.2",
                           effective_time=WHEN, lab=LAB).xml
    assert schema.validate(etree.fromstring(xml)), schema.error_log
    content = cda.read_cda(xml)
    assert content.pdf == pdf and content.level == 1
    assert content.document.header.last_name == doc.header.last_name
    with pytest.raises(DocumentError):
        cda.read_crbio(xml)


def test_entities_and_doctype_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">&a;</ClinicalDocument>'
    )
    with pytest.raises(UnsafeDocumentError):
        cda.read_cda(bomb)
    with pytest.raises(DocumentError):
        cda.read_cda(b"<ClinicalDocument")


# --- property: any RES line the labs could write survives HPRIM -> CDA -> HPRIM -------------

codes = st.sampled_from([*sorted(TABLES.lab_codes)[:20], "LOCAL9", "", "x y"])
units = st.sampled_from(
    ["g/l", "mmol/l", "G/L", "%", "", "U/zz", "mL/min/1,73m²", "µmol/l", "10 3/µl"]
)
numbers = st.one_of(
    st.decimals(min_value=-1000, max_value=100000, places=3, allow_nan=False).map(str),
    st.sampled_from(["0", ".5", "+1.2", "12.", "", "< 0.5", "1,2"]),
)
text = st.text(
    st.characters(blacklist_characters="|\r\n", blacklist_categories=("Cs", "Cc")), max_size=15
)


@st.composite
def res_lines(draw: st.DrawFn) -> ResLine:
    kind = draw(st.sampled_from(["N", "A", "C", ""]))
    value = draw(numbers) if kind == "N" else draw(text)
    return ResLine(
        draw(text),
        draw(codes),
        kind,
        value,
        draw(units),
        draw(numbers),
        draw(numbers),
        draw(st.sampled_from(["", "N", "L", "H", "LL", "HH"])),
        draw(st.sampled_from(["F", "R", "C", ""])),
        draw(st.one_of(st.just(""), numbers)),
        draw(units),
        draw(numbers),
        draw(numbers),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(res_lines(), min_size=1, max_size=5))
def test_property_res_lines_round_trip(lines: list[ResLine]) -> None:
    doc = HprimDocument(
        hprim.HprimHeader(patient_code="P", exam_date="03/04/2024"), "", list(lines)
    )
    result = build(doc)
    back = cda.read_cda(result.xml)
    assert back.findings == []
    assert back.document.lab == lines
    # and the structured side says the same as the line, in LOINC/UCUM terms
    # (an unvalidated result stays in the narrative; a second unit is an observation of its own)
    root = etree.fromstring(result.xml)
    expected = [r for r in lines if r.status != "R"]
    firsts = root.xpath(f"{RESULTS}[not(contains(h:text/h:reference/@value, '-f11'))]",
                        namespaces=NS)
    seconds = root.xpath(f"{RESULTS}[contains(h:text/h:reference/@value, '-f11')]",
                         namespaces=NS)
    assert len(seconds) == len([r for r in expected if r.kind == "N" and r.value2.strip()])
    for res, o in zip(expected, firsts, strict=True):
        local = o.find(f"{H}code/{H}translation")
        code = res.code.strip()
        if not code or " " in code:
            assert local is None  # no code to carry: the narrative keeps it
        else:
            entry = TABLES.lab(code)
            label = res.label.strip() or (entry.label if entry else "") or code
            assert local.get("codeSystem") == LOCAL_LAB_CODES
            assert (local.get("code"), local.get("displayName")) == (code, label)
        value = o.find(H + "value")
        assert value.get(XSI_TYPE) == {"N": "PQ", "C": "CD"}.get(res.kind, "ST")
        if value.get("value") is not None:
            assert float(value.get("value")) == float(res.value)
            assert value.get("unit") == (
                TABLES.ucum(res.unit) if res.unit.strip() else TABLES.lab(res.code).default_ucum
            )
            assert value.find(H + "translation").get("codeSystem") == LOCAL_UNITS
        flag = o.find(H + "interpretationCode")
        assert (flag.get("code") if flag is not None else "") == (
            res.flag if res.flag in {"N", "L", "H", "LL", "HH"} else ""
        )


@pytest.mark.parametrize(("line2", "used", "birth"), [
    ("MARTIN", "MARTIN", ""),  # a name whose kind the report does not state: no qualifier
    ("MARTIN (NJF)", "", "MARTIN"),
    ("DUPONT (NJF MARTIN)", "DUPONT", "MARTIN"),
    ("DUPONT (njf: MARTIN)", "DUPONT", "MARTIN"),
    ("DUPONT NJF MARTIN", "DUPONT", "MARTIN"),
    ("DUPONT née MARTIN", "DUPONT", "MARTIN"),
    ("DUPONT NEE LE GALL", "DUPONT", "LE GALL"),
    ("RENEE", "RENEE", ""),
    ("DUPONT NEEL", "DUPONT NEEL", ""),
    ("DE LA NJFORD", "DE LA NJFORD", ""),
    ("DUPONT NÉE", "DUPONT NÉE", ""),
])
def test_birth_name_only_when_the_report_says_so(line2: str, used: str, birth: str) -> None:
    assert cda.patient_names(line2) == (used, birth)
    header = hprim.HprimHeader(patient_code="P", last_name=line2, nir="1620775123456 45")
    doc = HprimDocument(header, "", [ResLine("Glycémie", "GLY", "N", "1", "g/l", "", "", "", "F")])
    root = etree.fromstring(build(doc).xml)
    families = [(f.get("qualifier"), f.text)
                for f in root.xpath("//h:patient/h:name/h:family", namespaces=NS)]
    assert families == [x for x in ((None, used), ("BR", birth)) if x[1]]
    # the NIR is not an INS, and its first digit is not the patient's sex
    assert b"1620775123456" not in build(doc).xml
    assert root.xpath("//h:patient/h:administrativeGenderCode/@nullFlavor", namespaces=NS) == [
        "UNK"]
