"""Both composition stages on real documents: what a clinician's software receives."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.directory.addresses import COLUMNS, AddressBook
from gateway.documents import cda, hprim, xdm
from gateway.documents.codes import load_tables
from gateway.errors import MessageFormatError, TranslationError
from gateway.mail import mime
from gateway.mail.handover import Handover
from gateway.translate import legacy_to_trust, trust_to_legacy
from gateway.translate.trace import TRACE_FILENAME, TraceRecord
from tests.conftest import FIXTURES

LAB = "labo.BIOLAB@medical69.legacy.example"
DOC = "jean.DUPONT@medical33.legacy.example"
BOOK = AddressBook.parse(
    ",".join(COLUMNS) + "\n"
    f"{LAB},labo.biolab@legacy.mssante.example,Laboratoire Biolab,,{'A' * 40},cp850,BIOLAB\n"
    f"{DOC},jean.dupont@legacy.mssante.example,Dr Jean Dupont,10001234567,{'B' * 40},"
    "mac_roman,DUPJ33\n"
)
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HPRIM_FILES = sorted((FIXTURES / "hprim").glob("*.hpr"))


def legacy_message(body: bytes, *, sender: str = LAB, subject: str = "Résultats") -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "Dr X <dr.x@hopital-a.mssante.example>"
    m["Subject"] = subject
    m["Message-ID"] = "<orig-1@medical69.legacy.example>"
    m["In-Reply-To"] = "<earlier@hopital-a.mssante.example>"
    m.set_content(body, maintype="text", subtype="plain", cte="base64")
    return m.as_bytes(policy=email.policy.SMTP)


def to_trust(raw: bytes, sender: str = LAB) -> tuple[legacy_to_trust.TrustDraft, TraceRecord]:
    trace = TraceRecord("m1", "to_trust")
    draft = legacy_to_trust.compose(
        raw, sender=BOOK.by_legacy(sender), book=BOOK, envelope_from=sender,
        tables=load_tables(), now=NOW, trace=trace, signer_fpr="A" * 40,
        domain="legacy.mssante.example")
    return draft, trace


def parts(message: bytes) -> dict[str, bytes]:
    msg = email.message_from_bytes(message, policy=email.policy.default)
    out = {}
    for p in msg.walk():
        if p.is_multipart():
            continue
        name = p.get_filename() or p.get_content_type()
        out[name] = p.get_payload(decode=True)
    return out


@pytest.mark.parametrize("path", HPRIM_FILES, ids=lambda p: p.name)
def test_hprim_report_round_trip(path: Path) -> None:
    """HPRIM → trust message (XDM + PDF) → legacy message: every RES line comes back."""
    original = hprim.parse(path.read_bytes().decode("utf-8"))
    draft, _ = to_trust(legacy_message(path.read_bytes()))
    got = parts(draft.message)
    assert "IHE_XDM.ZIP" in got and any(n.endswith(".PDF") for n in got)
    assert xdm.verify(got["IHE_XDM.ZIP"]) == []
    package = xdm.unpack(got["IHE_XDM.ZIP"])
    values = [r.value for e in package.documents
              for r in cda.read_cda(e.xml).document.results]
    assert values == [r.value for d in original.documents for r in d.results]

    msg = email.message_from_bytes(draft.message, policy=email.policy.default)
    msg.replace_header("To", "jean.dupont@legacy.mssante.example")
    back = trust_to_legacy.compose(
        msg.as_bytes(policy=email.policy.SMTP), recipient=BOOK.by_trust(
            "jean.dupont@legacy.mssante.example"), book=BOOK, now=NOW,
        trace=TraceRecord("m1", "to_legacy"), domain="legacy.mssante.example")
    legacy = email.message_from_bytes(back.message, policy=email.policy.default)
    body = legacy.get_body(("plain",))
    assert body is not None and body.get_content_charset() == "macintosh"
    raw_body = body.get_payload(decode=True)
    assert b"\r\n" in raw_body and b"\n" not in raw_body.replace(b"\r\n", b"")
    again = hprim.parse(raw_body.decode("mac_roman"))
    assert [r.fields() for d in again.documents for r in d.results] == [
        r.fields() for d in original.documents for r in d.results]
    assert all(d.header.recipient_code == "DUPJ33" for d in again.documents)


def test_trust_message_headers_and_note() -> None:
    path = HPRIM_FILES[0]
    draft, trace = to_trust(legacy_message(path.read_bytes()))
    msg = email.message_from_bytes(draft.message, policy=email.policy.default)
    assert msg["From"] == "Laboratoire Biolab <labo.biolab@legacy.mssante.example>"
    assert msg["To"] == "Dr X <dr.x@hopital-a.mssante.example>"
    assert msg["Message-ID"] == "<orig-1@medical69.legacy.example>"
    assert msg["In-Reply-To"] == "<earlier@hopital-a.mssante.example>"
    assert msg["Subject"].startswith("XDM/1.0/DDM+CR d'examens biologiques ")
    assert msg["X-MSS-CODECDA"] == "11502-2"
    body = msg.get_body(("plain",))
    assert body is not None
    text, note = body.get_content().replace("\r\n", "\n").split("\n-- \n")
    assert text == path.read_bytes().decode("utf-8").replace(
        "\r\n", "\n").replace("\r", "\n")
    assert "Signature de l'expéditeur vérifiée" in note
    stages = [s.stage for s in trace.steps]
    assert stages == ["repair", "documents", "compose"]
    assert TRACE_FILENAME in parts(draft.message)


def test_garbled_letter_reads_right_on_the_trust_side() -> None:
    case = FIXTURES / "text" / "extra" / "garbled" / "e08-macroman-cr.bin"
    draft, trace = to_trust(legacy_message(case.read_bytes(), sender=DOC))
    msg = email.message_from_bytes(draft.message, policy=email.policy.default)
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n").split("\n-- \n")[0]
    assert text == case.with_suffix(".expected").read_text("utf-8")
    assert msg["Subject"] == "Résultats"
    assert trace.steps[0].details["encoding"] == "mac_roman"


def test_forged_from_is_corrected_to_the_signer() -> None:
    m = email.message_from_bytes(legacy_message(b"Bonjour"), policy=email.policy.default)
    m.replace_header("From", "someone.else@medical33.legacy.example")
    draft, trace = to_trust(m.as_bytes(policy=email.policy.SMTP))
    out = email.message_from_bytes(draft.message, policy=email.policy.default)
    assert out["From"] == "Laboratoire Biolab <labo.biolab@legacy.mssante.example>"
    assert "From corrected to the signer" in trace.steps[-1].details["mappings"]


def test_corrupt_xdm_is_a_translation_error() -> None:
    draft, _ = to_trust(legacy_message(HPRIM_FILES[0].read_bytes()))
    msg = email.message_from_bytes(draft.message, policy=email.policy.default)
    for part in msg.walk():
        if part.get_filename() == "IHE_XDM.ZIP":
            data = bytearray(part.get_payload(decode=True))
            data[len(data) // 2] ^= 0xFF
            part.set_content(bytes(data), maintype="application", subtype="zip",
                             disposition="attachment", filename="IHE_XDM.ZIP")
    with pytest.raises(TranslationError, match=r"IHE_XDM\.ZIP"):
        trust_to_legacy.compose(
            msg.as_bytes(policy=email.policy.SMTP),
            recipient=BOOK.by_trust("jean.dupont@legacy.mssante.example"), book=BOOK,
            now=NOW, trace=TraceRecord("m", "to_legacy"), domain="legacy.mssante.example")


def test_charset_replacements_are_counted() -> None:
    data, replaced = trust_to_legacy.encode_for("cœur « ok » – fin\n", "cp850")
    assert data == b"coeur \xae ok \xaf - fin\r\n" and replaced == 2


def _mdn() -> bytes:
    from gateway.translate import notices

    original = (b"From: jean.dupont@legacy.mssante.example\r\nTo: dr.x@hopital-a.mssante.example"
                b"\r\nMessage-ID: <orig-9@legacy.mssante.example>\r\nSubject: x\r\n\r\nx")
    return notices.build_mdn(original, notify="jean.dupont@legacy.mssante.example",
                             final_recipient="dr.x@hopital-a.mssante.example",
                             reporting_ua="mx.hopital-a.mssante.example", now=NOW)


def test_a_receipt_becomes_a_short_letter() -> None:
    draft = trust_to_legacy.compose(
        _mdn(), recipient=BOOK.by_trust("jean.dupont@legacy.mssante.example"), book=BOOK,
        now=NOW, trace=TraceRecord("m1", "to_legacy"), domain="legacy.mssante.example")
    body = parts(draft.message)["text/plain"].decode("mac_roman")
    assert body.startswith("Accusé de réception : votre message <orig-9@")


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, 400), st.sampled_from([b"", b"X", b"\r\n", b"multipart/report",
                                             b"MULTIPART/REPORT; ", b";", b"\r\n "]),
       st.integers(0, 3))
def test_the_receipt_reader_is_skipped_only_where_it_finds_nothing(
        at: int, token: bytes, cut: int) -> None:
    from gateway.translate.notices import read_mdn

    raw = bytearray(_mdn())
    head = raw.index(b"\r\n\r\n")
    at = min(at, head)
    raw[at:at + cut] = token
    try:
        msg = mime.parse(bytes(raw))
    except MessageFormatError:
        return
    if read_mdn(bytes(raw)) is not None:
        assert trust_to_legacy._may_be_report(msg)


def _letter_without_message_id() -> bytes:
    m = EmailMessage()
    m["From"] = "Dr X <dr.x@hopital-a.mssante.example>"
    m["To"] = "jean.dupont@legacy.mssante.example"
    m["Subject"] = "Lettre"
    m.set_content("Cher confrère, …\n", cte="quoted-printable")
    m.add_attachment(b"%PDF-1.4 x" * 5000, maintype="application", subtype="pdf",
                     filename="lettre.pdf")
    return m.as_bytes(policy=email.policy.SMTP)


def _xdm_report() -> bytes:
    draft, _ = to_trust(legacy_message(HPRIM_FILES[0].read_bytes()))
    msg = email.message_from_bytes(draft.message, policy=email.policy.default)
    msg.replace_header("To", "jean.dupont@legacy.mssante.example")
    return msg.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize("content", [_letter_without_message_id, _xdm_report, _mdn],
                         ids=["letter", "xdm", "receipt"])
def test_content_handed_over_composes_as_its_bytes(content: Callable[[], bytes]) -> None:
    """As verify hands it (its headers, then a view of the received message), the content
    gives the draft and trace its bytes give."""
    raw = content()
    at = raw.index(b"\r\n\r\n") + 4
    drafts, traces = [], []
    for given_as in (raw, Handover.of_views(raw[:at], memoryview(raw)[at:])):
        trace = TraceRecord("m1", "to_legacy")
        drafts.append(trust_to_legacy.compose(
            given_as, recipient=BOOK.by_trust("jean.dupont@legacy.mssante.example"),
            book=BOOK, now=NOW, trace=trace, domain="legacy.mssante.example"))
        traces.append([(s.stage, s.input_digest, s.output_digest, s.details)
                       for s in trace.steps])
    assert traces[0] == traces[1]
    assert drafts[0].documents == drafts[1].documents
    msgs = [mime.parse(d.message) for d in drafts]

    def fields(msg: EmailMessage) -> list[tuple[str, str]]:
        # a Message-ID made up holds the time and a random number, then the content's digest
        return [(n, v.rsplit(".", 1)[-1] if n == "Message-ID" else v)
                for n, v in msg.items() if n != "Content-Type"]  # boundaries drawn afresh

    assert fields(msgs[0]) == fields(msgs[1])
    assert [(p.content_type, p.filename, p.data) for p in mime.leaves(msgs[0])] == [
        (p.content_type, p.filename, p.data) for p in mime.leaves(msgs[1])]
