"""The trace id of a message is its Message-ID, read without parsing the message when the field
is a plain one: the shortcut must read exactly what the header parser reads, on every header
block — plain, folded, encoded, misplaced, duplicated or broken."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail import mime
from gateway.translate.pipeline import _message_id, _simple_message_id
from gateway.translate.trace import sha256


def _parsed(raw: bytes) -> str:
    """The reading before the shortcut: the header parser on the header block."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    try:
        value = mime.header(mime.parse(head + b"\r\n\r\n"), "Message-ID")
    except Exception:
        value = ""
    return value.strip() or f"<{sha256(raw)[:32]}@passerelle>"


PLAIN = b"From: a@b.fr\r\nTo: c@d.fr\r\nMessage-ID: <1234.abc@cabinet.fr>\r\nSubject: x\r\n\r\nbody"


def test_a_plain_message_id_is_read_without_the_parser() -> None:
    assert _simple_message_id(PLAIN.split(b"\r\n\r\n")[0]) == "<1234.abc@cabinet.fr>"
    assert _message_id(PLAIN) == "<1234.abc@cabinet.fr>"


@pytest.mark.parametrize("raw", [
    b"From: a@b.fr\r\nMessage-ID:\r\n <folded@x.fr>\r\n\r\nbody",
    b"Message-ID: <first@x.fr> (comment)\r\nMessage-ID: <second@x.fr>\r\n\r\n",
    b"Message-Id : <not-a-field@x.fr>\r\nMessage-ID: <real@x.fr>\r\n\r\n",
    b"From: a@b.fr\r\nthis line is not a header\r\nMessage-ID: <after-junk@x.fr>\r\n\r\n",
    b"Message-ID: =?utf-8?q?=3Cencoded=40x=2Efr=3E?=\r\n\r\n",
    b"Subject: no id at all\r\n\r\nMessage-ID: <in-the-body@x.fr>\r\n",
    b"mEsSaGe-iD:<tight@x.fr>\n\nbody",
])
def test_anything_but_a_plain_field_reads_as_the_parser_does(raw: bytes) -> None:
    assert _message_id(raw) == _parsed(raw)


_LINES = st.sampled_from([
    b"From: a@b.fr", b"To: c@d.fr", b"Subject: =?utf-8?q?r=C3=A9sultats?=", b" folded",
    b"\tfolded", b"Message-ID: <a.b@c.fr>", b"Message-ID: <x@y>  ", b"message-id:<z@q>",
    b"Message-ID: <a b@c>", b"Message-ID:", b"Message-ID: not-angled", b"Message-Id : <s@p>",
    b"junk without colon", b"From mbox-line", b"X-\xe9: 8bit", b"Message-ID: <\xe9@x>",
    b": empty name", b"",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=8), st.sampled_from([b"\r\n", b"\n"]))
def test_shortcut_and_parser_agree_on_any_header_block(lines: list[bytes], eol: bytes) -> None:
    raw = eol.join(lines) + eol + eol + b"body"
    assert _message_id(raw) == _parsed(raw)
