"""A message handed from one stage of a translation to the next, held by one of them at a time.

A large message read whole and kept by every frame it passes through (the daemon's, the
pipeline's, ``open``'s) is held as many times; handed over, it is let go by the stage that
reads it last.  It is read in slices — the MIME parser is fed slices anyway — from memory
(one buffer or pieces, each let go once read) or from its file, which is then never whole
in memory.  Its SHA-256 (for the trace) is taken once, before it is let go.  A small message
written for a stage that parses it again may be handed with the tree the parser would give
(see :func:`gateway.mail.mime.to_handover`), which that stage takes instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

from gateway import spill

SLICE = 64 * 1024  # what a reader is handed at a time
_HEADER_END = re.compile(rb"\r?\n\r?\n")


class HandedOver(RuntimeError):
    """A handover read again after the stage it was handed to let it go (a bug)."""


class Handover:
    """A message's bytes, in memory pieces or in a file, to be read once in slices."""

    def __init__(self, pieces: list[bytes] | None = None, *, path: Path | None = None) -> None:
        self._pieces: list[bytes | memoryview] | None = None if pieces is None else [*pieces]
        self._path = path
        self.size = spill.size(path) if path is not None else sum(map(len, pieces or ()))
        self._digest: str | None = None
        self._head: bytes | None = None
        self._read: EmailMessage | None = None

    @classmethod
    def of(cls, data: bytes) -> Handover:
        return cls([data])

    @classmethod
    def of_file(cls, path: Path) -> Handover:
        return cls(path=path)

    @classmethod
    def of_views(cls, *views: bytes | memoryview) -> Handover:
        """A message made of buffers held elsewhere too (the signed entity within a received
        message): none copied, each read in slices."""
        handed = cls([])
        handed._pieces = list(views)
        handed.size = sum(map(len, views))
        return handed

    def again(self) -> Handover:
        """One more handover of the same message, for one more reader (a stage run once per
        recipient); this one keeps holding it, and its digest is shared once taken."""
        self._check()
        other = Handover.of_views(*self._pieces) if self._pieces is not None else (
            Handover(path=self._path))
        other._digest, other._head = self._digest, self._head
        return other

    def _check(self) -> None:
        if self._pieces is None and self._path is None:
            raise HandedOver("message already let go")

    def keep_read(self, message: EmailMessage) -> None:
        """Hold ``message``: the tree the MIME parser gives for these bytes (see
        :func:`gateway.mail.mime.to_handover`), for the next stage to take instead of
        parsing them again."""
        self._read = message

    def kept(self) -> EmailMessage | None:
        """The tree held by :meth:`keep_read`, left held (a reader that changes nothing of
        it, before the stage it is for takes it); None when none is held."""
        return self._read

    def take_read(self) -> EmailMessage | None:
        """The tree held by :meth:`keep_read`, once, the bytes then let go; None when none
        is held (the bytes are then to be parsed)."""
        message, self._read = self._read, None
        if message is not None:
            self._check()
            self._pieces, self._path = None, None
        return message

    def pieces(self, *, release: bool = False) -> Iterator[bytes]:
        """The message in order, as it is held (a file in slices); ``release``: each piece
        let go once read, and the handover emptied."""
        self._check()
        if self._path is not None:
            with contextlib.closing(spill.pieces(self._path)) as opened:  # a spill file, sealed
                for block in opened:
                    yield from _sliced(block)
        elif release:
            assert self._pieces is not None
            pieces, self._pieces = self._pieces, []
            pieces.reverse()  # taken from the end: each piece let go as it is read
            while pieces:
                yield from _as_bytes(pieces.pop())
        else:
            for piece in self._pieces or ():
                yield from _as_bytes(piece)
        if release:
            self._pieces, self._path, self._read = None, None, None

    def slices(self, *, release: bool = False) -> Iterator[bytes]:
        """The message in order, in slices of at most :data:`SLICE` bytes; ``release``: each
        piece in memory let go once read, and the handover emptied."""
        for piece in self.pieces(release=release):
            yield from _sliced(piece)

    def digest(self) -> str:
        """SHA-256 of the message, hex (what :func:`gateway.translate.trace.sha256` gives)."""
        if self._digest is None:
            h = hashlib.sha256()
            for piece in self._pieces if self._pieces is not None else self.pieces():
                h.update(piece)
            self._digest = h.hexdigest()
        return self._digest

    def head(self) -> bytes:
        """The message up to the end of its header block (the blank line included), or all
        of it when it has none."""
        if self._head is None:
            blocks: list[bytes] = []
            tail = b""
            for block in self.slices():
                blocks.append(block)
                if _HEADER_END.search(tail + block):  # an end may straddle two blocks
                    break
                tail = block[-3:]
            seen = b"".join(blocks)
            m = _HEADER_END.search(seen)
            self._head = seen[: m.end()] if m else seen
        return self._head

    def take(self) -> bytes:
        """The whole message as one buffer (no copy when it is one piece); the handover is
        emptied."""
        self._check()
        if self._path is not None:
            data = spill.read_bytes(self._path)
        else:
            assert self._pieces is not None
            data = (self._pieces[0] if len(self._pieces) == 1 and isinstance(
                self._pieces[0], bytes) else b"".join(self._pieces))
        self._pieces, self._path, self._read = None, None, None
        return data


def _as_bytes(piece: bytes | memoryview) -> Iterator[bytes]:
    """A piece as it is, a view of another buffer in slices (copied a slice at a time)."""
    if isinstance(piece, bytes):
        yield piece
    else:
        for at in range(0, len(piece), SLICE):
            yield bytes(piece[at:at + SLICE])


def _sliced(piece: bytes) -> Iterator[bytes]:
    if len(piece) <= SLICE:
        yield piece
        return
    view = memoryview(piece)
    for at in range(0, len(piece), SLICE):
        yield bytes(view[at:at + SLICE])
