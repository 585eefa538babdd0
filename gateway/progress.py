"""Progress bars for the long commands (directory import, key rotation, purges): drawn on
standard error when it is a terminal, nothing at all otherwise (cron, systemd, pipes)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def bar(*, total: float | None = None, unit: str = "it", desc: str = "",
        **options: Any) -> Any:
    """A tqdm bar on stderr, disabled unless stderr is a terminal; use it as a context
    manager and ``update(n)`` it."""
    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty(), unit_scale=True, dynamic_ncols=True,
                **options)
