"""A message handed over between stages (from memory pieces or its file) reads as the bytes
it holds, is let go once read, and every stage given one does what it does with the bytes."""

from __future__ import annotations

import email.policy
import hashlib
import itertools
import json
import os
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config, spill
from gateway.crypto import smime
from gateway.crypto.world import USERS, World
from gateway.errors import SmimeError
from gateway.mail import mime
from gateway.mail.handover import SLICE, HandedOver, Handover
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translator
from tests.conftest import legacy_client

NOW = datetime.now(UTC)
ADDR = {u.key: u.legacy_address for u in USERS}


def cut(data: bytes, at: list[int]) -> list[bytes]:
    bounds = [0, *sorted({min(a, len(data)) for a in at}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=300) | st.sampled_from([b"A: b\r\n\r\nbody", b"A: b\n\nx",
                                                  b"no end", b"A: b\r\n\r"]),
       st.lists(st.integers(0, 300), max_size=5))
def test_read_as_the_bytes_it_holds(data: bytes, at: list[int]) -> None:
    handed = Handover(cut(data, at))
    assert b"".join(handed.slices()) == data
    assert handed.digest() == hashlib.sha256(data).hexdigest()
    assert handed.size == len(data)
    m = mime._HEADER_END.search(data)
    assert handed.head() == (data[: m.end()] if m else data)
    assert b"".join(handed.pieces(release=True)) == data
    with pytest.raises(HandedOver):
        list(handed.slices())


def test_a_file_is_read_in_slices_and_large_pieces_are_sliced(tmp_path: Path) -> None:
    data = os.urandom(3 * SLICE + 5)
    path = tmp_path / "m.eml"
    spill.write_bytes(path, data)
    from_file = Handover.of_file(path)
    assert from_file.size == len(data)
    assert from_file.digest() == hashlib.sha256(data).hexdigest()
    assert all(len(s) <= SLICE for s in from_file.slices())
    assert from_file.take() == data
    in_memory = Handover.of(data)
    assert [len(s) for s in in_memory.slices(release=True)] == [SLICE] * 3 + [5]
    with pytest.raises(HandedOver):
        in_memory.take()


def built(attachments: int = 2) -> EmailMessage:
    m = mime.new()
    m["From"] = "a@b.example"
    m["Subject"] = "Pièces"
    m.set_content("Bonjour\n" * 50)
    for n in range(attachments):
        m.add_attachment(random.Random(n).randbytes(700_000), maintype="application",
                         subtype="octet-stream", filename=f"p{n}.bin")
    m.set_boundary("fixed-boundary")
    return m


def test_a_message_handed_in_pieces_is_written_and_parsed_as_its_bytes() -> None:
    expected = mime.to_bytes(built())
    handed = mime.to_handover(built())
    assert len(list(handed.pieces())) > 1
    assert b"".join(handed.pieces()) == expected
    assert mime.to_bytes(mime.parse(handed)) == mime.to_bytes(mime.parse(expected))
    with pytest.raises(HandedOver):  # parsing let it go
        handed.take()


def test_a_draft_handed_in_pieces_is_signed_as_its_bytes(translator: Translator) -> None:
    signer = translator.smime
    assert isinstance(signer, smime.Smime)
    signed = smime.sign(mime.to_handover(built()), signer.identity)
    reference = smime.sign(mime.to_bytes(built()), signer.identity)
    smime._verify(signed, anchors=signer.anchors, at=NOW)
    ours, theirs = (smime._head(m)[0] for m in (signed, reference))
    assert ours.split(b"boundary=")[0] == theirs.split(b"boundary=")[0]
    assert signer.verify(signed, at=NOW)[0].take() == signer.verify(reference, at=NOW)[0].take()


def test_a_draft_with_bare_line_ends_is_signed_from_its_bytes(translator: Translator) -> None:
    signer = translator.smime
    assert isinstance(signer, smime.Smime)
    lf = b"Content-Type: text/plain\n\nline one\nline two\r\n"
    signed = smime.sign(Handover(cut(lf, [20, 27])), signer.identity)
    assert b"\r\n\r\nline one\r\nline two\r\n" in signed
    with pytest.raises(SmimeError):
        smime.sign(Handover([b"Content-Type: text/plain\r\n\r\n", b"caf\xc3\xa9\r\n"]),
                   signer.identity)


@pytest.fixture(scope="module")
def translator(world: World) -> Translator:
    return build_translator(config.load(world.config))


def test_a_legacy_message_from_its_file_translates_as_from_its_bytes(
        world: World, translator: Translator, tmp_path: Path) -> None:
    m = EmailMessage()
    m["From"] = ADDR["dupont"]
    m["To"] = "dr.x@hopital-a.mssante.example"
    m["Subject"] = "Radio"
    m["Message-ID"] = "<handover-1@medical33.legacy.example>"
    m.set_content("Ci-joint la radio.".encode("mac_roman"), maintype="text", subtype="plain")
    m.add_attachment(os.urandom(1_500_000), maintype="image", subtype="jpeg",
                     filename="radio.jpg")
    raw = legacy_client(world, "dupont").seal(m.as_bytes(),
                                              recipient=world.fingerprints["gateway"])
    path = tmp_path / "in.eml"
    spill.write_bytes(path, raw)
    envelope = Envelope(ADDR["dupont"], ("dr.x@hopital-a.mssante.example",))
    from_bytes = translator.to_trust(raw, envelope, now=NOW)
    from_file = translator.to_trust(Handover.of_file(path), envelope, now=NOW)

    def steps(t: object) -> list[tuple[str, str | None, str | None]]:
        return [(s.stage, s.input_digest, s.output_digest)
                for s in t.trace.steps]  # type: ignore[attr-defined]

    # the same digests at every stage before the draft (whose boundary is drawn afresh):
    # compose reads the same, writes the draft, which sign reads
    assert steps(from_file)[:-2] == steps(from_bytes)[:-2]
    assert steps(from_file)[-2][:2] == steps(from_bytes)[-2][:2]
    for t in (from_file, from_bytes):
        assert steps(t)[-2][2] == steps(t)[-1][1]  # compose's output is sign's input
    assert steps(from_file)[0][1] == hashlib.sha256(raw).hexdigest()
    contents = [translator.smime.verify(t.message, at=NOW)[0] for t in (from_bytes, from_file)]
    trees = [mime.parse(c) for c in contents]

    def parts(tree: object) -> list[tuple[str, str | None, object]]:
        out: list[tuple[str, str | None, object]] = []
        for p in mime.leaves(tree):  # type: ignore[arg-type]
            data: object = p.data
            if p.filename == "passerelle-trace.json":  # each step has its own time
                data = [{k: v for k, v in step.items() if k != "at"}
                        for step in json.loads(p.data)["steps"]]
            out.append((p.content_type, p.filename, data))
        return out

    assert parts(trees[0]) == parts(trees[1])
    assert spill.read_bytes(path) == raw  # the file is read, not consumed


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=300) | st.sampled_from([b"A: b\r\n\r\nbody", b"A: b\n\nx"]),
       st.lists(st.integers(0, 300), max_size=4))
def test_views_of_another_buffer_read_as_their_bytes_once_per_handover(
        data: bytes, at: list[int]) -> None:
    held = b"<" + data + b">"  # e.g. the received message the signed entity is within
    bounds = [0, *sorted({min(a, len(data)) for a in at}), len(data)]
    views = [memoryview(held)[a + 1:b + 1] for a, b in itertools.pairwise(bounds)]
    handed = Handover.of_views(*views)
    other = handed.again()
    assert handed.size == other.size == len(data)
    assert all(isinstance(s, bytes) for s in handed.slices())
    assert b"".join(handed.slices()) == data
    assert handed.digest() == hashlib.sha256(data).hexdigest()
    m = mime._HEADER_END.search(data)
    assert handed.head() == (data[: m.end()] if m else data)
    assert b"".join(handed.pieces(release=True)) == data
    with pytest.raises(HandedOver):
        handed.again()
    assert other.digest() == hashlib.sha256(data).hexdigest()
    assert other.take() == data  # the other reader's, untouched by the first one's release


def test_a_large_view_is_read_in_slices_and_its_digest_shared() -> None:
    data = os.urandom(3 * SLICE + 5)
    handed = Handover.of_views(b"H: v\r\n\r\n", memoryview(data))
    digest = handed.digest()
    again = handed.again()
    assert [len(s) for s in again.slices(release=True)] == [8] + [SLICE] * 3 + [5]
    assert again.digest() == digest == hashlib.sha256(b"H: v\r\n\r\n" + data).hexdigest()
    assert handed.take() == b"H: v\r\n\r\n" + data


def test_trust_content_is_composed_and_sealed_for_each_recipient_from_one_view(
        world: World, translator: Translator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified once, the content is handed to each recipient's compose (a view of the
    received message), each draft to seal: every recipient's output opens with their key,
    and the trace holds the digests of the bytes each stage read."""
    signer = translator.smime
    assert isinstance(signer, smime.Smime)
    m = EmailMessage()
    m["From"] = "Dr X <dr.x@hopital-a.mssante.example>"
    m["To"] = ", ".join(u.trust_address for u in USERS[:2])
    m["Subject"] = "Radio"
    m.set_content("Ci-joint la radio.\n", cte="quoted-printable")
    m.add_attachment(os.urandom(300_000), maintype="image", subtype="jpeg",
                     filename="radio.jpg")
    dr_x = smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                      world.key("hopital-a-signing"))  # the From's own
    raw = smime.sign(m.as_bytes(policy=email.policy.SMTP), dr_x)
    v = smime.verify(raw, anchors=signer.anchors, at=NOW)
    head = smime._head(raw)[0]
    outer = [f for f in smime._header_fields(head)
             if f.split(b":", 1)[0].strip().lower() not in smime._CONTENT_HEADERS]
    content = b"\r\n".join(outer) + b"\r\n" + v.content  # what verify gave as one buffer
    drafts: list[bytes] = []
    seal = translator.legacy.seal_traced

    def recording_seal(message: bytes | Handover, *, recipient: str
                       ) -> tuple[bytes, tuple[str, ...]]:
        assert isinstance(message, Handover)
        drafts.append(b"".join(message.pieces()))
        return seal(message, recipient=recipient)

    monkeypatch.setattr(translator.legacy, "seal_traced", recording_seal)
    envelope = Envelope("dr.x@hopital-a.mssante.example",
                        tuple(u.trust_address for u in USERS[:2]))
    out = translator.to_legacy(raw, envelope, now=NOW)
    assert len(out) == len(drafts) == 2
    for user, t, draft in zip(USERS[:2], out, drafts, strict=True):
        steps = {s.stage: s for s in t.trace.steps}
        assert steps["received"].input_digest == hashlib.sha256(raw).hexdigest()
        assert steps["verify"].output_digest == hashlib.sha256(content).hexdigest()
        assert steps["compose"].input_digest == hashlib.sha256(content).hexdigest()
        assert steps["seal"].input_digest == hashlib.sha256(draft).hexdigest()
        assert steps["seal"].output_digest == hashlib.sha256(t.message).hexdigest()
        opened = legacy_client(world, user.key).open(
            t.message, expected_signer=world.fingerprints["gateway"])
        got = {p.filename or p.content_type: p.data
               for p in mime.leaves(mime.parse(opened.message))}
        want = {p.filename or p.content_type: p.data for p in mime.leaves(mime.parse(draft))}
        assert got == want and want["radio.jpg"] == m.get_payload()[1].get_content()
