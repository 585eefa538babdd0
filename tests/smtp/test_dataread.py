"""DATA read in the pieces it arrives in: the same text, refusals and next commands as
reading it a line at a time (the way aiosmtpd reads it, the size counted as RFC 1870 counts
it: a dot doubled for transparency is not the message's), however the bytes are cut up."""

from __future__ import annotations

import asyncio

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.smtp.dataread import LINE_TOO_LONG, TOO_MUCH, DataReader

LIMIT = 24  # a text line's limit, CRLF included (small, so that lines cross it)


def one_line_at_a_time(wire: bytes, *, line_limit: int, size_limit: int | None
                       ) -> tuple[bytes, str, bytes]:
    """(text, refusal, what follows the final dot): each CRLF-ended line in turn."""
    text, refused, received, pos = bytearray(), "", 0, 0
    while True:
        end = wire.index(b"\r\n", pos) + 2
        line, pos = wire[pos:end], end
        if line == b".\r\n":
            break
        received += len(line) - (line[:1] == b".")  # RFC 1870: the dot doubled is not counted
        if not refused and len(line) > line_limit:
            refused = LINE_TOO_LONG
        if not refused and size_limit and received > size_limit:
            refused = TOO_MUCH
        if not refused:
            text += line[1:] if line[:1] == b"." else line  # RFC 5321 4.5.2
    return (b"" if refused else bytes(text)), refused, wire[pos:]


def in_pieces(wire: bytes, cuts: list[int], *, line_limit: int, size_limit: int | None
              ) -> tuple[bytes, str, bytes]:
    async def main() -> tuple[bytes, str, bytes]:
        reader = asyncio.StreamReader(limit=line_limit)  # as aiosmtpd makes it

        async def arrive() -> None:
            last = 0
            for cut in [*sorted(set(cuts)), len(wire)]:
                if cut > last:
                    reader.feed_data(wire[last:cut])
                    last = cut
                await asyncio.sleep(0)  # the reader takes what has come so far

        feeding = asyncio.create_task(arrive())
        reading = DataReader(reader, line_limit=line_limit, size_limit=size_limit)
        text = b"".join([piece async for piece in reading.pieces()])
        await feeding
        reader.feed_eof()
        rest = await reader.read()  # what the command loop reads next
        return (b"" if reading.refused else text), reading.refused, rest

    return asyncio.run(main())


_line = st.one_of(
    st.sampled_from([b"", b".", b"..", b"x", b".x", b"...", b"a.b", b"\n.", b"x\r", b"\r.",
                     b". ", b"Subject: test"]),
    st.binary(max_size=2 * LIMIT).map(lambda b: b.replace(b"\r\n", b"")))
_after = st.sampled_from([b"", b"QUIT\r\n", b"RSET\r\nMAIL FROM:<a@b.example>\r\n", b"NOOP"])


@settings(max_examples=600, deadline=None)
@given(lines=st.lists(_line, max_size=25), after=_after,
       cuts=st.lists(st.integers(0, 2000), max_size=12),
       size_limit=st.sampled_from([None, 0, 40, 200]))
@example(lines=[b"."], after=b"QUIT\r\n", cuts=[1, 2, 3, 4], size_limit=None)
@example(lines=[b"x" * 60, b"after"], after=b"", cuts=[10, 20, 30], size_limit=None)
def test_pieces_read_as_lines_are_read(lines: list[bytes], after: bytes, cuts: list[int],
                                       size_limit: int | None) -> None:
    wire = b"".join(line + b"\r\n" for line in lines) + b".\r\n" + after
    expected = one_line_at_a_time(wire, line_limit=LIMIT, size_limit=size_limit)
    got = in_pieces(wire, cuts, line_limit=LIMIT, size_limit=size_limit)
    assert got == expected


def test_a_line_longer_than_the_reader_holds_is_refused_and_the_next_command_read() -> None:
    """A megabyte without a line end: refused as too long, not held, the session goes on."""
    wire = b"Subject: " + b"A" * 1_000_000 + b"\r\nbody\r\n.\r\nQUIT\r\n"
    got = in_pieces(wire, list(range(0, len(wire), 65536)), line_limit=1001, size_limit=None)
    assert got == (b"", LINE_TOO_LONG, b"QUIT\r\n")


def test_a_pipelining_client_gets_its_message_stored_and_its_next_commands_answered() -> None:
    """RFC 2920: the final dot, the next transaction and QUIT in one write, over a socket."""
    import socket

    from gateway.sim import SimPeer

    def client(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            replies = [f.readline()]
            for line in (b"EHLO c.example", b"MAIL FROM:<s@a.example>", b"RCPT TO:<r@b.example>",
                         b"DATA"):
                f.write(line + b"\r\n")
                f.flush()
                while True:  # EHLO answers on several lines
                    reply = f.readline()
                    if reply[3:4] != b"-":
                        break
                replies.append(reply)
            f.write(b"..dotted\r\nline\r\n.\r\nMAIL FROM:<s@a.example>\r\nRCPT TO:<r@b.example>\r\n"
                    b"DATA\r\n")
            f.flush()
            replies += [f.readline() for _ in range(4)]
            f.write(b"second\r\n.\r\nQUIT\r\n")
            f.flush()
            replies += [f.readline() for _ in range(2)]
            return replies

    async def main() -> tuple[list[bytes], list[bytes]]:
        peer = SimPeer(tls=None, require_starttls=False, hostname="sink.example")
        port = await peer.start()
        try:
            replies = await asyncio.to_thread(client, port)
            return replies, [r.data for r in await peer.wait_for(2)]
        finally:
            await peer.stop()

    replies, stored = asyncio.run(main())
    assert [r[:3] for r in replies] == [b"220", b"250", b"250", b"250", b"354", b"250", b"250",
                                        b"250", b"354", b"250", b"221"]
    assert stored == [b".dotted\r\nline\r\n", b"second\r\n"]
