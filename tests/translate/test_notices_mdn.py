"""Whether an original asks for an MDN, and of whom (RFC 8098, only to its Return-Path)."""

from __future__ import annotations

import pytest

from gateway.translate.notices import mdn_requested

_HEAD = b"From: Dr X <dr.x@hopital-a.example>\r\nSubject: CR\r\nMessage-ID: <a@b>\r\n"


@pytest.mark.parametrize("field", [b"Disposition-Notification-To", b"disposition-notification-to",
                                   b"DISPOSITION-NOTIFICATION-TO"])
def test_a_request_to_the_return_path_is_answered_whatever_the_field_name_case(
        field: bytes) -> None:
    original = _HEAD + field + b": Dr X <dr.x@hopital-a.example>\r\n\r\nbody\r\n"
    assert mdn_requested(original, "<dr.x@hopital-a.example>") == "dr.x@hopital-a.example"


def test_no_field_no_mdn_even_when_the_body_names_it() -> None:
    original = _HEAD + b"\r\nDisposition-Notification-To: dr.x@hopital-a.example\r\n"
    assert mdn_requested(original, "<dr.x@hopital-a.example>") is None
    assert mdn_requested(_HEAD + b"\r\nbody\r\n", "<dr.x@hopital-a.example>") is None


def test_a_request_for_someone_else_is_not_answered() -> None:
    original = _HEAD + b"Disposition-Notification-To: <other@elsewhere.example>\r\n\r\nx\r\n"
    assert mdn_requested(original, "<dr.x@hopital-a.example>") is None


# --- receipts as the agency's guide writes them (900-906, subject, what is returned) --------

import email  # noqa: E402
import email.policy  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from email.message import EmailMessage  # noqa: E402

from gateway.documents import xdm  # noqa: E402
from gateway.translate import notices  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402

_NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
_PDF = b"%PDF-1.4\n%%EOF\n"
_TSH = (FIXTURES / "ans" / "examples" / "BIO-CR-BIO_2024.01_TSH_1.xml").read_bytes()


def _crbio_message() -> bytes:
    m = EmailMessage()
    m["From"] = "Laboratoire <labo@hopital-a.mssante.example>"
    m["To"] = "jean.dupont@legacy.mssante.example"
    m["Subject"] = "XDM/1.0/DDM+CR de biologie"
    m["Message-ID"] = "<crbio-7@hopital-a.mssante.example>"
    m["Disposition-Notification-To"] = "labo@hopital-a.mssante.example"
    m.set_content("Compte rendu ci-joint.\n")
    m.add_attachment(xdm.pack([xdm.XdmDocument(_TSH)], submission_time=_NOW,
                              sender=xdm.XdmSender("Laboratoire des charmes")),
                     maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    m.add_attachment(_PDF, maintype="application", subtype="pdf", filename="CR.pdf")
    return m.as_bytes(policy=email.policy.SMTP)


_RAW: dict[str | None, bytes] = {}


def _mdn(error: str | None, *, returned: bool = True) -> EmailMessage:
    original = _crbio_message()
    data = notices.build_mdn(original, notify="labo@hopital-a.mssante.example",
                             final_recipient="jean.dupont@legacy.mssante.example",
                             reporting_ua="passerelle.example", now=_NOW, error=error,
                             returned=original if returned else None)
    _RAW[error] = data
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.mark.parametrize(("code", "label"), [
    ("900", "Version du document incorrecte lors d'une demande de remplacement/suppression"),
    ("902", "Identifiant patient inconnu"),
    ("903", "INS non présent dans le document"),
    ("906", "Erreur 'Autre'"),
])
def test_error_receipt_follows_the_guide(code: str, label: str) -> None:
    msg = _mdn(code)
    # [KO Intégration système !][code] XDM/1.0/DDM+<libellé> <NOM> <prénom> <naissance>
    assert str(msg["Subject"]) == (f"[KO Intégration système !][{code}] XDM/1.0/DDM+"
                                   "Compte rendu d'examens biologiques PAT-TROIS DOMINIQUE"
                                   " MARIE-LOUISE"
                                   " 28/03/1979")
    assert msg.get_content_type() == "multipart/report"
    human, report, original, *files = list(msg.iter_parts())
    assert f"{code}^{label}" in human.get_content() and label in human.get_content()
    assert report.get_content_type() == "message/disposition-notification"
    text = _RAW[code].decode()  # the fields as written, one a line
    assert f"\r\nDisposition: automatic-action/MDN-sent-automatically; processed/Error: " \
           f"{code}^{label}\r\n" in text
    assert "\r\nOriginal-Message-ID: <crbio-7@hopital-a.mssante.example>\r\n" in text
    assert "Final-Recipient: rfc822; jean.dupont@legacy.mssante.example" in text
    assert original.get_content_type() == "message/rfc822"  # the original given back
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("IHE_XDM.ZIP", "application/zip"), ("CR.pdf", "application/pdf")]
    assert files[1].get_content() == _PDF
    back = notices.read_mdn(_RAW[code])
    assert back is not None and back.disposition.endswith(f"{code}^{label}")


def test_success_receipt_names_the_document_without_the_ko_prefix() -> None:
    msg = _mdn(None, returned=False)
    assert str(msg["Subject"]) == "XDM/1.0/DDM+CR de biologie"
    assert "processed" in msg.as_string() and "Error" not in msg.as_string()
    assert [p.get_content_type() for p in msg.iter_parts()][-1] == "text/rfc822-headers"


def test_an_error_without_the_original_returns_its_headers_only() -> None:
    msg = _mdn("902", returned=False)
    assert str(msg["Subject"]) == "[KO Intégration système !][902] XDM/1.0/DDM+CR de biologie"
    assert [p.get_content_type() for p in msg.iter_parts()][-1] == "text/rfc822-headers"


def test_a_code_outside_the_guide_is_refused() -> None:
    with pytest.raises(ValueError, match="900-906"):
        _mdn("999", returned=False)
