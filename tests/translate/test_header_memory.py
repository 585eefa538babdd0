"""The gateway reads and writes messages with the standard email policies plus a header
registry that remembers what it parsed.  What it hands out must be what a fresh parse gives:
same text, same kind of header, same parameters and defects, same folding on the wire — and
its memory must stay bounded."""

from __future__ import annotations

import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail import mime

NAMES = ["Content-Type", "content-disposition", "Content-Transfer-Encoding", "From", "To",
         "Subject", "Date", "Message-ID", "MIME-Version", "X-Anything", "Reply-To"]

SAMPLES = [
    ("Content-Type", 'text/plain; charset="utf-8"'),
    ("Content-Type", "multipart/mixed; boundary=\"===============1234==\""),
    ("Content-Type", "application/pdf; name*=utf-8''r%C3%A9sultat.pdf"),
    ("Content-Disposition", 'attachment; filename="=?utf-8?q?CR=C3=A9.pdf?="'),
    ("Content-Type", "text/plain; charset"),  # a defect
    ("From", "=?iso-8859-1?q?Dr_L=E9a_Martin?= <lea.martin@legacy.example>"),
    ("To", "undisclosed-recipients:;"),
    ("Subject", "XDM/1.0/DDM+CR d'examens biologiques LEFÈVRE François 02/11/1948"),
    ("Date", "Mon, 30 Nov 2026 01:45:59 +0000"),
    ("Date", "not a date"),
    ("MIME-Version", "1.0 (produced by a legacy client)"),
]


def _fresh(name: str, value: str) -> object:
    return email.policy.default.header_factory(name, value)


def _same(name: str, value: str) -> None:
    fresh = _fresh(name, value)
    for _ in range(2):  # the first call parses, the second is remembered
        got = mime.POLICY.header_factory(name, value)
        assert str(got) == str(fresh)
        assert got.name == name
        assert type(got).__mro__[1] is type(fresh).__mro__[1]  # e.g. ContentTypeHeader
        assert [type(d) for d in got.defects] == [type(d) for d in fresh.defects]
        assert got.fold(policy=mime.WIRE) == fresh.fold(policy=email.policy.SMTP)
        if hasattr(fresh, "params"):
            assert dict(got.params) == dict(fresh.params)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "value"), SAMPLES)
def test_remembered_headers_read_and_fold_as_fresh_ones(name: str, value: str) -> None:
    _same(name, value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.text(min_size=0, max_size=120).filter(
    lambda v: "\r" not in v and "\n" not in v))
def test_any_header_value_reads_as_a_fresh_parse(name: str, value: str) -> None:
    try:
        _fresh(name, value)
    except Exception as exc:  # a value the package itself refuses is refused alike
        with pytest.raises(type(exc)):
            mime.POLICY.header_factory(name, value)
        return
    _same(name, value)


def test_a_whole_message_serialises_as_with_the_standard_policies() -> None:
    raw = (b"From: =?utf-8?q?L=C3=A9a?= <lea@legacy.example>\r\nTo: a@b.example\r\n"
           b"Subject: r\xc3\xa9sultats\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
           b'--b1\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\nbonjour\r\n'
           b'--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; '
           b'filename="CR0001.PDF"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n'
           b"--b1--\r\n")
    for _ in range(2):
        ours = mime.parse(raw)
        theirs = email.message_from_bytes(raw, policy=email.policy.default)
        assert mime.to_bytes(ours) == theirs.as_bytes(policy=email.policy.SMTP)
        assert [p.get_content_type() for p in ours.walk()] == [
            p.get_content_type() for p in theirs.walk()]
        assert [p.get_filename() for p in ours.walk()] == [
            p.get_filename() for p in theirs.walk()]


def test_the_memory_is_bounded() -> None:
    registry = mime.POLICY.header_factory
    for n in range(3 * registry.ENTRIES):
        registry("Subject", f"subject {n}")
        assert len(registry._parsed) <= registry.ENTRIES
    long_value = "x" * (registry.LONGEST + 1)
    registry("Subject", long_value)
    assert ("Subject", long_value) not in registry._parsed
    assert str(registry("Subject", long_value)) == long_value


def test_a_header_keeps_the_spelling_of_its_name() -> None:
    """Written back as it was named: 'content-type' and 'Content-Type' are two entries."""
    value = "text/plain; charset=us-ascii; x-spelling=1"
    assert mime.POLICY.header_factory("content-type", value).name == "content-type"
    assert mime.POLICY.header_factory("Content-Type", value).name == "Content-Type"
