"""Large messages on their way through the gateway, held in files rather than in memory.

A message larger than :data:`LARGE` is received into a file, stored into the spool in
pieces, handed to a translation worker and taken back as files, and sent from a file: held
whole in memory at each of those steps, a 25 MB message cost the daemon over 300 MB.  The
files live in the *spill directory* of the instance (``<state_dir>/spill``), are readable by
its user only, and are removed once the step that needed them is over; whatever a crash
leaves there is still in the spool, and the directory is emptied when the daemon starts.

**Sealed.**  A spill file holds a message's clear text (a decrypted letter, a lab result) for
as long as a step runs: it is sealed like the spool's records (see :mod:`gateway.atrest`:
AES-256-GCM per :data:`~gateway.atrest.PIECE` bytes, a random nonce per piece), with an
*ephemeral key* of the process that writes it — drawn at random when the process first
writes one, held in its memory only, never written anywhere.  Every spill file is read back
by the process that wrote it (the daemon its received and delivered messages, a translation
worker its own export of a message from the spool), so no key is ever shared or stored; a
file left by a crash cannot be opened by anybody, and does not need to be (the spool holds
its message).  A process forked from another keeps its parent's key: nonces are random, and
the file's name is in each piece's associated data, so that is harmless.  The associated
data of a piece is ``spill/<file name>/<index>/<more|end>``: a piece moved within its file
or to another, or a file cut short, does not open.  Every read and write of a spill file goes
through this module (:func:`create`, :func:`pieces`, :func:`read_bytes`, :func:`head`,
:func:`size`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Generator
from contextlib import closing
from pathlib import Path
from types import TracebackType

from gateway.atrest import OVERHEAD, PIECE, SEALED_PIECE, Keyring, Sealer, pieces_in

LARGE = 1 << 20  # bytes: larger messages travel as files
Data = bytes | bytearray | Path  # a Path: the bytes are in that file (sealed, see above)

_sealer: Sealer | None = None


class SpillError(OSError):
    """A spill file that does not open: altered, cut short, or written by another process
    (whose key this one does not have).  An :class:`OSError`, as a file that cannot be read:
    the step that needed it fails, and the spool still holds the message."""


def _key() -> Sealer:
    """This process's ephemeral sealer (made on first use, in memory only)."""
    global _sealer
    if _sealer is None:
        _sealer = Sealer(Keyring.generate())
    return _sealer


def _aad(name: str, index: int, last: bool) -> bytes:
    return f"spill/{name}/{index}/{'end' if last else 'more'}".encode()


def new_path(spill: Path, name: str) -> Path:
    """A fresh name in the spill directory (a name given twice would mix two messages)."""
    return spill / f"{name}.{secrets.token_hex(6)}"


class Writer:
    """A new spill file, written in any cuts and sealed piece by piece: only this user can
    read and write it (mode 0600 whatever the umask).  :meth:`close` writes the last piece;
    a writer left by an error (``with``) closes without it (the file is then unreadable, and
    its caller removes it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._buf = bytearray()
        self._index = 0
        self._sealer = _key()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        # a full piece is sealed once more follows: the last one is marked as such
        while len(self._buf) > PIECE:
            self._seal(memoryview(self._buf)[:PIECE], last=False)
            del self._buf[:PIECE]
        return len(data)

    def _seal(self, piece: bytes | memoryview, *, last: bool) -> None:
        sealed = self._sealer.seal_piece(piece, _aad(self.path.name, self._index, last))
        view = memoryview(sealed)
        while view:  # an unbuffered write may take less than it is given
            view = view[self._file.write(view) or 0:]
        self._index += 1

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._seal(memoryview(self._buf), last=True)
            self._buf = bytearray()
        finally:
            self._file.close()

    def abandon(self) -> None:
        """Closed without its last piece (an error midway)."""
        self._buf = bytearray()
        self._file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def create(path: Path) -> Writer:
    """A new spill file ``path`` to write a message into (see :class:`Writer`)."""
    return Writer(path)


def write_bytes(path: Path, data: bytes | bytearray | memoryview) -> None:
    """A new spill file ``path`` holding ``data``."""
    with create(path) as w:
        w.write(data)


def pieces(path: Path) -> Generator[bytes, None, None]:
    """The clear bytes of spill file ``path``, in pieces of :data:`~gateway.atrest.PIECE`
    bytes (one at a time in memory); :class:`SpillError` when it does not open."""
    sealer = _key()
    with path.open("rb") as f:
        count = pieces_in(os.fstat(f.fileno()).st_size)
        for i in range(count):
            sealed = f.read(SEALED_PIECE)
            try:
                yield sealer.open_piece(sealed, _aad(path.name, i, i == count - 1))
            except Exception as exc:  # altered, cut, or another process's key
                raise SpillError(f"spill file {path.name} does not open: "
                                 f"{getattr(exc, 'why', 'another key')}") from None


def read_bytes(path: Path) -> bytes:
    """The whole clear message of spill file ``path`` (where a step needs it whole)."""
    return b"".join(pieces(path))


def size(data: Data) -> int:
    """The message's size (a spill file's clear size, not the file's)."""
    if not isinstance(data, Path):
        return len(data)
    length = data.stat().st_size
    return max(0, length - pieces_in(length) * OVERHEAD)


def head(data: Data, limit: int) -> bytes:
    """The first ``limit`` bytes (a message's header block is read from them), opening only
    the pieces of a spill file that hold them."""
    if not isinstance(data, Path):
        return bytes(data[:limit])
    out = bytearray()
    with closing(pieces(data)) as opened:
        for piece in opened:
            out += piece
            if len(out) >= limit:
                break
    return bytes(out[:limit])
