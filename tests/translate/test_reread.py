"""A small message handed to a stage that parses it again is kept, made the tree the parser
gives for its bytes (``mime.to_handover(reread=True)``): what the stage then does must be
exactly what it does with the bytes — the tree field for field, and open → compose and
compose → seal byte for byte."""

from __future__ import annotations

import contextlib
import copy
import email.generator
import itertools
from collections.abc import Iterator
from email.message import EmailMessage, Message
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from gateway.crypto.legacy import LegacyCrypto
from gateway.documents.codes import load_tables
from gateway.errors import PasserelleError
from gateway.mail import mime, write
from gateway.mail.handover import HandedOver, Handover
from gateway.translate import legacy_to_trust, trust_to_legacy
from gateway.translate.trace import TraceRecord
from tests.translate.test_compose import BOOK, LAB, NOW
from tests.translate.test_open import SIGNER, FakeCipher, armour

SETTINGS = settings(max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@contextlib.contextmanager
def boundaries() -> Iterator[None]:
    """Boundaries drawn in order, not at random: two runs write the same bytes."""
    counter = itertools.count()
    with mock.patch.object(email.generator.Generator, "_make_boundary",
                           classmethod(lambda cls, text=None: f"==b{next(counter)}==")), \
            mock.patch.object(legacy_to_trust, "make_msgid", lambda **_: "<id@x.example>"), \
            mock.patch.object(trust_to_legacy, "make_msgid", lambda **_: "<id@x.example>"):
        yield


LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", ""])
WORDS = st.sampled_from(["Résultats", "bonjour", "-- ", "--outer", "--inner", "=?utf-8?q?x?=",
                         "a" * 90, "œuvre", "x\x85y", "", " ", "\t", "dr.x@hopital.example",
                         "Dr X <dr.x@hopital-a.mssante.example>", '"Dupont, J" <j@x.example>'])
TEXT = st.lists(st.tuples(WORDS | st.text(max_size=30), LINE_ENDS), max_size=8).map(
    lambda pairs: "".join(a + b for a, b in pairs))
HEADER = st.lists(WORDS | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"),
                                  max_size=20), min_size=1, max_size=4).map(" ".join)


def _leaf(draw: st.DrawFn) -> EmailMessage:
    part = EmailMessage(policy=mime.POLICY)
    kind = draw(st.sampled_from(["text", "bytes", "empty"]))
    if kind == "text":
        part.set_content(draw(TEXT), cte=draw(st.sampled_from(
            ["quoted-printable", "base64", "8bit", "7bit"])).replace(
            "7bit", "quoted-printable"))
    elif kind == "bytes":
        part.set_content(draw(st.binary(max_size=300)), maintype="application",
                         subtype=draw(st.sampled_from(["pdf", "octet-stream"])),
                         cte=draw(st.sampled_from(["base64", "quoted-printable"])),
                         disposition="attachment",
                         filename=draw(st.sampled_from(["a.pdf", "résultat.pdf", "x y.bin"])))
    else:
        part["Content-Type"] = "text/plain"
    return part


@st.composite
def plain(draw: st.DrawFn) -> EmailMessage:
    """A plaintext MIME entity: a leaf, or a multipart (maybe nested) of leaves."""
    if draw(st.booleans()):
        return _leaf(draw)
    msg = EmailMessage(policy=mime.POLICY)
    msg["Content-Type"] = "multipart/mixed"
    msg.set_boundary("inner")
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 4)) == 0:
            nested = EmailMessage(policy=mime.POLICY)
            nested["Content-Type"] = "multipart/alternative"
            nested.set_boundary("nested")
            nested.attach(_leaf(draw))
            msg.attach(nested)
        else:
            msg.attach(_leaf(draw))
    if draw(st.integers(0, 5)) == 0:
        msg.preamble = "preamble\n"
    return msg


def _headers(draw: st.DrawFn, msg: Message) -> None:
    msg["From"] = draw(st.sampled_from([LAB, f"Labo <{LAB}>", "other@x.example"]))
    msg["To"] = draw(st.sampled_from(["Dr X <dr.x@hopital-a.mssante.example>",
                                      "jean.dupont@legacy.mssante.example, a@b.example"]))
    for name in ("Subject", "Cc", "References", "Date", "Message-ID", "X-Other"):
        if draw(st.booleans()):
            with contextlib.suppress(PasserelleError):  # a value the package cannot write
                msg[name] = draw(HEADER)


@st.composite
def received(draw: st.DrawFn) -> bytes:
    """A legacy message as legacy software writes it: inline-armoured body and ``.pgp``
    attachments, or PGP/MIME (maybe within a multipart/mixed)."""
    shape = draw(st.sampled_from(["inline", "pgp-mime", "nested-pgp-mime"]))
    msg = EmailMessage(policy=mime.POLICY)
    if shape == "inline":
        body = draw(TEXT).encode(draw(st.sampled_from(["utf-8", "cp1252"])), "replace")
        msg.set_content(armour(body), maintype="text", subtype="plain", cte="7bit")
        for n in range(draw(st.integers(0, 2))):
            msg.add_attachment(armour(draw(st.binary(max_size=200))),
                               maintype="application", subtype="octet-stream",
                               filename=f"CR{n}.pdf.pgp")
        if msg.is_multipart():
            msg.set_boundary("outer")
    else:
        inner = draw(plain()).as_bytes(policy=mime.WIRE if draw(st.booleans()) else mime.POLICY)
        encrypted = EmailMessage(policy=mime.POLICY)
        encrypted["Content-Type"] = 'multipart/encrypted; protocol="application/pgp-encrypted"'
        encrypted.set_boundary("enc")
        control = EmailMessage(policy=mime.POLICY)
        control.set_content(b"Version: 1\n", maintype="application", subtype="pgp-encrypted",
                            cte="7bit")
        data = EmailMessage(policy=mime.POLICY)
        data.set_content(armour(inner), maintype="application", subtype="octet-stream",
                         cte="7bit")
        encrypted.attach(control)
        encrypted.attach(data)
        if shape == "pgp-mime":
            msg = encrypted
        else:
            msg["Content-Type"] = "multipart/mixed"
            msg.set_boundary("outer")
            msg.attach(encrypted)
    _headers(draw, msg)
    try:
        return msg.as_bytes(policy=mime.WIRE)
    except PasserelleError:  # a value the package cannot write (a Message-ID in words…)
        assume(False)
        raise


def _dump(msg: Message) -> list[Any]:
    return [(type(p), list(p.raw_items()), p.get_payload() if not p.is_multipart()
             else len(p.get_payload()), p.preamble, p.epilogue, p.get_charset(),
             p.get_default_type(), p.get_unixfrom(), [type(d) for d in p.defects])
            for p in msg.walk()]


def _outcome(fn: Any) -> tuple[Any, ...]:
    try:
        return ("ok", *fn())
    except PasserelleError as exc:
        return ("refused", type(exc), str(exc))


@SETTINGS
@given(plain(), st.booleans())
def test_a_kept_message_is_the_tree_its_bytes_parse_to(msg: EmailMessage, named: bool) -> None:
    if not named:
        for part in msg.walk():
            if part.is_multipart():
                part.del_param("boundary")
    twin = copy.deepcopy(msg)
    with boundaries():
        handed = mime.to_handover(msg, reread=True)
    with boundaries():
        expected = mime.to_bytes(twin)  # what the writer gives when nothing is kept
    data = b"".join(handed.pieces())
    assert data == expected
    kept = handed.take_read()
    event(f"kept: {kept is not None}")
    if kept is not None:
        assert _dump(kept) == _dump(mime.parse(data))
        assert [(p.content_type, p.filename, p.charset, p.is_attachment, p.data,
                 p.base64_text() is None) for p in mime.leaves(kept)] == [
            (p.content_type, p.filename, p.charset, p.is_attachment, p.data,
             p.base64_text() is None) for p in mime.leaves(mime.parse(data))]


def _compose(handed: Handover) -> tuple[bytes, bytes]:
    trace = TraceRecord("m1", "to_trust", clock=lambda: 0.0)  # compared byte for byte
    with boundaries():
        draft = legacy_to_trust.compose(
            handed, sender=BOOK.by_legacy(LAB), book=BOOK, envelope_from=LAB,
            tables=load_tables(), now=NOW, trace=trace, signer_fpr=SIGNER,
            domain="legacy.mssante.example")
    return draft.message, trace.to_bytes()


@SETTINGS
@given(received())
def test_opened_then_composed_as_from_the_opened_bytes(raw: bytes) -> None:
    try:
        with boundaries():
            opened = LegacyCrypto(FakeCipher()).open(raw, expected_signer=SIGNER)
    except PasserelleError:
        return  # refused by open: nothing handed on
    handed = opened.handed
    event(f"kept: {handed._read is not None}")
    twin = Handover.of(b"".join(handed.pieces()))
    assert _outcome(lambda: _compose(handed)) == _outcome(lambda: _compose(twin))


def _seal(handed: Handover) -> tuple[bytes]:
    with boundaries():
        return (LegacyCrypto(FakeCipher()).seal(handed, recipient="B" * 40),)


@SETTINGS
@given(received())
def test_composed_then_sealed_as_from_the_draft_bytes(raw: bytes) -> None:
    """Trust → legacy: compose's draft is sealed as its bytes would be."""
    content = Handover.of(raw)
    user = BOOK.by_legacy(LAB)
    try:
        with boundaries():
            draft = trust_to_legacy.compose(content, recipient=user, book=BOOK, now=NOW,
                                            trace=TraceRecord("m1", "to_legacy"),
                                            domain="legacy.mssante.example")
    except PasserelleError:
        return
    handed = draft.handed
    event(f"kept: {handed._read is not None}")
    twin = Handover.of(b"".join(handed.pieces()))
    assert _outcome(lambda: _seal(handed)) == _outcome(lambda: _seal(twin))


def test_a_letter_is_kept_and_a_large_message_is_not() -> None:
    letter = EmailMessage(policy=mime.POLICY)
    letter["Subject"] = "Résultats"
    letter.set_content(armour(b"Bonjour\n" * 100), maintype="text", subtype="plain",
                       cte="7bit")
    letter.add_attachment(armour(b"x" * (mime.REREAD + 1)), maintype="application",
                          subtype="octet-stream", filename="big.bin.pgp")
    small = copy.deepcopy(letter)
    small.get_payload().pop()
    crypto = LegacyCrypto(FakeCipher())
    kept = crypto.open(small.as_bytes(policy=mime.WIRE), expected_signer=SIGNER).handed
    assert kept._read is not None
    mime.parse(kept)
    assert kept._read is None
    with pytest.raises(HandedOver):  # the bytes let go with the tree taken
        b"".join(kept.slices())
    large = crypto.open(letter.as_bytes(policy=mime.WIRE), expected_signer=SIGNER).handed
    assert large._read is None  # written letting each part go, parsed from its bytes


def test_a_kept_tree_goes_with_the_bytes_taken_whole() -> None:
    msg = mime.new()
    msg.set_content("x\n")
    handed = mime.to_handover(msg, reread=True)
    assert handed._read is not None
    again = handed.again()
    assert again._read is None  # one reader takes the tree
    assert handed.take() == again.take()
    assert handed._read is None


def test_a_delimiter_in_a_text_is_parsed_from_the_bytes() -> None:
    msg = mime.new()
    msg.make_mixed()
    msg.set_boundary("b")
    part = mime.new()
    part.set_content("one\n--b\ntwo\n", cte="8bit")
    msg.attach(part)
    handed = mime.to_handover(msg, reread=True)
    assert handed._read is None
    assert len(mime.leaves(mime.parse(handed))) == 2  # as the bytes read


def test_a_folded_field_is_remembered_on_its_header() -> None:
    header = mime.POLICY.header_factory("Subject", "Résultats " * 12)
    first = write._folded("Subject", header)
    assert header.__dict__["_wire_folded"] == first
    assert write._folded("Subject", header) is first
    assert first == mime.WIRE.fold_binary("Subject", header)
