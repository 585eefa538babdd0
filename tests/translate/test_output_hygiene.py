"""What passerelle writes is well-formed MIME: ``MIME-Version: 1.0`` on every message, and
quoted-printable text whose line breaks are real line breaks (RFC 2045 §6.7), not ``=0D=0A``."""

from __future__ import annotations

import binascii
import email
import email.policy
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import config
from gateway.crypto.world import World
from gateway.mail import mime
from gateway.translate import notices
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translator
from tests.conftest import legacy_client
from tests.daemon.harness import TRUST

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def translator(world: World) -> Translator:
    return build_translator(config.load(world.config))


@given(st.binary(max_size=400) | st.text(max_size=300).map(
    lambda t: t.replace("\n", "\r\n").encode("utf-8")))
def test_quoted_printable_decodes_to_the_same_bytes(data: bytes) -> None:
    encoded = mime.quoted_printable(data)
    wire = encoded.replace("\n", "\r\n") if b"\r\n" in data else encoded
    assert binascii.a2b_qp(wire) == data
    assert all(len(line) <= 76 for line in encoded.split("\n"))


def test_crlf_text_is_written_with_real_line_breaks() -> None:
    text = "Résultat : 4,5 mmol/l\r\nConclusion normale \r\n\r\nDr X\r\n".encode("cp1252")
    encoded = mime.quoted_printable(text)
    assert "=0D" not in encoded and "=0A" not in encoded
    assert encoded.split("\n") == ["R=E9sultat : 4,5 mmol/l", "Conclusion normale=20", "",
                                   "Dr X", ""]
    part = mime.text_part("un\nDeux\n")
    wire = part.as_bytes(policy=mime.WIRE)
    assert b"un\r\nDeux\r\n" in wire and b"=0D" not in wire


def test_a_stray_line_end_is_kept_encoded() -> None:
    # a lone CR inside CRLF text is the text's own byte: it stays, encoded
    assert mime.quoted_printable(b"a\rb\r\nc") == "a=0Db\nc"


def test_a_legacy_notice_has_mime_version_and_real_line_breaks() -> None:
    original = (b"From: <dr.x@hopital-a.mssante.example>\r\nMessage-ID: <n1@hopital-a>\r\n"
                b"Date: Mon, 2 Mar 2026 08:00:00 +0100\r\nSubject: x\r\n\r\nbody\r\n")
    letter = notices.legacy_notice(
        original, sender="dupont@medical33.legacy.example",
        failures=[notices.Failure("dr.x@hopital-a.mssante.example", "failed", "5.1.1",
                                  "550 5.1.1 unknown")],
        gateway_domain="gw.example", now=NOW)
    msg = email.message_from_bytes(letter, policy=email.policy.default)
    assert msg["MIME-Version"] == "1.0"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    body = letter.split(b"\r\n\r\n", 1)[1]
    assert b"=0D=0A" not in body and body.count(b"\r\n") > 3
    assert "n'a pas pu" in msg.get_content() or "remis" in msg.get_content()


def test_a_message_to_a_legacy_user_has_mime_version_and_real_line_breaks(
        world: World, translator: Translator) -> None:
    reply = (b"From: <dr.x@hopital-a.mssante.example>\r\nTo: <" + TRUST["dupont"].encode()
             + b">\r\nSubject: Re\r\nMessage-ID: <r1@hopital-a>\r\n"
             b"Date: Mon, 2 Mar 2026 08:00:00 +0100\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
             b"Bien re\xc3\xa7u.\r\nDeuxi\xc3\xa8me ligne.\r\n")
    back = translator.to_legacy(reply, Envelope("dr.x@hopital-a.mssante.example",
                                                (TRUST["dupont"],)), now=NOW)
    opened = legacy_client(world, "dupont").open(
        back[0].message, expected_signer=world.fingerprints["gateway"])
    legacy = email.message_from_bytes(opened.message, policy=email.policy.default)
    assert legacy["MIME-Version"] == "1.0"
    text = next(p for p in legacy.walk() if p.get_content_type() == "text/plain")
    raw = opened.message.replace(b"\r\n", b"\n")
    assert b"=0D=0A" not in raw
    payload = text.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.count(b"\r\n") >= 2
