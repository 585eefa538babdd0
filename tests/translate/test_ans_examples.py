"""The agency's CR-BIO examples (fixtures/ans/examples, see its PROVENANCE.md) packed in IHE
XDM and sent to a legacy clinician: every result value in the RES lines they integrate (numbers
as numbers, a decimal comma allowed), no RES emptied, every PDF of the CDA attached.

What is expected is read here from the XML on its own terms (the observations that are results
and the values they hold), not from the reader under test.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from lxml import etree

from gateway import config
from gateway.crypto import smime
from gateway.crypto.world import USERS, World
from gateway.directory.addresses import COLUMNS, AddressBook
from gateway.documents import hprim, xdm
from gateway.translate import trust_to_legacy
from gateway.translate.factory import build_translator
from gateway.translate.trace import TraceRecord
from tests.conftest import FIXTURES, legacy_client

EXAMPLES = sorted((FIXTURES / "ans" / "examples").glob("*.xml"))
H = "{urn:hl7-org:v3}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CLINICIAN = "marie.MARTIN@medical75.legacy.example"
CLINICIAN_TRUST = "marie.martin@legacy.mssante.example"
BOOK = AddressBook.parse(
    ",".join(COLUMNS) + "\n"
    f"{CLINICIAN},{CLINICIAN_TRUST},Dr Marie Martin,10009876543,{'C' * 40},cp1252,MARM75\n")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass
class Expected:
    results: int = 0
    numbers: list[float] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    pdfs: list[bytes] = field(default_factory=list)


def _words(el: etree._Element) -> str:
    return " ".join("".join(t for t in el.itertext() if isinstance(t, str)).split())


def expected(xml: bytes) -> Expected:
    root = etree.fromstring(xml)
    ids = {el.get("ID"): _words(el) for el in root.iter()
           if isinstance(el.tag, str) and el.get("ID")}

    def shown(code: etree._Element) -> str:
        ref = code.find(f"{H}originalText/{H}reference")
        by_ref = ids.get((ref.get("value") or "").lstrip("#"), "") if ref is not None else ""
        return by_ref or code.get("displayName") or code.get("code") or ""

    out = Expected()
    for obs in root.iter(H + "observation"):
        code = obs.find(H + "code")
        if obs.getparent().get("typeCode") == "REFR" or (
                code is not None and code.get("code") == "69764-9"):
            continue  # a previous result; the "type de document" of an attached file
        out.results += 1
        value = obs.find(H + "value")
        if value is None:
            continue
        vtype = value.get(XSI_TYPE)
        if vtype in ("PQ", "REAL", "INT"):
            out.numbers.append(float(value.get("value")))
        elif vtype == "IVL_PQ":
            out.numbers += [float(b.get("value")) for b in value if b.get("value")]
        elif vtype == "CD":
            out.words.append(value.get("displayName") or shown(value))
        else:
            out.words.append(_words(value))
    for organism in root.iter(H + "specimenPlayingEntity"):
        out.words.append(shown(organism.find(H + "code")))
    out.pdfs = [base64.b64decode("".join(_words(el).split())) for el in root.iter()
                if isinstance(el.tag, str) and el.get("mediaType") == "application/pdf"]
    return out


def trust_message(documents: list[bytes], to: str) -> bytes:
    m = EmailMessage()
    m["From"] = "Laboratoire des charmes <labo@hopital-a.mssante.example>"
    m["To"] = to
    m["Subject"] = "XDM/1.0/DDM+CR d'examens biologiques"
    m["Message-ID"] = "<crbio-1@hopital-a.mssante.example>"
    m.set_content("Veuillez trouver le compte rendu ci-joint.\n")
    package = xdm.pack([xdm.XdmDocument(d) for d in documents], submission_time=NOW,
                       sender=xdm.XdmSender("Laboratoire des charmes"))
    m.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return m.as_bytes(policy=email.policy.SMTP)


def received(message: bytes, charset: str) -> tuple[str, list[tuple[str, str, bytes]]]:
    """(the report's text as the clinician's software decodes it, the attachments: content
    type, file name, bytes)."""
    msg = email.message_from_bytes(message, policy=email.policy.default)
    body, files = "", []
    for part in msg.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        if part.get_filename():
            files.append((part.get_content_type(), part.get_filename(), data))
        elif part.get_content_type() == "text/plain":
            body = data.decode(charset)
    return body, files


def check(xml: bytes, body: str, files: list[tuple[str, str, bytes]], charset: str) -> None:
    want = expected(xml)
    parsed = hprim.parse(body)
    assert not [f for f in parsed.findings if f.code.startswith(("res", "header", "no-fin"))]
    (document,) = parsed.documents
    family = etree.fromstring(xml).findtext(
        f"{H}recordTarget/{H}patientRole/{H}patient/{H}name/{H}family")
    assert document.header.last_name == family and document.header.patient_code
    results = document.results
    assert len(results) >= want.results
    assert all(r.value.strip() for r in results), "a RES line with an empty value"
    in_res = [f for r in results for f in (r.value, r.value2)]
    numbers = {float(n.replace(",", ".")) for f in in_res for n in NUMBER.findall(f)}
    assert [n for n in want.numbers if n not in numbers] == []
    # words as the recipient's charset can hold them (what it cannot is written the way a
    # typist would, and counted in the trace)
    words = [trust_to_legacy.encode_for(w, charset)[0].decode(charset) for w in want.words]
    text = " ".join(in_res) + " " + " ".join(r.label for r in results)
    assert [w for w in words if w not in text] == []
    attached = Counter(data for kind, _, data in files if kind == "application/pdf")
    assert attached == Counter(want.pdfs)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_reaches_the_clinician_whole(path: Path) -> None:
    xml = path.read_bytes()
    draft = trust_to_legacy.compose(
        trust_message([xml], CLINICIAN_TRUST), recipient=BOOK.by_trust(CLINICIAN_TRUST),
        book=BOOK, now=NOW, trace=TraceRecord("t", "to_legacy"), domain="legacy.mssante.example")
    body, files = received(draft.message, "cp1252")
    check(xml, body, files, "cp1252")


def test_the_fixtures_hold_the_11_examples_and_their_13_pdfs() -> None:
    """The 11 CR-BIO 2024.01 examples (and the 2021.01 level-1 one) are all there, with the
    13 PDFs they embed beside the level-1 one: the tests above see every one."""
    found = [expected(p.read_bytes()) for p in EXAMPLES if "2024.01" in p.name]
    assert len(found) == 11
    assert sum(len(e.pdfs) for e in found) == 13


@pytest.mark.slow
def test_all_examples_in_one_package_through_translate_to_legacy(world: World,
                                                                 tmp_path: Path) -> None:
    """`passerelle translate --to legacy` on a signed trust-space message carrying all the
    examples: the clinician opens it with their own key and finds every result and PDF."""
    user = next(u for u in USERS if u.key == "durand")  # UTF-8 software
    translator = build_translator(config.load(world.config))
    assert isinstance(translator.smime, smime.Smime)
    documents = [p.read_bytes() for p in EXAMPLES]
    # signed by the sender's own certificate: the signer must be the From
    signer = smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                        world.key("hopital-a-signing"))
    raw = smime.sign(trust_message(documents, user.trust_address), signer)
    path = tmp_path / "crbio.eml"
    path.write_bytes(raw)
    proc = subprocess.run([sys.executable, "-m", "gateway", "translate", "--config",
                           str(world.config), "--to", "legacy", "--rcpt", user.trust_address,
                           str(path)], capture_output=True, check=False, cwd=world.root)
    assert proc.returncode == 0, proc.stderr
    opened = legacy_client(world, "durand").open(proc.stdout,
                                                 expected_signer=world.fingerprints["gateway"])
    body, files = received(opened.message, "utf-8")
    documents_text = body.split("****FIN****")
    assert len(documents_text) == len(EXAMPLES) + 1  # one HPRIM document per CDA
    for n, (xml, text) in enumerate(zip(documents, documents_text, strict=False), start=1):
        mine = [f for f in files if f[1].startswith(f"CR{n:04d}")]  # document n's files
        check(xml, text + "****FIN****\n", mine, "utf-8")
    assert Counter(d for k, _, d in files if k == "application/pdf") == Counter(
        pdf for x in documents for pdf in expected(x).pdfs)


def test_metadata_naming_another_patient_is_refused() -> None:
    from gateway.errors import TranslationError
    from tests.documents.test_xdm_layouts import relayout

    xml = (FIXTURES / "ans" / "examples" / "BIO-CR-BIO_2024.01_TSH_1.xml").read_bytes()
    raw = email.message_from_bytes(trust_message([xml], CLINICIAN_TRUST),
                                   policy=email.policy.default)
    for part in raw.walk():
        if part.get_filename() == "IHE_XDM.ZIP":
            other = relayout(part.get_payload(decode=True), subset="SUBSET01",
                             edit={"sourcePatientInfo": "PID-5|AUTRE^Jean^^^^^L"})
            part.set_content(other, maintype="application", subtype="zip",
                             disposition="attachment", filename="IHE_XDM.ZIP")
    with pytest.raises(TranslationError, match="names another patient than the CDA"):
        trust_to_legacy.compose(raw.as_bytes(policy=email.policy.SMTP),
                                recipient=BOOK.by_trust(CLINICIAN_TRUST), book=BOOK, now=NOW,
                                trace=TraceRecord("t", "to_legacy"),
                                domain="legacy.mssante.example")
