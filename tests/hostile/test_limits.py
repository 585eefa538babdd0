"""Size and shape limits: oversize, too many recipients, 10,000 headers, 1 MB header lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    letter,
    never_delivered,
    parsed,
    reasons,
    run,
    sealed,
    settled,
    transaction,
)

LIMITS = {"limits": {"max_message_size": 256 * 1024, "max_recipients": 3}}


def _big(msgid: str) -> bytes:
    head = f"From: {OP_A}\r\nTo: {TRUST['dupont']}\r\nMessage-ID: {msgid}\r\n\r\n".encode()
    body = os.urandom(200 * 1024).hex().encode()  # 400 KB of text, lines under 1000 octets
    return head + b"\r\n".join(body[i:i + 76] for i in range(0, len(body), 76)) + b"\r\n"


@pytest.mark.parametrize("announced", [True, False], ids=["size-announced", "size-unannounced"])
@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_oversize_message_is_refused_552(world: World, tmp_path: Path, side: str,
                                         announced: bool) -> None:
    async def scenario(h: Harness) -> None:
        sender, rcpt = (ADDR["dupont"], OP_A) if side == "legacy" else (OP_A, TRUST["dupont"])
        s = await transaction(h, side, sender, [rcpt], _big("<big@x.example>"),
                              client="hopital-a-client", size_option=announced)
        refusal = s.mail if announced else s.data  # SIZE= is checked at MAIL (RFC 1870)
        assert refusal.startswith("552 5.3.4"), (s.mail, s.data)
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<big@x.example>")
    run(world, tmp_path, scenario, overrides=LIMITS)


@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_too_many_recipients_are_refused_452_and_the_rest_delivered(
        world: World, tmp_path: Path, side: str) -> None:
    """RFC 5321 §4.5.3.1.10: 452 for the extra recipients, which the client sends later."""
    async def scenario(h: Harness) -> None:
        if side == "legacy":
            rcpts = [f"dr.{n}@hopital-a.mssante.example" for n in range(5)]
            raw = sealed(world, "dupont", letter(ADDR["dupont"], ", ".join(rcpts), b"Bonjour",
                                                 msgid="<many@x.example>").as_bytes())
            sender = ADDR["dupont"]
        else:
            rcpts = [TRUST[u] for u in ("dupont", "martin", "petit", "durand", "biolab")]
            raw = letter(OP_A, ", ".join(rcpts), "Bonjour", msgid="<many@x.example>").as_bytes()
            sender = OP_A
        s = await transaction(h, side, sender, rcpts, raw, client="hopital-a-client")
        assert [r[:9] for r in s.rcpt] == ["250 2.1.5"] * 3 + ["452 4.5.3"] * 2
        assert s.data.startswith("250 2.0.0")
        await settled(h, s.queue_id, State.DELIVERED)
        peer = h.op_a if side == "legacy" else h.hub
        if side == "legacy":
            got = await arrived(h.op_a, "<many@x.example>")
            assert sorted(got.rcpt_tos) == sorted(rcpts[:3])
        else:
            await arrived(h.hub, None, rcpt=ADDR["petit"])
            assert sorted(r for m in peer.received for r in m.rcpt_tos) == sorted(
                [ADDR["dupont"], ADDR["martin"], ADDR["petit"]])
    run(world, tmp_path, scenario, overrides=LIMITS)


def _headers(n: int) -> bytes:
    return b"".join(b"X-Filler-%d: v\r\n" % i for i in range(n))


def _folded(name: bytes, size: int) -> bytes:
    """One header field of ``size`` bytes folded over short lines (each under 1000 octets)."""
    addrs = [b"user%d@hopital-a.mssante.example" % i for i in range(size // 34)]
    return name + b": " + b",\r\n ".join(addrs) + b"\r\n"


SHAPES = {
    "10000-headers": _headers(10_000),
    "1MB-folded-to": _folded(b"To", 1_000_000),
    "1MB-folded-notification-to": _folded(b"Disposition-Notification-To", 1_000_000),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_monstrous_header_block_from_the_trust_side_is_bounced_quickly(
        world: World, tmp_path: Path, shape: str) -> None:
    """Stored (the listener parses nothing), then refused by the bounded reader in well under
    a second: a DSN to the sender, nothing for the legacy user, workers not held up."""
    async def scenario(h: Harness) -> None:
        raw = (SHAPES[shape] + f"From: {OP_A}\r\nTo: {TRUST['dupont']}\r\n"
               "Message-ID: <shape@hopital-a.mssante.example>\r\nSubject: x\r\n\r\n"
               "Résultats\r\n".encode())
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], raw,
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED, timeout=10)
        assert reasons(h, s.queue_id)[0].startswith("message_format:")
        dsn = await arrived(h.op_a, None, rcpt=OP_A, timeout=10)
        assert parsed(dsn.data).get_content_type() == "multipart/report"
        assert b"Status: 5.6.0" in dsn.data
        assert h.hub.received == []
    run(world, tmp_path, scenario)


def test_monstrous_header_block_from_the_legacy_side_is_bounced(world: World,
                                                                tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        inner = letter(ADDR["dupont"], OP_A, b"Bonjour", msgid="<shape@x.example>").as_bytes()
        raw = _headers(10_000) + sealed(world, "dupont", inner)
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], raw)
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED, timeout=10)
        assert reasons(h, s.queue_id)[0].startswith("message_format:")
        await arrived(h.hub, None, rcpt=ADDR["dupont"])  # the sealed notice
        assert h.op_a.received == []
    run(world, tmp_path, scenario)


@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_one_megabyte_header_line_is_refused_at_data(world: World, tmp_path: Path,
                                                     side: str) -> None:
    """RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets; this one is refused whole."""
    async def scenario(h: Harness) -> None:
        sender, rcpt = (ADDR["dupont"], OP_A) if side == "legacy" else (OP_A, TRUST["dupont"])
        raw = (b"Subject: " + b"A" * 1_000_000 + b"\r\nMessage-ID: <line@x.example>\r\n\r\nx\r\n")
        s = await transaction(h, side, sender, [rcpt], raw, client="hopital-a-client")
        assert s.data.startswith("554 5.6.0"), s.data
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<line@x.example>")
    run(world, tmp_path, scenario)
