"""Identity without invention, on a real-format lab mail (fixtures/mail/lab-njf-nir.hpr): line 2
`DUPONT (NJF MARTIN)`, a NIR on line 8.  Through the whole legacy → trust translation (sealed,
signed, S/MIME): no INS and no NIR anywhere in the CDA, the XDM metadata, the headers or the
trace; no sex; MARTIN is the birth name because the report says so; the patient is the lab's
own number under the lab's OID.  And a report from a sender without a lab row is quarantined.
"""

from __future__ import annotations

import email
import email.policy
import json
import zipfile
from io import BytesIO

import pytest
from lxml import etree

from gateway.crypto.world import World
from gateway.documents import xdm
from gateway.documents.codes import load_tables
from gateway.errors import Fate, UnknownLab
from gateway.translate.legacy_to_trust import document_id
from gateway.translate.pipeline import Envelope, Translator
from gateway.translate.trace import TRACE_FILENAME
from tests.conftest import FIXTURES
from tests.translate.test_pipeline import NOW, sealed_letter, translator  # noqa: F401

MAIL = FIXTURES / "mail" / "lab-njf-nir.hpr"
NIR = "2570969123456"
H = {"h": "urn:hl7-org:v3"}
RCPT = "dr.x@hopital-a.mssante.example"


def _translate(world: World, translator: Translator, user: str) -> bytes:  # noqa: F811
    raw = sealed_letter(world, user, MAIL.read_bytes(), to=RCPT)
    sender = next(u for u in translator.book.users() if u.legacy_address.startswith(
        {"biolab": "labo.BIOLAB", "durand": "paul.DURAND"}[user]))
    return translator.to_trust(raw, Envelope(sender.legacy_address, (RCPT,)), now=NOW).message


def test_no_ins_no_nir_no_sex_birth_name_only_as_stated(
    world: World, translator: Translator,  # noqa: F811
) -> None:
    out = _translate(world, translator, "biolab")
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["X-MSS-INS"] == "N" and msg["X-MSS-CODECDA"] == "11502-2"
    files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
             if p.get_filename()}
    package = files["IHE_XDM.ZIP"]
    with zipfile.ZipFile(BytesIO(package)) as z:
        metadata = z.read(xdm.METADATA).replace(b"&amp;", b"&")  # values as the XML says them
        doc = z.read("IHE_XDM/SUBSET01/DOC0001.XML")
    trace = files[TRACE_FILENAME]
    compact = NIR.encode()
    headers = b"".join(f"{k}: {v}\n".encode() for k, v in msg.items())
    for where, data in (("CDA", doc), ("metadata", metadata), ("headers", headers),
                        ("trace", trace)):
        assert compact not in data.replace(b" ", b""), where
        assert b"1.2.250.1.213.1.4." not in data, where  # no INS root of any kind
    assert b"^NH" not in metadata

    root = etree.fromstring(doc)
    lab = load_tables().labs.lookup("BIOLAB")
    assert lab is not None
    (pid,) = root.xpath("h:recordTarget/h:patientRole/h:id", namespaces=H)
    assert (pid.get("root"), pid.get("extension")) == (lab.patient_oid, "L2403071")
    assert root.xpath("//h:patient/h:administrativeGenderCode/@nullFlavor", namespaces=H) == [
        "UNK"]
    families = [(f.get("qualifier"), f.text)
                for f in root.xpath("//h:patient/h:name/h:family", namespaces=H)]
    assert families == [(None, "DUPONT"), ("BR", "MARTIN")]
    assert b"L2403071^^^&" + lab.patient_oid.encode() + b"&ISO^PI" in metadata
    assert b"PID-5|MARTIN^Jeanne^^^^^L" in metadata
    assert b"PID-8|U" in metadata

    # the author, custodian and legal authenticator are the lab's row, by RPPS and FINESS
    assert root.xpath("h:author/h:assignedAuthor/h:id[@root='1.2.250.1.71.4.2.1']/@extension",
                      namespaces=H) == ["8" + lab.biologist_rpps]
    assert root.xpath("h:custodian//h:id/@extension", namespaces=H) == ["1" + lab.finess]
    assert root.xpath("h:legalAuthenticator//h:assignedPerson/h:name/h:family/text()",
                      namespaces=H) == [lab.biologist_family]
    assert f"^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1{lab.finess}".encode() in metadata
    assert b'nodeRepresentation="SA25"' in metadata and b'nodeRepresentation="10"' in metadata

    # the document id: a 2.25 OID derived from the Message-ID, the same in CDA, metadata, trace
    (doc_id,) = root.xpath("h:id/@root", namespaces=H)
    assert doc_id == document_id(msg["Message-ID"], 1) and doc_id.startswith("2.25.")
    assert root.xpath("h:setId/@root", namespaces=H) == [doc_id]
    assert doc_id.encode() in metadata
    steps = json.loads(trace)["steps"]
    assert any(doc_id in s.get("details", {}).get("document_ids", []) for s in steps)

    # the unvalidated HbA1c (status R) is in the narrative, not a structured result
    assert b"HBA1C" in doc
    assert not root.xpath("//h:observation/h:code[@code='4548-4']", namespaces=H)


def test_same_message_same_document_ids(world: World, translator: Translator  # noqa: F811
                                        ) -> None:
    def ids(out: bytes) -> list[str]:
        msg = email.message_from_bytes(out, policy=email.policy.default)
        zipped = next(p.get_payload(decode=True) for p in msg.walk()
                      if p.get_filename() == "IHE_XDM.ZIP")
        with zipfile.ZipFile(BytesIO(zipped)) as z:
            root = etree.fromstring(z.read("IHE_XDM/SUBSET01/DOC0001.XML"))
        return [str(x) for x in root.xpath("h:id/@root", namespaces=H)]

    assert ids(_translate(world, translator, "biolab")) == ids(
        _translate(world, translator, "biolab"))


def test_a_report_from_a_sender_without_a_lab_row_is_quarantined(
    world: World, translator: Translator,  # noqa: F811
) -> None:
    with pytest.raises(UnknownLab) as caught:
        _translate(world, translator, "durand")
    assert caught.value.fate is Fate.QUARANTINE
    assert "labs.csv" in str(caught.value)
