"""Names and short strings through `translate`, both ways, with the `pki demo` world: a
Subject or a display name garbled by a wrong charset label is repaired, a name written right
is never changed, the HPRIM header's names arrive as written, and a character the legacy
recipient's charset cannot hold is transliterated and told."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from typing import Any

import pytest

from gateway import config
from gateway.crypto.world import USERS, World
from gateway.documents import cda, hprim, xdm
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translator
from gateway.translate.trace import TRACE_FILENAME
from tests.conftest import FIXTURES, legacy_client
from tests.translate.test_pipeline import forwarded_by_dr_x

NOW = datetime.now(UTC)
ADDR = {u.key: u.legacy_address for u in USERS}
TRUST = {u.key: u.trust_address for u in USERS}
HOSPITAL = "dr.x@hopital-a.mssante.example"


@pytest.fixture(scope="module")
def translator(world: World) -> Translator:
    return build_translator(config.load(world.config))


def _q(text: str, label: str = "iso-8859-1") -> str:
    """An RFC 2047 word holding the UTF-8 bytes of ``text`` under a wrong charset label."""
    data = text.encode("utf-8")
    body = "".join(chr(b) if chr(b).isalnum() and b < 128 else
                   ("_" if b == 32 else f"={b:02X}") for b in data)
    return f"=?{label}?Q?{body}?="


def _sealed(world: World, user: str, head: str, body: bytes) -> bytes:
    raw = (head.replace("\n", "\r\n") + "\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n"
           "\r\n").encode("ascii") + body.replace(b"\n", b"\r\n")
    return legacy_client(world, user).seal(raw, recipient=world.fingerprints["gateway"])


def _compose_step(trace: Any) -> dict[str, Any]:
    step = next(s for s in trace.steps if s.stage == "compose")
    return dict(step.details)


def _message(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_to_trust_repairs_a_mislabelled_subject_and_display_name(
        world: World, translator: Translator) -> None:
    head = (f"From: {ADDR['durand']}\n"
            f"To: {_q('Dr Renée Müller')} <{HOSPITAL}>\n"
            f"Cc: =?utf-8?q?Dr_Jo=C3=A3o_Sim=C3=B5es?= <dr.y@hopital-a.mssante.example>\n"
            f"Subject: {_q('Résultats de Mme Gonçalves')}\n"
            f"Message-ID: <names-1@medical75.legacy.example>")
    raw = _sealed(world, "durand", head, "Chère consœur, voici les résultats.\n".encode())
    out = translator.to_trust(raw, Envelope(ADDR["durand"], (HOSPITAL,)), now=NOW)
    msg = _message(out.message)
    assert msg["Subject"] == "Résultats de Mme Gonçalves"
    assert msg["To"].addresses[0].display_name == "Dr Renée Müller"
    assert msg["Cc"].addresses[0].display_name == "Dr João Simões"  # written right: kept
    strings = _compose_step(out.trace)["strings"]
    subject = next(e for e in strings if e["where"] == "Subject")
    assert (subject["before"], subject["after"], subject["decided"]) == (
        "RÃ©sultats de Mme GonÃ§alves", "Résultats de Mme Gonçalves", True)
    assert subject["how"].startswith("utf-8 read as ")
    assert any(e["where"] == "To display name" and e["after"] == "Dr Renée Müller"
               for e in strings)
    assert not any(e["where"] == "Cc display name" for e in strings)
    # the trace part travelling with the message says the same
    trace_part = next(p for p in msg.walk() if p.get_filename() == TRACE_FILENAME)
    steps = json.loads(trace_part.get_payload(decode=True))["steps"]
    assert any(s["stage"] == "compose" and s["details"]["strings"] == strings for s in steps)


def _report(last: str, first: str, sender_name: str = "Laboratoire Bio-Santé") -> str:
    lines = (FIXTURES / "hprim" / "01-glycemie-crlf-12.hpr").read_bytes().decode(
        "utf-8").replace("\r\n", "\n").split("\n")
    lines[1], lines[2] = last, first
    lines[10] = f"{lines[10][:10]} {sender_name}"
    return "\n".join(lines)


@pytest.mark.parametrize(("last", "first"), [("GONÇALVES", "João"), ("ÅNGSTRÖM", "Åsa"),
                                             ("WAŁĘSA", "Łukasz"), ("ERDŐS", "Ödön"),
                                             ("ȚEPEȘ", "Ștefan"), ("NGUYỄN", "Văn Đức")])
def test_hprim_names_written_right_arrive_unchanged(world: World, translator: Translator,
                                                     last: str, first: str) -> None:
    body = _report(last, first).encode("utf-8")
    head = (f"From: {ADDR['biolab']}\nTo: {HOSPITAL}\nSubject: CR\n"
            "Message-ID: <names-2@medical75.legacy.example>")
    out = translator.to_trust(_sealed(world, "biolab", head, body),
                              Envelope(ADDR["biolab"], (HOSPITAL,)), now=NOW)
    msg = _message(out.message)
    assert msg["Subject"].endswith(f"{first} 02/11/1948")
    files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
             if p.get_filename()}
    doc = cda.read_cda(xdm.unpack(files["IHE_XDM.ZIP"]).documents[0].xml).document
    assert (doc.header.last_name, doc.header.first_name) == (last, first)
    assert "strings" not in _compose_step(out.trace)


def test_hprim_header_lines_garbled_alone_are_repaired(world: World,
                                                       translator: Translator) -> None:
    """A lab whose software pasted the patient's name as mojibake into a clean report: the
    name lines are read on their own evidence, and the trace says so."""
    last = "GONÇALVES".encode().decode("cp1252")
    first = "João".encode().decode("cp1252")
    lab = "Laboratoire Bio-Santé Saint-Étienne".encode().decode("mac_roman")
    body = _report(last, first, lab).encode("utf-8")
    head = (f"From: {ADDR['biolab']}\nTo: {HOSPITAL}\nSubject: CR\n"
            "Message-ID: <names-3@medical75.legacy.example>")
    out = translator.to_trust(_sealed(world, "biolab", head, body),
                              Envelope(ADDR["biolab"], (HOSPITAL,)), now=NOW)
    msg = _message(out.message)
    files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
             if p.get_filename()}
    doc = cda.read_cda(xdm.unpack(files["IHE_XDM.ZIP"]).documents[0].xml).document
    assert (doc.header.last_name, doc.header.first_name) == ("GONÇALVES", "João")
    assert msg["Subject"].endswith("GONCALVES João 02/11/1948")
    repair = next(s for s in out.trace.steps if s.stage == "repair")
    compose = _compose_step(out.trace)
    # every garbled line was repaired once, by the letter's repair or the header's
    said = [c["after"] for c in repair.details.get("changes", [])] + [
        e["after"] for e in compose.get("strings", [])]
    assert any("GONÇALVES" in a for a in said) and any("João" in a for a in said)


def _trust_letter(subject: str, from_name: str, body: str) -> bytes:
    m = EmailMessage()
    m["From"] = f"{from_name} <{HOSPITAL}>"
    m["To"] = TRUST["dupont"]
    m["Subject"] = subject
    m["Message-ID"] = "<names-4@hopital-a.mssante.example>"
    m.set_content(body)
    return m.as_bytes(policy=email.policy.SMTP)


def _opened(world: World, translation: Any) -> Message:
    opened = legacy_client(world, "dupont").open(translation.message,
                                                 expected_signer=world.fingerprints["gateway"])
    return _message(opened.message)


def test_to_legacy_repairs_subject_and_names_and_tells_what_cannot_be_carried(
        world: World, translator: Translator) -> None:
    raw = _trust_letter("x", "x", "Bilan : γGT 45 UI/L, β-HCG négatif.\nMme Erdős Ödön.\n")
    # the hospital's mailer labelled UTF-8 bytes as Latin-1 in both header fields
    raw = raw.replace(b"Subject: x", f"Subject: {_q('Résultats de M. Noël')}".encode())
    raw = raw.replace(b"From: x <", f"From: {_q('Dr Hélène Müller')} <".encode())
    (back,) = translator.to_legacy(raw, Envelope(HOSPITAL, (TRUST["dupont"],)), now=NOW)
    legacy = _opened(world, back)
    assert legacy["Subject"] == "Résultats de M. Noël"
    assert legacy["From"].addresses[0].display_name == "Dr Hélène Müller"
    part = next(p for p in legacy.walk() if p.get_content_type() == "text/plain")
    text = part.get_payload(decode=True).decode("mac_roman")  # Dr Dupont reads Mac Roman
    assert "gammaGT 45 UI/L, beta-HCG négatif." in text
    assert "Mme Erdos Ödön." in text  # ö is in Mac Roman, ő is not
    assert "?" not in text
    last = text.rstrip("\r\n").split("\r\n")[-1]
    assert last.startswith("Note de la passerelle")
    assert "-> gamma" in last and "-> beta" in last and "double acute) -> o" in last
    compose = _compose_step(back.trace)
    assert compose["transliterated"] == {"γ -> gamma": 1, "β -> beta": 1, "ő -> o": 1}
    assert {e["where"] for e in compose["strings"]} == {"Subject", "From display name"}


def test_hprim_to_legacy_transliterates_names_beside_the_report(
        world: World, translator: Translator) -> None:
    body = _report("WAŁĘSA", "Łukasz").encode("utf-8")
    head = (f"From: {ADDR['biolab']}\nTo: {HOSPITAL}\nSubject: CR\n"
            "Message-ID: <names-5@medical75.legacy.example>")
    out = translator.to_trust(_sealed(world, "biolab", head, body),
                              Envelope(ADDR["biolab"], (HOSPITAL,)), now=NOW)
    # forwarded by Dr X under their own From and certificate (the signer must be the From)
    (back,) = translator.to_legacy(forwarded_by_dr_x(world, translator, out.message),
                                   Envelope(HOSPITAL, (TRUST["dupont"],)),
                                   now=NOW)
    legacy = _opened(world, back)
    texts = {p.get_filename(): p.get_payload(decode=True).decode("mac_roman")
             for p in legacy.walk() if p.get_content_type() == "text/plain"}
    report = hprim.parse(texts[None])
    assert (report.documents[0].header.last_name,
            report.documents[0].header.first_name) == ("WALESA", "Lukasz")
    assert report.findings == []  # the report itself ends at its marker
    assert texts["NOTE.TXT"].startswith("Note de la passerelle")
    assert "(latin capital letter l with stroke) -> L" in texts["NOTE.TXT"]
    assert _compose_step(back.trace)["transliterated"]["Ł -> L"] == 2


def test_attachment_names_are_repaired_and_recorded(world: World,
                                                    translator: Translator) -> None:
    m = EmailMessage()
    m["From"] = ADDR["durand"]
    m["To"] = HOSPITAL
    m["Subject"] = "Pièces"
    m["Message-ID"] = "<names-6@medical75.legacy.example>"
    m.set_content("Ci-joint.\n")
    garbled = "Compte rendu Mme Gonçalves.pdf".encode().decode("cp1252")
    m.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename=garbled)
    m.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf",
                     filename="Échographie Ångström.pdf")
    raw = legacy_client(world, "durand").seal(m.as_bytes(policy=email.policy.SMTP),
                                              recipient=world.fingerprints["gateway"])
    out = translator.to_trust(raw, Envelope(ADDR["durand"], (HOSPITAL,)), now=NOW)
    names = [p.get_filename() for p in _message(out.message).walk()
             if p.get_content_type() == "application/pdf"]
    assert names == ["Compte rendu Mme Gonçalves.pdf", "Échographie Ångström.pdf"]
    entries = _compose_step(out.trace)["strings"]
    assert [(e["where"], e["before"], e["after"]) for e in entries] == [
        ("attachment name", garbled, "Compte rendu Mme Gonçalves.pdf")]


def test_a_repair_never_brings_a_line_break() -> None:
    """A Subject whose only "repair" would be a line separator (â€¨ is U+2028 in UTF-8 read
    as CP1252) stays as received: a header is never cut in two."""
    from gateway.translate.strings import StringRepairs

    strings = StringRepairs()
    value = "Résultats â€¨Bcc: x@y.fr"
    assert strings.text(value, "Subject") == value
