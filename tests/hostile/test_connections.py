"""Hostile volume at the SMTP listeners: sessions held open, descriptors exhausted, the same
recipient a hundred times, and SIZE counted as RFC 1870 counts it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import log as ops_logging
from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    letter,
    run,
    sealed,
    settled,
    transaction,
)


def _events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, buffer.getvalue().splitlines()) if r.get("event") == name]


def _refusals(h: Harness, listener: str) -> float:
    return sum(s.value for f in h.gateway.metrics.smtp_rejections.collect() for s in f.samples
               if s.name.endswith("_total") and s.labels == {
                   "listener": listener, "code": "421", "reason": "too_many_connections"})


class Client:
    """A raw TCP session from a chosen loopback address: what it was told first."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 greeting: bytes) -> None:
        self.reader, self.writer, self.greeting = reader, writer, greeting

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        greeting = await asyncio.wait_for(reader.readline(), 10)
        return cls(reader, writer, greeting)

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 10) == b""

    def close(self) -> None:
        self.writer.close()


@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_sessions_over_the_limits_get_421_and_are_closed(world: World, tmp_path: Path,
                                                         side: str) -> None:
    """Three sessions per client address, five in all: the next one from that address, and
    any one past five, is told `421 4.7.0` and closed; a slot freed is taken again; the
    refusals are counted each and logged once for the burst."""
    buffer = io.StringIO()

    async def scenario(h: Harness) -> None:
        port = h.legacy_port if side == "legacy" else h.trust_port
        first = [await Client.open(port) for _ in range(3)]
        assert all(c.greeting.startswith(b"220 ") for c in first)
        for _ in range(10):  # one client holding on
            extra = await Client.open(port)
            assert extra.greeting.startswith(b"421 4.7.0"), extra.greeting
            assert await extra.closed_by_server()
        other = [await Client.open(port, "127.0.0.2") for _ in range(2)]
        assert all(c.greeting.startswith(b"220 ") for c in other)
        late = await Client.open(port, "127.0.0.3")  # five open: the listener is full
        assert late.greeting.startswith(b"421 4.7.0"), late.greeting
        assert await late.closed_by_server()
        assert _refusals(h, side) == 11
        first[0].close()
        await asyncio.sleep(0.3)
        again = await Client.open(port, "127.0.0.3")
        assert again.greeting.startswith(b"220 "), again.greeting
        lines = [r for r in _events(buffer, "smtp.too_many_connections")
                 if r["listener"] == side]
        assert len(lines) == 1, lines  # one line for the burst, not one per connection
        for c in [*first[1:], *other, again]:
            c.close()
        await asyncio.sleep(0.3)
    ops_logging.configure("info", stream=buffer)
    try:
        run(world, tmp_path, scenario, overrides={
            "limits": {"max_connections": 5, "max_connections_per_client": 3}})
    finally:
        ops_logging.configure("info")


def test_an_idle_session_is_told_421_and_its_slot_freed(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        idle = await Client.open(h.legacy_port)
        assert idle.greeting.startswith(b"220 ")
        refused = await Client.open(h.legacy_port)
        assert refused.greeting.startswith(b"421 4.7.0")
        said = await asyncio.wait_for(idle.reader.readline(), 10)
        assert said.startswith(b"421 4.4.2"), said
        assert await idle.closed_by_server()
        await asyncio.sleep(0.2)
        fresh = await Client.open(h.legacy_port)
        assert fresh.greeting.startswith(b"220 ")
        fresh.close()
        await asyncio.sleep(0.2)
    run(world, tmp_path, scenario, overrides={
        "limits": {"max_connections_per_client": 1, "idle_timeout": 1}})


def test_a_slow_but_steady_transfer_outlives_the_idle_timeout(world: World,
                                                             tmp_path: Path) -> None:
    """The timeout is on silence: a DATA whose lines keep coming for three times the idle
    timeout is received whole and answered 250."""
    async def scenario(h: Harness) -> None:
        c = await Client.open(h.legacy_port)

        async def say(line: bytes) -> bytes:
            c.writer.write(line + b"\r\n")
            reply = await asyncio.wait_for(c.reader.readline(), 10)
            while reply[3:4] == b"-":
                reply = await asyncio.wait_for(c.reader.readline(), 10)
            return reply
        assert (await say(b"EHLO slow.example")).startswith(b"250")
        assert (await say(f"MAIL FROM:<{ADDR['dupont']}>".encode())).startswith(b"250")
        assert (await say(f"RCPT TO:<{OP_A}>".encode())).startswith(b"250")
        assert (await say(b"DATA")).startswith(b"354")
        c.writer.write(b"Message-ID: <slow@medical33.legacy.example>\r\n\r\n")
        for i in range(12):  # 3 s of lines, 0.25 s apart, against a 1 s idle timeout
            c.writer.write(b"ligne %d\r\n" % i)
            await asyncio.sleep(0.25)
        reply = await say(b".")
        assert reply.startswith(b"250 2.0.0"), reply
        c.close()
    run(world, tmp_path, scenario, overrides={"limits": {"idle_timeout": 1}})


_HOLDER = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
held = []
for _ in range(count):
    s = socket.socket()
    s.connect(("127.0.0.1", port))  # completed by the kernel, waiting to be accepted
    held.append(s)
print("connected", flush=True)
sys.stdin.readline()
"""


def test_accept_failures_are_logged_once_per_burst(world: World, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """No descriptor left (EMFILE) while clients keep connecting: the loop fails to accept
    every second; that is one log line for the burst, no traceback, and mail flows again
    once descriptors are back."""
    buffer = io.StringIO()

    async def scenario(h: Harness) -> None:
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(h.legacy_port), "40"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdin is not None and holder.stdout is not None
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            used = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (used + 1, hard))
            holder.stdin.write("go\n")
            holder.stdin.flush()
            await asyncio.sleep(3.5)  # the loop tries again every second
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "connected"
        holder.stdin.write("done\n")
        holder.stdin.flush()
        await asyncio.to_thread(holder.wait, 10)
        lines = _events(buffer, "smtp.accept_failed")
        assert len(lines) == 1, lines
        assert lines[0]["reason"] == "emfile"
    ops_logging.configure("info", stream=buffer)
    try:
        run(world, tmp_path, scenario)
    finally:
        ops_logging.configure("info")
    # not asyncio's own line (with a traceback) for each attempt
    assert not [r for r in caplog.records if "out of system resource" in r.getMessage()]
    assert "out of system resource" not in buffer.getvalue()


@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_a_recipient_given_a_hundred_times_is_one_recipient(world: World, tmp_path: Path,
                                                            side: str) -> None:
    """The same address 100 times, its domain in any case (and, for a user of ours, its
    local part too): one recipient stored, one translation, one copy delivered."""
    msgid = f"<dup-{side}@x.example>"

    async def scenario(h: Harness) -> None:
        if side == "legacy":
            local, _, domain = OP_A.partition("@")
            # (a quoted local part that quotes nothing is the same address)
            quoted = '"' + local + '"'
            rcpts = [f"{quoted if i % 5 == 4 else local}@"
                     f"{domain.upper() if i % 2 else domain}" for i in range(100)]
            raw = sealed(world, "dupont", letter(ADDR["dupont"], OP_A, b"Bonjour",
                                                 msgid=msgid).as_bytes())
            sender = ADDR["dupont"]
        else:
            local, _, domain = TRUST["durand"].partition("@")
            # our own user: the address book reads the local part without case too
            rcpts = [f"{local.swapcase() if i % 3 == 2 else local}@"
                     f"{domain.title() if i % 2 else domain}" for i in range(100)]
            raw = letter(OP_A, TRUST["durand"], "Bonjour", msgid=msgid).as_bytes()
            sender = OP_A
        s = await transaction(h, side, sender, rcpts, raw, client="hopital-a-client")
        assert all(r.startswith("250 2.1.5") for r in s.rcpt), set(s.rcpt)
        assert s.data.startswith("250 2.0.0"), s.data
        entry, _ = h.gateway.spool.show(s.queue_id)
        assert len(entry.recipients) == 1
        await settled(h, s.queue_id, State.DELIVERED)
        if side == "legacy":
            await arrived(h.op_a, msgid)
            copies = [r for r in h.op_a.received if msgid.encode() in r.data]
            assert [c.rcpt_tos for c in copies] == [(OP_A,)]
        else:
            await arrived(h.hub, None, rcpt=ADDR["durand"])
            assert [r.rcpt_tos for r in h.hub.received] == [(ADDR["durand"],)]
    run(world, tmp_path, scenario)


LIMIT = 64 * 1024


def _dotted(size: int, msgid: str) -> bytes:
    """A trust-space letter of exactly ``size`` octets (CRLFs counted) whose every body line
    starts with a dot: on the wire each of those dots is doubled (RFC 5321 4.5.2)."""
    head = (f"From: {OP_A}\r\nTo: {TRUST['dupont']}\r\nSubject: points\r\n"
            f"Message-ID: {msgid}\r\n\r\n").encode()
    line = b"." + b"x" * 61 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    if rest:
        body += b"." + b"y" * (rest - 3) + b"\r\n" if rest >= 3 else b"\r\n" * (rest // 2)
    data = head + body
    assert len(data) == size
    return data


def test_size_is_counted_as_rfc_1870_says(world: World, tmp_path: Path) -> None:
    """A message of exactly the limit is accepted although its doubled dots make it longer
    on the wire; one octet more is refused `552 5.3.4`, announced (at MAIL) or not."""
    async def scenario(h: Harness) -> None:
        exact = _dotted(LIMIT, "<exact@hopital-a.mssante.example>")
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], exact,
                              client="hopital-a-client")
        assert s.mail.startswith("250"), s.mail
        assert s.data.startswith("250 2.0.0"), s.data
        over = _dotted(LIMIT + 1, "<over@hopital-a.mssante.example>")
        for announced in (True, False):
            s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], over,
                                  client="hopital-a-client", size_option=announced)
            refusal = s.mail if announced else s.data
            assert refusal.startswith("552 5.3.4"), (s.mail, s.data)
        got = await arrived(h.hub, None, rcpt=ADDR["dupont"])
        assert got is not None
    run(world, tmp_path, scenario, overrides={"limits": {"max_message_size": LIMIT}})
