"""The short strings of a message — Subject, display names, attachment file names, HPRIM
header lines — read through the text engine's short-string repair (gateway.text.short), each
repair and each undecided string recorded for the trace."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

from gateway.directory.addresses import format_address
from gateway.text.short import repair_short

# Control characters and line or paragraph separators: a header or an HPRIM line holding one
# would be cut in two where it is written again.
_BREAKING = frozenset({"Cc", "Zl", "Zp"})


@dataclass
class StringRepairs:
    """Repairs short strings with the sender's known charset as hint, and remembers them."""

    hint: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)

    def text(self, value: str, where: str) -> str:
        """``value`` as its author wrote it (or as received when that cannot be told)."""
        if not value or value.isascii():
            return value
        result = repair_short(value, hint=self.hint)
        if any(unicodedata.category(c) in _BREAKING for c in set(result.text) - set(value)):
            return value  # a "repair" that brings a control or a line break: not a name
        if result.changed or not result.decided:
            self.entries.append(result.trace_entry(where))
        return result.text

    def address_list(self, value: str, where: str) -> str:
        """An address-list header with each display name repaired; ``value`` itself when no
        name changes (its formatting kept)."""
        if not value or value.isascii():
            return value
        pairs = getaddresses([value])
        names = [self.text(name, f"{where} display name") for name, _ in pairs]
        if all(new == old for new, (old, _) in zip(names, pairs, strict=True)):
            return value
        return ", ".join(format_address(name, addr) if "@" in addr else addr
                         for name, (_, addr) in zip(names, pairs, strict=True) if addr)

    def file_name(self, value: str | None) -> str | None:
        return None if value is None else self.text(value, "attachment name")
