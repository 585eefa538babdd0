"""Large messages through the SMTP layer without being held whole: received into a file of
the spill directory, sent from one — over real sockets, with the bytes compared."""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings

from gateway import spill as spilled_files
from gateway.errors import Fate
from gateway.smtp import delivery
from gateway.smtp.delivery import FileMessage, MemoryMessage, Route, deliver
from gateway.smtp.server import Arrival, Limits, Listener, _Handler
from gateway.spill import LARGE


class _Recorder(_Handler):
    """A listener's handler that takes every recipient and records what reached it."""

    side = "legacy"

    def check_recipient(self, address: str) -> None:
        return None


class Received:
    def __init__(self) -> None:
        self.arrivals: list[tuple[Arrival, bytes, int | None]] = []

    async def accept(self, arrival: Arrival) -> str:
        data = arrival.data
        if isinstance(data, Path):  # still there while the listener waits for the spool
            self.arrivals.append((arrival, spilled_files.read_bytes(data),
                                  data.stat().st_mode & 0o777))
        else:
            self.arrivals.append((arrival, bytes(data), None))
        return "Q1"


def _listen(spill: Path, received: Received, *, max_size: int = 30 * 2**20) -> Listener:
    limits = Limits(max_message_size=max_size)
    handler = _Recorder(book=lambda: None, domains=lambda: None,  # type: ignore[arg-type,return-value]
                        accept=received.accept, limits=limits, gateway_domain="gw.example")
    return Listener(handler, host="127.0.0.1", port=0, tls=None, require_starttls=False,
                    hostname="gw.example", limits=limits, spill=spill)


def _letter(size: int) -> bytes:
    """A message with lines that begin with dots (stuffed by the client), of about ``size``."""
    lines = [b"Subject: large", b"", b".a line that begins with a dot", b"..two of them", b"."]
    line = b"x" * 70
    lines += [b"%d %s" % (n, line) for n in range(size // 78)]
    lines += [b".", b"end"]
    return b"\r\n".join(lines) + b"\r\n"


def _session(port: int, messages: list[bytes]) -> list[tuple[int, bytes]]:
    """One SMTP session sending each message in turn: the reply to each DATA."""
    out = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        for data in messages:
            client.mail("s@legacy.example")
            client.rcpt("r@trust.example")
            out.append(client.data(data))
    return out


def _serve(tmp_path: Path, received: Received, sessions: Any, **kw: Any) -> Any:
    spill = tmp_path / "spill"
    spill.mkdir()

    async def main() -> Any:
        listener = _listen(spill, received, **kw)
        port = await listener.start()
        try:
            return await asyncio.to_thread(sessions, port)
        finally:
            await listener.stop_accepting()
            await listener.wait_closed()

    return asyncio.run(main()), spill


def test_a_large_message_is_received_into_a_private_file_then_removed(tmp_path: Path) -> None:
    received = Received()
    small, large = _letter(2000), _letter(3 * LARGE)
    replies, spill = _serve(tmp_path, received, lambda port: _session(port, [small, large]))
    assert [code for code, _ in replies] == [250, 250]
    (first, got_small, _), (second, got_large, mode) = received.arrivals
    assert isinstance(first.data, bytearray) and got_small == small  # small: in memory
    assert isinstance(second.data, Path) and second.data.parent == spill
    assert got_large == large  # dots unstuffed, every byte as the client meant it
    assert mode == 0o600
    assert list(spill.iterdir()) == []  # gone once the reply was given


def test_refusals_of_a_large_message_leave_no_file_and_the_session_goes_on(
        tmp_path: Path) -> None:
    received = Received()
    big = _letter(3 * LARGE)
    long_line = _letter(LARGE + LARGE // 2).replace(b"end\r\n", b"e" * 1200 + b"\r\n")

    def sessions(port: int) -> list[tuple[int, bytes]]:
        return _session(port, [big, long_line, _letter(1000)])

    replies, spill = _serve(tmp_path, received, sessions, max_size=2 * LARGE)
    assert replies[0][0] == 552 and replies[0][1].startswith(b"5.3.4")
    assert replies[1][0] == 554 and b"1000 octets" in replies[1][1]
    assert replies[2][0] == 250
    assert len(received.arrivals) == 1
    assert list(spill.iterdir()) == []


def test_a_large_message_that_cannot_be_written_down_is_refused_for_now(tmp_path: Path
                                                                      ) -> None:
    """No room for the file (here: its directory is gone): 452, the sender tries again
    later; the session goes on."""
    received = Received()

    def sessions(port: int) -> list[tuple[int, bytes]]:
        (tmp_path / "spill").rmdir()
        return _session(port, [_letter(2 * LARGE), _letter(1000)])

    replies, _ = _serve(tmp_path, received, sessions)
    assert replies[0][0] == 452 and replies[0][1].startswith(b"4.3.1")
    assert replies[1][0] == 250
    assert len(received.arrivals) == 1


def test_a_connection_lost_in_the_middle_of_a_large_message_leaves_no_file(
        tmp_path: Path) -> None:
    received = Received()
    spill = tmp_path / "spill"
    spill.mkdir()

    async def main() -> list[Path]:
        listener = _listen(spill, received)
        port = await listener.start()
        try:
            def cut_off() -> None:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    f = s.makefile("rwb")
                    f.readline()
                    for line in (b"HELO c", b"MAIL FROM:<s@l.example>", b"RCPT TO:<r@t.example>",
                                 b"DATA"):
                        f.write(line + b"\r\n")
                        f.flush()
                        f.readline()
                    # stuffed as a client must, and no final dot: the client goes away
                    f.write(PERIOD_REGEX.sub(b"..", _letter(2 * LARGE)))
                    f.flush()

            await asyncio.to_thread(cut_off)
            for _ in range(100):
                if not list(spill.iterdir()):
                    break
                await asyncio.sleep(0.05)
            return list(spill.iterdir())
        finally:
            await listener.stop_accepting()
            await listener.wait_closed()

    assert asyncio.run(main()) == []
    assert received.arrivals == []


# -- sending from a file --------------------------------------------------------------------

_lines = st.lists(st.sampled_from([b"", b".", b"..", b"x", b".x", b"\r", b"text line"]),
                  max_size=40)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(_lines, st.sampled_from([b"\r\n", b"\n", b"\r", b""])),
                      max_size=12),
       prefix=st.sampled_from([b"", b"X-Flag: 1\r\n"]), piece=st.integers(1, 9))
def test_the_wire_form_of_a_message_is_what_aiosmtplib_sends(
        tmp_path_factory: pytest.TempPathFactory, parts: list[tuple[list[bytes], bytes]],
        prefix: bytes, piece: int) -> None:
    """Line ends to CRLF, a final CRLF, dots doubled at line starts — the same bytes as
    aiosmtplib's own DATA for the whole message in memory, whatever the pieces' size, from
    a file or from memory."""
    data = b"".join(end.join(lines) + end for lines, end in parts)
    path = tmp_path_factory.mktemp("wire") / "m"
    spilled_files.write_bytes(path, data)
    original = delivery._PIECE
    delivery._PIECE = piece
    try:
        message = FileMessage(path, prefix)
        stuffed = b"".join(message.wire(stuffed=True))
        size = message.size()
    finally:
        delivery._PIECE = original
    expected = normalize_message_line_endings(prefix + data)
    assert size == len(expected)
    assert stuffed == PERIOD_REGEX.sub(b"..", expected)
    memory = MemoryMessage(prefix + data)
    assert memory.size() == len(expected)
    assert b"".join(memory.wire(stuffed=True)) == stuffed


class _Sink:
    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.got: list[tuple[bytes, list[str], list[str]]] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.got.append((envelope.original_content, list(envelope.mail_options),
                         list(envelope.rcpt_tos)))
        return self.refuse.get("DATA", "250 OK")


def _send(sink: _Sink, message: FileMessage, rcpts: list[str]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(sink, hostname="sink.example", data_size_limit=2**30),
            "127.0.0.1", 0)
        try:
            route = Route("127.0.0.1", server.sockets[0].getsockname()[1], require_tls=False)
            return await deliver(message, mail_from="gw@gw.example", rcpts=rcpts,
                                 route=route, tls=None, timeout=10, helo="gw.example")
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_a_file_is_delivered_with_its_size_declared_and_its_bytes_intact(tmp_path: Path
                                                                         ) -> None:
    data = _letter(3 * LARGE).replace(b"\r\n", b"\n") + os.urandom(400).hex().encode()
    path = tmp_path / "out"
    spilled_files.write_bytes(path, data)
    sink = _Sink({"gone@trust.example": "550 5.1.1 no such user"})
    outcomes = _send(sink, FileMessage(path, b"X-Passerelle-Possible-Duplicate: Q\r\n"),
                     ["a@trust.example", "gone@trust.example"])
    assert outcomes["a@trust.example"].fate is None
    assert outcomes["gone@trust.example"].fate is Fate.BOUNCE
    [(got, options, rcpts)] = sink.got
    expected = normalize_message_line_endings(b"X-Passerelle-Possible-Duplicate: Q\r\n" + data)
    assert got == expected
    assert f"SIZE={len(expected)}" in options
    assert rcpts == ["a@trust.example"]


@pytest.mark.parametrize(("refusal", "fate"), [("552 5.3.4 too big for us", Fate.BOUNCE),
                                               ("451 4.3.0 try later", Fate.RETRY)])
def test_a_file_refused_at_the_end_of_data_is_bounced_or_retried(tmp_path: Path, refusal: str,
                                                                  fate: Fate) -> None:
    path = tmp_path / "out"
    spilled_files.write_bytes(path, _letter(2 * LARGE))
    outcomes = _send(_Sink({"DATA": refusal}), FileMessage(path), ["a@trust.example"])
    assert outcomes["a@trust.example"].fate is fate
    assert outcomes["a@trust.example"].status == refusal.split()[1]


def test_a_file_whose_every_recipient_is_refused_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "out"
    spilled_files.write_bytes(path, b"Subject: x\r\n\r\nbody\r\n")
    sink = _Sink({"a@trust.example": "550 5.1.1 no such user"})
    outcomes = _send(sink, FileMessage(path), ["a@trust.example"])
    assert outcomes["a@trust.example"].fate is Fate.BOUNCE
    assert sink.got == []
