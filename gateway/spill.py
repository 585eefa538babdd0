"""Large messages on their way through the gateway, held in files rather than in memory.

A message larger than :data:`LARGE` is received into a file, stored into the spool in
pieces, handed to a translation worker and taken back as files, and sent from a file: held
whole in memory at each of those steps, a 25 MB message cost the daemon over 300 MB.  The
files live in the *spill directory* of the instance (``<state_dir>/spill``), are readable by
its user only, and are removed once the step that needed them is over; whatever a crash
leaves there is still in the spool, and the directory is emptied when the daemon starts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

LARGE = 1 << 20  # bytes: larger messages travel as files
Data = bytes | bytearray | Path  # a Path: the bytes are in that file


def new_path(spill: Path, name: str) -> Path:
    """A fresh name in the spill directory (a name given twice would mix two messages)."""
    return spill / f"{name}.{secrets.token_hex(6)}"


def create(path: Path) -> int:
    """A new file only this user can read and write (it holds a message): its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def size(data: Data) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def head(data: Data, limit: int) -> bytes:
    """The first ``limit`` bytes (a message's header block is read from them)."""
    if isinstance(data, Path):
        with data.open("rb") as f:
            return f.read(limit)
    return bytes(data[:limit])
