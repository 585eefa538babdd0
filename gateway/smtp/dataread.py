"""Reading SMTP DATA in the pieces it arrives in, not a line at a time.

aiosmtpd reads DATA with one ``readuntil(b"\\r\\n")`` per line: for a 60 KB message some 800
awaits, each with its own search and copy, the largest Python cost of receiving a message.
Here whatever has arrived is taken at once and cut where the lines end; a piece holds whole
lines, unstuffed (RFC 5321 4.5.2), up to the line holding the final dot.  The replies and
limits are aiosmtpd's: a text line over ``line_limit`` octets (CRLF included) or more than
``size_limit`` octets of data are refused once the final dot has come.  The size is the
message's as RFC 1870 counts it: every CRLF, not the dots doubled for transparency nor the
final dot's line.

What a pipelining client sent after the final dot (RFC 2920: the next command may follow it
at once) is given back to the stream reader, where the command loop reads it next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiosmtpd.smtp import SMTP

from gateway.spill import Data

LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"  # aiosmtpd's own words
TOO_MUCH = "552 Error: Too much mail data"
_END = b"\r\n.\r\n"
# more than the stream reader can hold at once (it stops reading past twice its limit, plus
# one read of the transport): a read takes everything it holds, so what follows the final
# dot can be given back in order
_CHUNK = 1 << 24


class DataReader:
    """The text of one DATA command, read from ``reader`` after the 354 reply."""

    def __init__(self, reader: asyncio.StreamReader, *, line_limit: int,
                 size_limit: int | None) -> None:
        self.reader = reader
        self.line_limit = line_limit
        self.size_limit = size_limit
        self.refused = ""  # the first trouble decides the reply
        self.received = 0  # octets read, as sent (dots doubled, the final dot's line too)
        # of them, the dots doubled at the start of a line (RFC 5321 4.5.2): the size the limit
        # is held to is the message's, as RFC 1870 counts it — CRLFs in, those dots out
        self.stuffed = 0

    async def pieces(self) -> AsyncIterator[bytes]:
        """Whole lines of the text, unstuffed, as they arrive; none once refused (the text
        is still read to its final dot)."""
        carry = b""  # a line whose end has not come yet (it starts a line)
        while True:
            chunk = await self.reader.read(_CHUNK)
            if not chunk:  # the client went away before the final dot
                raise asyncio.IncompleteReadError(carry, None)
            text = carry + chunk if carry else chunk
            if text.startswith(b".\r\n"):
                end = 0
            else:
                end = text.find(_END)
                end = end + 2 if end >= 0 else -1
            if end >= 0:
                lines, rest = text[:end], text[end + 3:]
                self.received += end
                piece = self._checked(lines)
                self.received += 3  # the final dot's line: not counted against the limit
                if piece:
                    yield piece
                if rest and not self.reader.at_eof():
                    self.reader.feed_data(rest)  # the next commands: read by the command loop
                return
            cut = text.rfind(b"\r\n") + 2  # whole lines only
            if cut < 2:
                cut = 0
            lines, carry = text[:cut], text[cut:]
            self.received += cut
            piece = self._checked(lines)
            if piece:
                yield piece
            if len(carry) >= self.line_limit:  # a line this long, and its end not in sight
                self._refuse(LINE_TOO_LONG)
                self.received += len(carry) - 1
                # of it, only what may begin the final dot's CRLF is kept; "x": not a line
                # start (its dots are not the final dot's)
                carry = b"x" + carry[-1:]

    def _checked(self, lines: bytes) -> bytes:
        """Whole lines (``received`` counts them already): checked against the limits, then
        unstuffed (b"" once refused)."""
        if not lines or self.refused:
            return b""
        limit = self.size_limit or 0  # 0 or None: no limit
        dots = lines.count(b"\r\n.") + (lines[:1] == b".")
        over = bool(limit) and self.received - self.stuffed - dots > limit
        if over or (len(lines) > self.line_limit - 2 and max(
                map(len, lines.split(b"\r\n"))) > self.line_limit - 2):
            # which trouble came first, line by line as aiosmtpd reads them: a line too long
            # is refused as such, else the line that crosses the size limit
            seen = self.received - len(lines) - self.stuffed
            for line in lines.split(b"\r\n")[:-1]:
                seen += len(line) + 2 - (line[:1] == b".")
                if len(line) + 2 > self.line_limit:
                    self._refuse(LINE_TOO_LONG)
                    break
                if limit and seen > limit:
                    self._refuse(TOO_MUCH)
                    break
            return b""
        self.stuffed += dots
        if lines[:1] == b".":  # a line starts each piece
            lines = lines[1:]
        return lines.replace(b"\r\n.", b"\r\n")

    def _refuse(self, reply: str) -> None:
        self.refused = self.refused or reply


class PieceDataSMTP(SMTP):
    """aiosmtpd's protocol with its DATA read by :class:`DataReader` into one buffer (its own
    keeps every line as an object and joins them at the end)."""

    async def smtp_DATA(self, arg: str) -> None:
        """DATA answered as aiosmtpd answers it."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        with contextlib.ExitStack() as cleanup:
            try:
                data, refused = await self._read_data(cleanup)
            except asyncio.CancelledError:  # the connection was lost during DATA
                self._writer.close()
                raise
            if refused:
                await self.push(refused)
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                return
            # for every reader (hashing, the spool's blob, the parsers) without a copy
            self.envelope.content = data  # type: ignore[assignment]
            self.envelope.original_content = data  # type: ignore[assignment]
            self.storing = True  # a shutdown lets this reply go out first
            try:
                status = await self._call_handler_hook("DATA")
            finally:
                self.storing = False
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(status)
            if self.closing:
                await self.shut()

    storing = False  # the handler is storing a message whose text has all arrived
    closing = False  # the server is shutting down: the session ends after its current reply

    async def shut(self) -> None:
        """End the session for a shutdown (RFC 5321 3.8): ``421 4.3.2`` and close.  A session
        whose message is being stored gets its reply first (``250`` only after the commit,
        as always), then the ``421``; a message still being received is not kept — its
        sender still has it and tries again."""
        self.closing = True
        if self.storing or self.transport is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.push("421 4.3.2 Service shutting down, try again later")
        if self.transport is not None:
            self.transport.close()

    def _data_reader(self) -> DataReader:
        return DataReader(self._reader, line_limit=self.line_length_limit,
                          size_limit=self.data_size_limit)

    async def _read_data(self, cleanup: contextlib.ExitStack) -> tuple[Data, str]:
        """DATA's text up to the final dot, and the refusal it deserves ("" if none); a
        subclass may keep it elsewhere (files it makes are removed when ``cleanup`` closes)."""
        data = bytearray()
        reading = self._data_reader()
        async for piece in reading.pieces():
            data += piece
        return data, reading.refused
