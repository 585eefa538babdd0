"""A message's bytes on their way into and out of the spool's database.

Data larger than :data:`gateway.spill.LARGE` goes in and out in pieces, and out of the spool as
a file in a spill directory (see :mod:`gateway.spill`); every stored message carries its
SHA-256, checked again when it is read back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.atrest import PIECE
from gateway.errors import SpoolUnavailable
from gateway.spill import Data
from gateway.spill import create as create_spill
from gateway.spill import pieces as spill_pieces

# Data larger than LARGE goes into and out of the database in pieces (PIECE bytes, sealed or
# not), and out of the spool as a file in a spill directory: bound or read whole, a 25 MB
# message was copied several times over (see gateway/spill.py).
Payload = Data


def pieces_of(data: Payload) -> Iterator[bytes | memoryview]:
    if isinstance(data, Path):  # a spill file, opened as it is read
        yield from spill_pieces(data)
        return
    view = memoryview(data)
    for at in range(0, len(view), PIECE):
        yield view[at:at + PIECE]


def sha256_of(data: Payload) -> str:
    if isinstance(data, Path):
        h = hashlib.sha256()
        for piece in pieces_of(data):
            h.update(piece)
        return h.hexdigest()
    return hashlib.sha256(data).hexdigest()


def export_file(dest: Path, pieces: Iterable[bytes], digest: str) -> bool:
    """Write ``pieces`` into a new private file ``dest``; whether they matched ``digest``
    (the file is removed when they did not).  A file that cannot be written is
    :class:`SpoolUnavailable`, and none is left."""
    h = hashlib.sha256()
    try:
        with create_spill(dest) as f:  # sealed with this process's key (gateway.spill)
            for piece in pieces:
                h.update(piece)
                f.write(piece)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise SpoolUnavailable(f"spool: cannot write {dest}: {exc.strerror}") from None
    if h.hexdigest() != digest:
        dest.unlink()
        return False
    return True
