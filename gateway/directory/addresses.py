"""The address book: which legacy user is which trust-space mailbox, and how to rewrite headers.

``mappings/addresses.csv`` (UTF-8, one header line, comma-separated) has the columns::

    legacy_address, trust_address, display_name, rpps, legacy_fingerprint, charset, hprim_code

* ``legacy_address``: the user's legacy mailbox; its local part is case-sensitive in practice
  (``jean.DUPONT@medical33.legacy.example``) and kept exactly; the domain is not.
* ``trust_address``: the mailbox that fronts this user in the trust space, on the gateway's
  own domain (``jean.dupont@legacy.mssante.example``): what trust-space correspondents write to.
* ``display_name``: shown in From/To headers both ways.
* ``rpps``: 11-digit RPPS number, or empty for a lab or a service.
* ``legacy_fingerprint``: the OpenPGP fingerprint of the user's legacy key (40 hex digits):
  the only key whose signature we accept from this address, and the key we seal to.
* ``charset``: what the user's software reads and writes: cp1252, mac_roman, cp850 or utf-8.
* ``hprim_code``: the code on HPRIM header lines 11-12 for this user (up to 10 characters).
* ``legacy_mode`` (optional column): which generation of the legacy client the user runs —
  ``v2`` (every part must be signed by the user's key) or ``v1`` (a first-generation client
  that encrypts but does not sign: an unsigned part is accepted, and only over the legacy
  hub's authenticated session, see ``docs/security.md``).  Empty, or a book without the
  column: the gateway-wide ``[legacy] default_mode``.

Unknown or ambiguous addresses are typed failures, never guesses.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import getaddresses
from pathlib import Path

from gateway.errors import AmbiguousAddress, ConfigError, UnknownAddress

COLUMNS = (
    "legacy_address",
    "trust_address",
    "display_name",
    "rpps",
    "legacy_fingerprint",
    "charset",
    "hprim_code",
)
"""The columns every address book has (and the order ``passerelle pki demo`` writes)."""
OPTIONAL_COLUMNS = ("legacy_mode",)
"""Columns an address book may have; an older book without them keeps working."""
LEGACY_MODES = ("v1", "v2")
"""``v2``: every legacy part signed by the sender's key; ``v1``: unsigned parts accepted over
the hub's authenticated session (first-generation clients)."""
CHARSETS = ("cp1252", "mac_roman", "cp850", "utf-8")
_FPR = re.compile(r"[0-9A-F]{40}")
_RPPS = re.compile(r"\d{11}")
_ADDR = re.compile(r"[^@\s<>\"(),;:]+@[A-Za-z0-9.\-]+\.[A-Za-z0-9\-]+")


def normalise_address(address: str) -> str:
    """Keep the local part exactly (legacy local parts are case-sensitive), lower the domain."""
    address = address.strip().strip("<>")
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise UnknownAddress(f"not an e-mail address: {address[:80]!r}")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnknownAddress(f"invalid domain in address: {address[:80]!r}") from None
    return f"{local}@{domain}"


def domain_of(address: str) -> str:
    return normalise_address(address).rpartition("@")[2]


@dataclass(frozen=True)
class LegacyUser:
    """One row of the address book."""

    legacy_address: str
    trust_address: str
    display_name: str
    rpps: str
    legacy_fingerprint: str
    charset: str
    hprim_code: str
    legacy_mode: str = ""  # "v1", "v2", or "" (the gateway's [legacy] default_mode)

    def mode(self, default: str) -> str:
        """This user's legacy generation: their own, else the gateway-wide ``default``."""
        return self.legacy_mode or default


class AddressBook:
    """Lookups both ways; built once, read by every translation (immutable)."""

    def __init__(self, users: Iterable[LegacyUser]) -> None:
        self._by_legacy: dict[str, LegacyUser] = {}
        self._by_trust: dict[str, LegacyUser] = {}
        self._by_legacy_ci: dict[str, list[LegacyUser]] = {}
        for user in users:
            for index, key in ((self._by_legacy, normalise_address(user.legacy_address)),
                               (self._by_trust, normalise_address(user.trust_address).lower())):
                if key in index:
                    raise ConfigError(f"address book: {key} is listed twice")
                index[key] = user
            ci = normalise_address(user.legacy_address).lower()
            self._by_legacy_ci.setdefault(ci, []).append(user)
        self.legacy_domains = frozenset(domain_of(u.legacy_address) for u in self.users())
        self.trust_domains = frozenset(domain_of(u.trust_address) for u in self.users())

    def users(self) -> Iterator[LegacyUser]:
        return iter(self._by_legacy.values())

    def __len__(self) -> int:
        return len(self._by_legacy)

    def by_legacy(self, address: str) -> LegacyUser:
        """The user behind a legacy address; the local part's case must match, or be unique."""
        key = normalise_address(address)
        user = self._by_legacy.get(key)
        if user is not None:
            return user
        candidates = self._by_legacy_ci.get(key.lower(), [])
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise AmbiguousAddress(f"legacy address {key} matches {len(candidates)} users")
        raise UnknownAddress(f"no legacy user {key} in the address book")

    def by_trust(self, address: str) -> LegacyUser:
        key = normalise_address(address).lower()
        user = self._by_trust.get(key)
        if user is None:
            raise UnknownAddress(f"no legacy user behind {key} in the address book")
        return user

    def is_legacy(self, address: str) -> bool:
        try:
            self.by_legacy(address)
        except (UnknownAddress, AmbiguousAddress):
            return False
        return True

    def is_trust_alias(self, address: str) -> bool:
        try:
            self.by_trust(address)
        except UnknownAddress:
            return False
        return True

    @classmethod
    def load(cls, path: Path) -> AddressBook:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"address book {path}: cannot read ({exc})") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "addresses.csv") -> AddressBook:
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{source}: missing column(s) {', '.join(missing)}")
        users = []
        for row in reader:
            line = reader.line_num
            values = {c: (row.get(c) or "").strip() for c in (*COLUMNS, *OPTIONAL_COLUMNS)}
            users.append(_validate(values, f"{source}:{line}"))
        return cls(users)


def _validate(v: dict[str, str], where: str) -> LegacyUser:
    for col in ("legacy_address", "trust_address"):
        if not _ADDR.fullmatch(v[col]):
            raise ConfigError(f"{where}: {col} is not an e-mail address")
    fpr = v["legacy_fingerprint"].replace(" ", "").upper()
    if not _FPR.fullmatch(fpr):
        raise ConfigError(f"{where}: legacy_fingerprint must be 40 hex digits")
    if v["rpps"] and not _RPPS.fullmatch(v["rpps"]):
        raise ConfigError(f"{where}: rpps must be 11 digits or empty")
    if v["charset"] not in CHARSETS:
        raise ConfigError(f"{where}: charset must be one of {', '.join(CHARSETS)}")
    mode = v["legacy_mode"].lower()
    if mode and mode not in LEGACY_MODES:
        raise ConfigError(f"{where}: legacy_mode must be v1, v2 or empty (the default mode)")
    if len(v["hprim_code"]) > 10:
        raise ConfigError(f"{where}: hprim_code is longer than 10 characters")
    name = v["display_name"]
    # A control character or a line/paragraph separator (all that str.splitlines() breaks on)
    # or an RFC 2047 encoded word (decoded by mail software even inside quotes) could end the
    # header the name is written into: refused when the book is loaded, never at translation.
    if "=?" in name or any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise ConfigError(f"{where}: display_name holds a line break, a control character "
                          "or an encoded word")
    return LegacyUser(
        legacy_address=v["legacy_address"],
        trust_address=v["trust_address"],
        display_name=v["display_name"],
        rpps=v["rpps"],
        legacy_fingerprint=fpr,
        charset=v["charset"],
        hprim_code=v["hprim_code"],
        legacy_mode=mode,
    )


def format_address(display_name: str, address: str) -> str:
    """An RFC 5322 mailbox with a safely quoted (or encoded) display name."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))


def rewrite_header(value: str, mapper: dict[str, tuple[str, str]]) -> tuple[str, list[str]]:
    """Rewrite every address in an address-list header through ``mapper``.

    ``mapper`` maps a normalised address to (new display name, new address).  Addresses
    not in it are kept as they are (with their display name).  Returns the new value and the
    list of rewrites made (``old -> new``) for the trace.
    """
    out: list[str] = []
    done: list[str] = []
    for name, addr in getaddresses([value]):
        if not addr:
            continue
        try:
            key = normalise_address(addr)
        except UnknownAddress:
            out.append(format_address(name, addr) if "@" in addr else addr)
            continue
        hit = mapper.get(key) or mapper.get(key.lower())
        if hit is None:
            out.append(format_address(name, addr))
            continue
        new_name, new_addr = hit
        out.append(format_address(new_name, new_addr))
        done.append(f"{addr} -> {new_addr}")
    return ", ".join(out), done
