"""From an RPPS to a mailbox: the alias form, the HPRIM recipient line, the preference.

* Alias: ``rpps-<11 digits>@<gateway domain>`` — a legacy user writes to any trust-space
  clinician knowing only their RPPS number.
* HPRIM alias: ``hprim@<gateway domain>`` (``directory.hprim_alias``) — a lab sends a report
  and the gateway routes it by the HPRIM recipient line (header line 12): when its code, or a
  word of the name, is exactly 11 digits, that is taken as the RPPS (nothing else: no guessing
  from other numbers).  Every report in the message must name the same RPPS: results are never
  fanned out to several doctors.
* Preference when a clinician has several mailboxes (configurable): by mailbox type PER,
  then CAB, ORG, APP; then a mailbox in the sender's department; then one on a preferred
  operator's domain; then alphabetical order, so that the choice is stable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gateway.directory.model import DirectoryEntry
from gateway.directory.store import DirectoryStore
from gateway.errors import BadInputError, UnknownAddress

_ALIAS = re.compile(r"rpps-(\d{11})", re.IGNORECASE)


@dataclass(frozen=True)
class Preference:
    types: tuple[str, ...] = ("PER", "CAB", "ORG", "APP")
    preferred_domains: tuple[str, ...] = ()


def parse_alias(address: str, gateway_domain: str) -> str | None:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if domain.lower() != gateway_domain.lower():
        return None
    m = _ALIAS.fullmatch(local)
    return m.group(1) if m else None


def rpps_from_hprim_recipient(code: str, name: str) -> str | None:
    for token in (code.strip(), *name.split()):
        if len(token) == 11 and token.isdigit():
            return token
    return None


def choose(entries: list[DirectoryEntry], *, preference: Preference,
           sender_department: str | None = None) -> DirectoryEntry:
    def rank(e: DirectoryEntry) -> tuple[int, int, int, str]:
        kind = e.box_type.upper()
        t = preference.types.index(kind) if kind in preference.types else len(preference.types)
        same = 0 if sender_department and e.department == sender_department else 1
        domain = e.address.rpartition("@")[2].lower()
        pref = 0 if domain in preference.preferred_domains else 1
        return (t, same, pref, e.address.lower())

    return min(entries, key=rank)


@dataclass(frozen=True)
class Route:
    """Where a directory alias leads."""

    address: str
    display_name: str
    rpps: str
    how: str  # "rpps-alias" or "hprim-recipient"


class DirectoryResolver:
    """The aliases of the gateway domain that the directory resolves."""

    def __init__(self, store: DirectoryStore | Path | str, *, domain: str,
                 preference: Preference = Preference(), hprim_alias: str = "hprim") -> None:
        self._store = store  # a path is opened at the first lookup
        self.domain = domain.lower()
        self.preference = preference
        self.hprim_alias = hprim_alias.lower()

    @property
    def store(self) -> DirectoryStore:
        if not isinstance(self._store, DirectoryStore):
            from gateway.directory.pgstore import open_directory

            self._store = open_directory(self._store)
        return self._store

    def is_alias(self, address: str) -> bool:
        return (parse_alias(address, self.domain) is not None
                or self._is_hprim_alias(address))

    def _is_hprim_alias(self, address: str) -> bool:
        local, _, domain = address.strip().strip("<>").rpartition("@")
        return domain.lower() == self.domain and local.lower() == self.hprim_alias

    def route(self, rcpt: str, hprim_recipients: list[tuple[str, str]] | None) -> Route | None:
        """None when ``rcpt`` is not a directory alias; UnknownAddress when it cannot be
        resolved.  ``hprim_recipients``: (code, name) of each report's recipient line."""
        rpps = parse_alias(rcpt, self.domain)
        how = "rpps-alias"
        if rpps is None:
            if not self._is_hprim_alias(rcpt):
                return None
            how = "hprim-recipient"
            named = {rpps_from_hprim_recipient(c, n) for c, n in hprim_recipients or []}
            if not hprim_recipients:
                raise UnknownAddress("message sent to the HPRIM alias carries no HPRIM report")
            if None in named:
                raise UnknownAddress("a report's HPRIM recipient line (line 12) names no RPPS "
                                     "number")
            if len(named) > 1:
                raise UnknownAddress("the reports name different recipients: send one message "
                                     "per doctor")
            rpps = named.pop()
            assert rpps is not None
        try:
            entries = self.store.find_by_rpps(rpps)
        except BadInputError:
            raise UnknownAddress("the national directory has not been imported on this "
                                 "gateway: RPPS aliases cannot be resolved") from None
        if not entries:
            raise UnknownAddress(
                f"aucune messagerie sécurisée connue pour le RPPS {rpps} "
                f"(no MSSanté mailbox for RPPS {rpps})")
        e = choose(entries, preference=self.preference)
        name = (f"{e.given_name} {e.family_name}".strip() if e.box_type.upper() in ("PER", "CAB")
                else e.structure_name) or e.address
        return Route(e.address, name, rpps, how)


def resolve_rpps(store: DirectoryStore, rpps: str, *, preference: Preference = Preference(),
                 sender_department: str | None = None) -> str:
    entries = store.find_by_rpps(rpps)
    if not entries:
        raise UnknownAddress(
            f"aucune messagerie sécurisée connue pour le RPPS {rpps} "
            f"(no MSSanté mailbox for RPPS {rpps})")
    return choose(entries, preference=preference, sender_department=sender_department).address
