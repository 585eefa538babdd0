"""Every CDA passerelle emits passes the agency's own validator: the CDA schema and the CR-BIO
2024.01 schematron (fixtures/ans/), 0 failed assertions — for every document of every HPRIM
fixture, level 3 and level 1, as the pipeline packs them and as `passerelle hprim to-cda`
prints them.  And the validator is not a rubber stamp: broken documents fail it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.cli import main
from gateway.directory.addresses import LegacyUser
from gateway.documents import ebrim, hprim, xdm
from gateway.documents.codes import load_tables
from gateway.translate.legacy_to_trust import _documents
from tests.documents.conftest import corpus_files
from tests.documents.crbio import ANS, Validator

NOW = datetime(2024, 4, 4, 9, 15, tzinfo=UTC)
TABLES = load_tables()
LAB = LegacyUser("labo.BIOLAB@medical69.legacy.example", "labo.biolab@legacy.mssante.example",
                 "Laboratoire Biolab", "", "A" * 40, "cp850", "BIOLAB")
FILES = corpus_files()


def _assert_conformant(crbio: Validator, xml: bytes, what: str) -> None:
    verdict = crbio.check(xml)
    assert verdict.ok, f"{what}:\n{verdict}"


def test_the_validator_passes_the_agencys_two_unit_example(crbio: Validator) -> None:
    example = next((ANS / "ExemplesCDA").glob("*deux unit*"))
    _assert_conformant(crbio, example.read_bytes(), example.name)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_pipeline_documents_conform(crbio: Validator, path: Path) -> None:
    package, _pdfs, _first, details = _documents(
        path.read_text("utf-8"), tables=TABLES, now=NOW, sender=LAB,
        message_id=f"<{path.stem}@lab.example>")
    assert package is not None
    docs = xdm.unpack(package).documents
    assert len(docs) == len(hprim.parse(path.read_text("utf-8")).documents)
    for entry in docs:
        _assert_conformant(crbio, entry.xml, f"{path.name} {entry.path}")
    assert set(details["levels"]) <= {1, 3}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_cli_documents_conform(crbio: Validator, path: Path,
                               capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    for n in range(1, len(hprim.parse(path.read_text("utf-8")).documents) + 1):
        assert main(["hprim", "to-cda", str(path), "--document", str(n),
                     "--time", "2024-04-04T11:15:00+02:00"]) == 0
        _assert_conformant(crbio, capsysbinary.readouterr().out, f"{path.name} #{n}")


def test_both_levels_are_covered() -> None:
    docs = [d for p in FILES for d in hprim.parse(p.read_text("utf-8")).documents]
    assert any(d.results for d in docs) and any(not d.results for d in docs)


def _valid() -> bytes:
    path = next(p for p in FILES if "01-glycemie" in p.name)
    package, *_ = _documents(path.read_text("utf-8"), tables=TABLES, now=NOW, sender=LAB,
                             message_id="<x@lab.example>")
    assert package is not None
    return xdm.unpack(package).documents[0].xml


def _edit(xml: bytes, xpath: str, change: str) -> bytes:
    root = etree.fromstring(xml)
    ns = {"h": "urn:hl7-org:v3"}
    for node in root.xpath(xpath, namespaces=ns):
        if change == "drop":
            node.getparent().remove(node)
        else:
            name, value = change.split("=", 1)
            node.set(name, value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize(("xpath", "change", "expect"), [
    # the PDF copy section is required
    ("//h:section[h:templateId/@root='1.2.250.1.213.1.1.2.243']/..", "drop",
     "FR-Document-PDF-copie"),
    # serviceEvent must be coded
    ("h:documentationOf/h:serviceEvent/h:code", "drop", "documentationOf/serviceEvent/code"),
    # a result may be completed, active or aborted, nothing else
    ("//h:entry/h:act/h:statusCode", "code=held", "statusCode"),
    # a hex digest is not an OID (schema)
    ("h:id", "root=9f86d081884c7d659a2feaa0c55ad015", "schema"),
])
def test_a_broken_cda_fails(crbio: Validator, xpath: str, change: str, expect: str) -> None:
    good = _valid()
    assert crbio.check(good).ok
    verdict = crbio.check(_edit(good, xpath, change))
    assert not verdict.ok
    assert expect in str(verdict)


def test_a_second_reference_range_fails(crbio: Validator) -> None:
    """What the gateway once did with a second unit: the profile allows one range."""
    good = _valid()
    root = etree.fromstring(good)
    obs = root.xpath("//h:observation[h:referenceRange]", namespaces={"h": "urn:hl7-org:v3"})[0]
    rng = obs.find("{urn:hl7-org:v3}referenceRange")
    rng.addnext(etree.fromstring(etree.tostring(rng)))
    verdict = crbio.check(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    assert not verdict.ok and "intervalle de référence" in str(verdict)


def _jdv(name: str) -> set[tuple[str, str]]:
    """(code, code system) of one of the agency's value sets in fixtures/ans/jeuxDeValeurs/."""
    path = next((ANS / "jeuxDeValeurs").glob(f"JDV_{name}_*.xml"))
    root = etree.parse(str(path)).getroot()
    return {(c.get("code") or "", c.get("codeSystem") or "")
            for c in root.iter("{urn:ihe:iti:svs:2008}Concept")}


def test_xdm_metadata_codes_are_in_the_french_value_sets() -> None:
    path = next(p for p in FILES if "28-several" in p.name)
    package, *_ = _documents(path.read_text("utf-8"), tables=TABLES, now=NOW, sender=LAB,
                             message_id="<m@lab.example>")
    assert package is not None
    meta = etree.fromstring(xdm.unpack(package).metadata)
    rim = "{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}"

    def coded(scheme: str) -> list[tuple[str, str]]:
        out = []
        for c in meta.iter(rim + "Classification"):
            if c.get("classificationScheme") == scheme:
                system = c.find(f"{rim}Slot[@name='codingScheme']/{rim}ValueList/{rim}Value")
                out.append((c.get("nodeRepresentation") or "", system.text or ""))
        return out

    facility, practice, types = coded(ebrim.DE_FACILITY), coded(ebrim.DE_PRACTICE), coded(
        ebrim.DE_TYPE)
    assert facility and set(facility) <= _jdv("J02")
    assert practice and set(practice) <= _jdv("J04")
    assert types and set(types) <= _jdv("J07")
    assert set(coded(ebrim.DE_CLASS)) == {("10", "1.2.250.1.213.1.1.4.1")}  # J06 Compte rendu
    values = [v.text or "" for v in meta.iter(rim + "Value")]
    specialties = {tuple(v.split("^")[0::2]) for v in values if v.startswith("G15_")}
    assert specialties and specialties <= _jdv("J01")
    lab = TABLES.labs.for_sender(LAB.legacy_address)
    assert f"{lab.name}^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1{lab.finess}" in values
    assert any(v.startswith(f"8{lab.biologist_rpps}^{lab.biologist_family}^") for v in values)
