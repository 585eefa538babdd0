"""CR-BIOs from other producers, entry by entry: one test per value type and per construct,
on small documents built here in the shapes the CR-BIO 2024.01 templates allow."""

from __future__ import annotations

import base64

import pytest

from gateway.documents import cda, hprim
from gateway.documents.model import ResLine, TexLine
from gateway.errors import DocumentError

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def crbio(entries: str, narrative: str = "", *, extra_sections: str = "") -> bytes:
    """A CR-BIO with one chapter whose DRIV entry holds ``entries``."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <recordTarget><patientRole>
    <id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
    <patient><name><family qualifier="BR">PAT-TROIS</family><given>DOMINIQUE</given></name>
      <birthTime value="19790328"/></patient>
  </patientRole></recordTarget>
  <author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234534765"/>
    <representedOrganization><name>Laboratoire des charmes</name></representedOrganization>
  </assignedAuthor></author>
  <component><structuredBody>
    <component><section>
      <code code="18719-5" codeSystem="2.16.840.1.113883.6.1"/>
      <title>Biochimie</title>
      <text>{narrative}</text>
      <entry typeCode="DRIV"><act classCode="ACT" moodCode="EVN">
        <code code="18719-5" codeSystem="2.16.840.1.113883.6.1"/>
        <statusCode code="completed"/>
        {entries}
      </act></entry>
    </section></component>
    {extra_sections}
  </structuredBody></component>
</ClinicalDocument>""".encode()


def obs(value: str, *, code: str = '<code code="2345-7" codeSystem="2.16.840.1.113883.6.1" '
        'displayName="Glucose"/>', more: str = "") -> str:
    return (f'<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN">'
            f'{code}<statusCode code="completed"/>{value}{more}</observation>'
            "</entryRelationship>")


def results(xml: bytes) -> list[ResLine]:
    return cda.read_cda(xml).document.results


def tex(xml: bytes) -> list[str]:
    return [x.text for x in cda.read_cda(xml).document.lab or [] if isinstance(x, TexLine)]


def test_pq_is_a_number_with_its_unit_range_and_flag() -> None:
    (r,) = results(crbio(obs(
        '<value xsi:type="PQ" value="7.2" unit="mmol/L"/>',
        more='<interpretationCode code="H" codeSystem="2.16.840.1.113883.5.83"/>'
             '<referenceRange><observationRange><value xsi:type="IVL_PQ">'
             '<low value="3.9" unit="mmol/L"/><high value="6.1" unit="mmol/L"/>'
             "</value></observationRange></referenceRange>")))
    assert (r.label, r.code, r.kind, r.value, r.unit, r.low, r.high, r.flag, r.status) == (
        "Glucose", "2345-7", "N", "7.2", "mmol/L", "3.9", "6.1", "H", "F")


@pytest.mark.parametrize(("value", "shown"), [
    ('<low value="0.512" unit="ug/mL" inclusive="true"/>', ">=0.512"),
    ('<low value="0.512" unit="ug/mL" inclusive="false"/>', ">0.512"),
    ('<high value="0.128" unit="ug/mL" inclusive="false"/>', "<0.128"),
    ('<high value="1.0" unit="ug/mL"/>', "<=1.0"),
    ('<low value="2" unit="ug/mL"/><high value="4" unit="ug/mL"/>', "2-4"),
])
def test_ivl_pq_is_one_field_on_one_line(value: str, shown: str) -> None:
    xml = crbio(obs(f'<value xsi:type="IVL_PQ">\n      {value}\n    </value>'))
    (r,) = results(xml)
    assert (r.kind, r.value, r.unit) == ("A", shown, "ug/mL")
    written = hprim.write(cda.read_cda(xml).document)
    (line,) = [x for x in written.split("\r\n") if x.startswith("RES|")]
    assert line.split("|")[4] == shown


def test_cd_display_name() -> None:
    (r,) = results(crbio(obs('<value xsi:type="CD" code="1269497006" '
                             'codeSystem="2.16.840.1.113883.6.96" '
                             'displayName="ADN d\'HPV-HR détecté"/>')))
    assert (r.kind, r.value) == ("A", "ADN d'HPV-HR détecté")


def test_cd_without_display_name_follows_its_reference_into_the_narrative() -> None:
    xml = crbio(obs('<value xsi:type="CD"><originalText><reference value="#r1"/>'
                    "</originalText></value>"),
                '<table><tr><td>Couleur</td><td><content ID="r1">jaune\n  paille</content>'
                "</td></tr></table>")
    (r,) = results(xml)
    assert r.value == "jaune paille"


def test_cd_with_only_a_code_gives_the_code_and_says_its_system() -> None:
    xml = crbio(obs('<value xsi:type="CD" code="B97.7" codeSystem="2.16.840.1.113883.6.3"/>'))
    (r,) = results(xml)
    assert (r.kind, r.value) == ("C", "B97.7")
    assert any("B97.7 (CIM-10)" in t for t in tex(xml))


def test_st_text_and_ed_text() -> None:
    xml = crbio(obs('<value xsi:type="ST">présence de\n  cristaux | oxalate</value>')
                + obs('<value xsi:type="ED" mediaType="text/plain">Lecture à 48 h</value>'))
    st, ed = results(xml)
    assert st.value == "présence de cristaux / oxalate"  # one field: no line break, no |
    assert ed.value == "Lecture à 48 h"
    line = next(x for x in hprim.write(cda.read_cda(xml).document).split("\r\n")
                if x.startswith("RES|Glucose"))
    assert len(line.split("|")) == 10


def test_ed_pdf_value_is_attached_and_said() -> None:
    data = base64.b64encode(PDF).decode()
    content = cda.read_cda(crbio(obs(
        f'<value xsi:type="ED" mediaType="application/pdf" representation="B64">{data}</value>')))
    (r,) = content.document.results
    assert r.value and content.attachments[0].data == PDF


@pytest.mark.parametrize(("vtype", "raw"), [("INT", "12"), ("REAL", "2.0")])
def test_int_and_real_are_numbers(vtype: str, raw: str) -> None:
    (r,) = results(crbio(obs(f'<value xsi:type="{vtype}" value="{raw}"/>')))
    assert (r.kind, r.value) == ("N", raw)


def test_rto_is_a_titre() -> None:
    (r,) = results(crbio(obs('<value xsi:type="RTO"><numerator xsi:type="INT" value="1"/>'
                             '<denominator xsi:type="INT" value="160"/></value>')))
    assert r.value == "1/160"


def test_a_value_type_not_known_is_read_as_its_words_never_empty() -> None:
    content = cda.read_cda(crbio(obs('<value xsi:type="SXPR_TS" value="2024">au-delà</value>')))
    (r,) = content.document.results
    assert r.value == "au-delà"
    assert any(f.code == "value-type" for f in content.findings)


def test_antibiogram_sensitivity_is_the_result_and_the_mic_its_second() -> None:
    xml = crbio(obs('<value xsi:type="IVL_PQ"><low value="0.512" unit="ug/mL"/></value>',
                    code='<code code="20-8" codeSystem="2.16.840.1.113883.6.1" '
                         'displayName="Amoxicilline"/>',
                    more='<interpretationCode code="R" codeSystem="2.16.840.1.113883.5.83"/>'))
    (r,) = results(xml)
    assert (r.kind, r.value, r.flag, r.value2, r.unit2) == ("A", "R", "", ">=0.512", "ug/mL")


def test_isolate_names_its_organism_and_labels_its_results() -> None:
    cluster = ('<entryRelationship typeCode="COMP"><organizer classCode="CLUSTER" moodCode="EVN">'
               '<statusCode code="completed"/><specimen><specimenRole><specimenPlayingEntity>'
               '<code code="112283007" codeSystem="2.16.840.1.113883.6.96" '
               'displayName="Escherichia coli (organism)"><originalText>'
               '<reference value="#iso1"/></originalText></code>'
               "</specimenPlayingEntity></specimenRole></specimen>"
               '<component><organizer classCode="BATTERY" moodCode="EVN">'
               '<code code="18769-0" codeSystem="2.16.840.1.113883.6.1" '
               'displayName="Antibiogramme"/>'
               '<component><observation classCode="OBS" moodCode="EVN">'
               '<code code="18928-2" codeSystem="2.16.840.1.113883.6.1" displayName="Gentamicine"/>'
               '<value xsi:type="IVL_PQ"><high value="0.032" unit="ug/mL" inclusive="false"/>'
               '</value><interpretationCode code="S"/></observation></component>'
               "</organizer></component></organizer></entryRelationship>")
    xml = crbio(cluster, '<content ID="iso1">E. coli</content>')
    germ, genta = results(xml)
    assert (germ.label, germ.value) == ("Germe identifié", "E. coli")
    assert (genta.label, genta.value, genta.value2) == ("Gentamicine [E. coli]", "S", "<0.032")
    assert "Antibiogramme (E. coli)" in tex(xml)


def test_previous_results_and_comments_are_told_in_tex_lines() -> None:
    xml = crbio(obs('<value xsi:type="PQ" value="10.02" unit="mmol/L"/>',
                    more='<entryRelationship typeCode="REFR"><observation classCode="OBS">'
                         '<effectiveTime value="202009120815+0100"/>'
                         '<value xsi:type="PQ" value="8.5" unit="mmol/L"/></observation>'
                         "</entryRelationship>")
                + '<entryRelationship typeCode="SUBJ"><act classCode="ACT" moodCode="EVN">'
                  '<code code="48767-8" codeSystem="2.16.840.1.113883.6.1"/>'
                  '<text><reference value="#c1"/></text></act></entryRelationship>',
                '<paragraph ID="c1">Hémolyse légère</paragraph>')
    content = cda.read_cda(xml)
    assert len(content.document.results) == 1  # the previous result is not a second RES
    lines = tex(xml)
    assert "résultat antérieur du 12/09/2020 : 8.5 mmol/L" in " ".join(lines)
    assert "Commentaire : Hémolyse légère" in lines
    assert content.text_only >= 2
    assert "n'est que dans ce texte" in content.document.free_text


def test_non_hprim_interpretation_and_text_range_are_told() -> None:
    xml = crbio(obs('<value xsi:type="CD" displayName="positif"/>',
                    more='<interpretationCode code="POS" displayName="Positif"/>'
                         "<referenceRange><observationRange><text>négatif</text>"
                         "</observationRange></referenceRange>"))
    (r,) = results(xml)
    assert r.flag == ""  # POS is no HPRIM flag
    joined = " ".join(tex(xml))
    assert "interprétation : Positif" in joined and "valeurs de référence : négatif" in joined


def test_a_code_too_long_for_field_3_is_moved_to_a_tex_line() -> None:
    xml = crbio(obs('<value xsi:type="PQ" value="1" unit="g/L"/>',
                    code='<code code="VHEDA1GUR01LX" codeSystem="1.2.250.1.213.1.1.4.322" '
                         'displayName="Trousse"/>'))
    (r,) = results(xml)
    assert r.code == ""
    assert any("VHEDA1GUR01LX" in t for t in tex(xml))


def test_type_de_document_is_not_a_result_and_the_copy_is_attached() -> None:
    data = base64.b64encode(PDF).decode()
    copy = ('<component><section><code code="55108-5" codeSystem="2.16.840.1.113883.6.1"/>'
            "<title>Copie du document</title><text><renderMultiMedia referencedObject=\"d1\"/>"
            '</text><entry><organizer classCode="CLUSTER" moodCode="EVN">'
            '<code code="55107-7" codeSystem="2.16.840.1.113883.6.1"/>'
            '<component><observation classCode="OBS" moodCode="EVN">'
            '<code code="69764-9" codeSystem="2.16.840.1.113883.6.1" '
            'displayName="Type de document"/>'
            '<value xsi:type="CD" code="55108-5" displayName="Copie du document"/></observation>'
            '</component><component><observationMedia ID="d1"><value mediaType="application/pdf" '
            f'representation="B64">\n{data[:20]}\n{data[20:]}\n</value></observationMedia>'
            "</component></organizer></entry></section></component>")
    content = cda.read_cda(crbio(obs('<value xsi:type="PQ" value="5" unit="g/L"/>'),
                                 extra_sections=copy))
    assert [r.value for r in content.document.results] == ["5"]
    assert [(a.media_type, a.data) for a in content.attachments] == [("application/pdf", PDF)]
    assert "fichier(s) joint(s)" in content.document.free_text


def test_an_empty_value_is_never_written_where_the_cda_had_one() -> None:
    content = cda.read_cda(crbio(obs('<value xsi:type="CD"><originalText>'
                                     '<reference value="#nowhere"/></originalText></value>')))
    (r,) = content.document.results
    assert r.value.strip()
    assert any(f.code == "value-unread" for f in content.findings)


def test_narrative_is_rendered_as_readable_text_that_cannot_end_the_document() -> None:
    xml = crbio(obs('<value xsi:type="PQ" value="5" unit="g/L"/>'),
                "<table><thead><tr><th>Analyse</th><th>Résultat</th></tr></thead><tbody>"
                "<tr><td>Glucose</td><td>5 g/L</td></tr></tbody></table>"
                "<paragraph>****FIN****</paragraph><list><item>Revoir à 3 mois</item></list>")
    doc = cda.read_cda(xml).document
    assert "Glucose  5 g/L" in doc.free_text.split("\n")
    assert "- Revoir à 3 mois" in doc.free_text.split("\n")
    again = hprim.parse(hprim.write(doc))
    assert len(again.documents) == 1 and again.documents[0].results[0].value == "5"


def test_no_body_is_refused_with_a_line() -> None:
    xml = crbio("").replace(b"<component><structuredBody>", b"<component><x>").replace(
        b"</structuredBody></component>", b"</x></component>")
    with pytest.raises(DocumentError, match="neither a structuredBody nor a nonXMLBody"):
        cda.read_cda(xml)


def test_level1_with_bad_base64_is_refused() -> None:
    xml = (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patientRole/></recordTarget>'
           b'<component><nonXMLBody><text mediaType="application/pdf" representation="B64">'
           b"@@@not base64@@@</text></nonXMLBody></component></ClinicalDocument>")
    with pytest.raises(DocumentError, match="not valid base64"):
        cda.read_cda(xml)


def test_level1_says_the_report_is_in_the_pdf() -> None:
    xml = crbio("").replace(
        b"<component><structuredBody>",
        b'<component><nonXMLBody><text mediaType="application/pdf" representation="B64">'
        + base64.b64encode(PDF) + b"</text></nonXMLBody></component><!--").replace(
        b"</structuredBody></component>", b"-->")
    content = cda.read_cda(xml)
    assert content.pdf == PDF and [a.data for a in content.attachments] == [PDF]
    assert "le compte rendu entier est dans le fichier PDF joint" in content.document.free_text
    assert content.document.results == []


def test_a_second_unit_is_hprims_second_result() -> None:
    (r,) = results(crbio(obs('<value xsi:type="PQ" value="4.89" unit="mmol/L">'
                             '<translation value="0.88" code="g/L" '
                             'codeSystem="2.16.840.1.113883.6.8"/></value>')))
    assert (r.value, r.unit, r.value2, r.unit2) == ("4.89", "mmol/L", "0.88", "g/L")
    (r,) = results(crbio(obs('<value xsi:type="PQ" value="4.89" unit="mmol/L"/>'
                             '<value xsi:type="PQ" value="0.88" unit="g/L"/>')))
    assert (r.value, r.value2, r.unit2) == ("4.89", "0.88", "g/L")


def test_the_normal_range_is_the_one_in_fields_7_and_8() -> None:
    xml = crbio(obs('<value xsi:type="PQ" value="9" unit="g/L"/>',
                    more='<referenceRange><observationRange><value xsi:type="IVL_PQ">'
                         '<low value="8" unit="g/L"/></value><interpretationCode code="H"/>'
                         "</observationRange></referenceRange>"
                         '<referenceRange><observationRange><value xsi:type="IVL_PQ">'
                         '<low value="1" unit="g/L"/><high value="5" unit="g/L"/></value>'
                         "</observationRange></referenceRange>"))
    (r,) = results(xml)
    assert (r.low, r.high) == ("1", "5")
    assert any("valeurs de référence : >=8" in t for t in tex(xml))


def test_an_observation_without_value_gives_its_narrative_or_says_so() -> None:
    (r,) = results(crbio(obs('<text><reference value="#t1"/></text>'),
                         '<content ID="t1">non réalisé : échantillon hémolysé</content>'))
    assert r.value == "non réalisé : échantillon hémolysé"
    (r,) = results(crbio(obs("")))
    assert r.value == "(sans valeur)"


# --- property: whatever a producer's entries hold, a reading or one clear refusal ----------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from lxml import etree  # noqa: E402

from tests.conftest import FIXTURES  # noqa: E402

_EXAMPLES = [p.read_bytes() for p in sorted((FIXTURES / "ans" / "examples").glob("*2024*.xml"))
             if "Micro" in p.name or "Electro" in p.name or "tout" in p.name]
_TYPES = ["PQ", "IVL_PQ", "CD", "CE", "ST", "ED", "INT", "REAL", "RTO", "TS", "BL", "SC",
          "hl7:PQ", "", "XYZ"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(_EXAMPLES) - 1), seed=st.integers(0, 2**32 - 1),
       types=st.lists(st.sampled_from(_TYPES), min_size=1, max_size=6),
       drops=st.lists(st.integers(0, 10_000), max_size=6),
       junk=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                    max_size=12))
def test_mutated_crbio_is_read_or_refused_never_crashes(
        which: int, seed: int, types: list[str], drops: list[int], junk: str) -> None:
    import random

    rnd = random.Random(seed)
    root = etree.fromstring(_EXAMPLES[which])
    body = [e for e in root.iter() if isinstance(e.tag, str)]
    values = [e for e in body if e.get("{http://www.w3.org/2001/XMLSchema-instance}type")]
    for t in types:
        if values:
            rnd.choice(values).set("{http://www.w3.org/2001/XMLSchema-instance}type", t)
    for n in drops:
        victim = body[n % len(body)]
        parent = victim.getparent()
        if parent is not None and victim.getparent() is not None:
            parent.remove(victim)
            body = [e for e in root.iter() if isinstance(e.tag, str)]
    clean = "".join(c for c in junk if c.isprintable() or c in "\n\t")
    for e in rnd.sample(body, min(3, len(body))):
        for key in ("value", "displayName", "unit", "code"):
            if e.get(key) is not None:
                e.set(key, clean)
    xml = etree.tostring(root)
    try:
        content = cda.read_cda(xml)
    except DocumentError:
        return  # one clear refusal
    text = hprim.write(content.document)
    again = hprim.parse(text)
    assert len(again.documents) == 1
    assert not [f for f in again.findings if f.code in ("res-extra-fields", "no-fin")]
    got = again.documents[0].results
    assert len(got) == len(content.document.results)
    assert all("\n" not in r.value and "|" not in r.value for r in got)
