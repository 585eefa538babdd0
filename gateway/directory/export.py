"""The legacy users' trust-space addresses in the extraction format, for the operator's
declaration to the national directory."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.directory.addresses import LegacyUser
from gateway.directory.model import HEADER, DirectoryEntry


def entries(users: Iterable[LegacyUser]) -> Iterable[DirectoryEntry]:
    for u in users:
        person = bool(u.rpps)
        parts = u.display_name.replace("Dr ", "").split(" ", 1)
        given, family = [*parts, ""][:2] if person else ("", "")
        values = ["PER" if person else "ORG", u.trust_address, "8" if person else "",
                  u.rpps, f"8{u.rpps}" if person else "", "", "", "",
                  "DR" if person else "", family, given, "", "", "", "", "", "", "",
                  "" if person else u.display_name, "", "", "", "", "", "", "", "", "", "",
                  "", "FRANCE"]
        yield DirectoryEntry(*values)


def export_lines(users: Iterable[LegacyUser]) -> Iterable[str]:
    yield "|".join(HEADER)
    for e in entries(users):
        yield "|".join(v.replace("|", " ") for v in e.values())
