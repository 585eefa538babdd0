"""Smoke runs of the benchmarks, so that they cannot rot."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def short_dir() -> Path:
    """A short work directory: gpg-agent's socket path (in each GnuPG home of the world the
    bench builds) must fit in 108 bytes, which pytest's long temporary paths can exceed."""
    path = Path(tempfile.mkdtemp(prefix="pb-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
