"""Subcommands of the crypto area (registered into `passerelle` by gateway.cli)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to the `passerelle` parser."""
