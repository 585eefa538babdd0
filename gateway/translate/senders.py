"""Who a message says it is from, read as addresses — never as text to search.

The ``From`` of a message is bound to the party that authenticated (the operator's client
certificate on the trust side, the key of the legacy signer on the other).  Comparing that
binding with a substring of the field lets an address in the display name, in a comment or in
an encoded-word pass; so the field is parsed by the email package's address parser
(:mod:`email.headerregistry`) and only its one mailbox's ``addr-spec`` is compared:

* exactly one ``From`` field, holding exactly one mailbox (RFC 5322 §3.6.2 allows a list only
  with a ``Sender``, which we do not accept as a substitute for binding): no group syntax, no
  second field, no second address;
* a field the parser reports defects in (an address it had to guess) is refused rather than
  read one way here and another way by the reader's software;
* the domain compared in its A-label form (IDNA 2008, the ``idna`` package), lower-cased; the
  local part exactly.

:func:`secondary_addresses` reads ``Reply-To``, ``Sender`` and ``Disposition-Notification-To``
the same way, for the policy of :mod:`gateway.translate.trust_to_legacy` and of the listener.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Callable, Iterable
from email.headerregistry import Address
from email.message import Message
from typing import Any

import idna

from gateway.errors import PolicyError
from gateway.mail.policy import POLICY

# fields that name who else speaks for, or answers for, the sender
SECONDARY = ("Reply-To", "Sender", "Disposition-Notification-To")


def a_label(domain: str) -> str:
    """``domain`` in A-labels (IDNA 2008 with the UTS #46 mapping: upper case and width
    variants folded), lower-cased; :class:`PolicyError` when it cannot be one."""
    domain = domain.strip().rstrip(".")
    if not domain:
        raise PolicyError("address has no domain")
    if domain.isascii() and not any(label.lower().startswith("xn--")
                                    for label in domain.split(".")):
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise PolicyError(f"domain is not a valid internationalised name ({exc})") from None


def _head_message(head: bytes | str | Message) -> Message:
    if isinstance(head, Message):
        return head
    if isinstance(head, str):
        return email.parser.Parser(policy=email.policy.default).parsestr(
            head, headersonly=True)
    return email.parser.BytesParser(policy=email.policy.default).parsebytes(
        head, headersonly=True)


def _mailboxes(value: object, name: str) -> list[Address]:
    """The mailboxes of one parsed address field; group syntax and defects refused."""
    groups = getattr(value, "groups", None)
    defects = getattr(value, "defects", ())
    if groups is None:
        raise PolicyError(f"{name} is not an address field")
    if defects:
        raise PolicyError(f"{name} is not a well-formed address list")
    out: list[Address] = []
    for group in groups:
        if group.display_name is not None:
            raise PolicyError(f"{name} uses group syntax")
        out.extend(group.addresses)
    return out


def address_of(box: Address, name: str = "address") -> str:
    """``local@domain`` with the domain in A-labels."""
    if not box.username or not box.domain:
        raise PolicyError(f"{name} has no domain")
    return f"{box.username}@{a_label(box.domain)}"


# What the email package's parser takes for a line break (``str.splitlines``): a value holding
# none is one header line, read as the parser would read it (see :func:`_as_field`).
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _get_all(msg: Message, name: str) -> list[Any]:
    """``msg.get_all(name)`` as ``email.policy.default`` fetches the fields: each read by
    the header registry (the gateway's policy, whatever ``msg``'s, with the registry's own
    failures — not a policy's translation of them)."""
    return [value if hasattr(value, "name") else _as_field(key, value)
            for key, value in msg.raw_items() if key.lower() == name.lower()]


def _as_field(name: str, value: str) -> Any:
    # (``EmailPolicy.header_fetch_parse``: CR and LF taken out, then the registry)
    return POLICY.header_factory(name, value.replace("\r", "").replace("\n", ""))


def from_address(head: bytes | str | Message) -> str:
    """The one address of the one ``From`` field of ``head`` (a header block, or a parsed
    message), as :func:`address_of` writes it; :class:`PolicyError` otherwise."""
    msg = _head_message(head)
    return _one_from(lambda: _get_all(msg, "From"))


def from_value(value: str) -> str:
    """``from_address(f"From: {value}\n\n")``: the one address of a ``From`` field whose
    value is ``value``, read as the parser would read it — one field, its value without the
    blanks before it — without parsing a message (one holding a line break is parsed)."""
    if not _LINE_BREAKS.isdisjoint(value):
        return from_address(f"From: {value}\n\n")
    return _one_from(lambda: [_as_field("From", value.lstrip(" \t"))])


def _one_from(fields_of: Callable[[], list[Any]]) -> str:
    try:
        fields = fields_of()
        if len(fields) != 1:
            raise PolicyError("message must have exactly one From field"
                              if fields else "message has no From field")
        boxes = _mailboxes(fields[0], "From")
    except PolicyError:
        raise
    except Exception as exc:  # the parser's own failures on hostile input
        raise PolicyError(f"From cannot be read ({type(exc).__name__})") from None
    if len(boxes) != 1:
        raise PolicyError("From must name exactly one mailbox")
    return address_of(boxes[0], "From")


def secondary_addresses(head: bytes | str | Message) -> dict[str, list[str] | None]:
    """For each field of :data:`SECONDARY` present: its addresses (None when unreadable)."""
    msg = _head_message(head)
    out: dict[str, list[str] | None] = {}
    for name in SECONDARY:
        try:
            fields = _get_all(msg, name)
            if not fields:
                continue
            out[name] = [address_of(b, name) for f in fields for b in _mailboxes(f, name)]
        except Exception:
            out[name] = None
    return out


def same_address(a: str, b: str) -> bool:
    """Whether two ``addr-spec`` are one mailbox: the local part exactly, the domain as
    A-labels without case."""
    la, _, da = a.strip().strip("<>").rpartition("@")
    lb, _, db = b.strip().strip("<>").rpartition("@")
    if not la or not lb:
        return False
    try:
        return la == lb and a_label(da) == a_label(db)
    except PolicyError:
        return False


def domain_part(address: str) -> str:
    return a_label(address.rpartition("@")[2])


def within(addresses: Iterable[str], domains: Iterable[str]) -> bool:
    allowed = {a_label(d) for d in domains}
    try:
        return all(domain_part(a) in allowed for a in addresses)
    except PolicyError:
        return False


def field_addresses(name: str, value: str) -> list[str] | None:
    """The addresses of one address field's ``value`` (None when it cannot be read as
    one): what ``secondary_addresses(f"{name}: {value}\n\n")`` says of ``name``, the value
    read as the header registry reads it (not parsed as a message)."""
    if name not in SECONDARY:
        return None
    if not _LINE_BREAKS.isdisjoint(value):
        return secondary_addresses(f"{name}: {value}\n\n").get(name)
    try:
        return [address_of(b, name) for b in _mailboxes(_as_field(name, value.lstrip(" \t")),
                                                        name)]
    except Exception:
        return None
