"""The policies every message of the gateway is read and written with, and what they remember.

The standard policies of the email package (``email.policy.default``, and the same with CRLF
for the wire), whose header handling fails with :class:`~gateway.errors.MessageFormatError`
only, and whose header registry remembers what it has parsed (see
:class:`_RememberingRegistry` and :func:`shape`): :mod:`gateway.mail.mime` reads and builds
messages with them, :mod:`gateway.mail.write` writes them out.
"""

from __future__ import annotations

import email
import email.generator
import email.parser
import email.policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from typing import Any

from gateway.errors import MessageFormatError


class _RememberingRegistry(HeaderRegistry):
    """The email package's header registry, remembering the header classes it makes and the
    short headers it has parsed.  The package builds a new class on every lookup and parses a
    part's Content-Type again on every ``get_content_type()`` (some forty times for one
    translated message); a parsed header is an immutable ``str`` whose parse depends only on
    its name and value, so the same one can be handed out again.  Bounded: long values are
    never kept, and the memory is emptied when full."""

    LONGEST = 256
    ENTRIES = 512

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if not isinstance(value, str) or len(value) > self.LONGEST:
            return self[name](name, value)
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            if len(self._parsed) >= self.ENTRIES:
                self._parsed.clear()
            header = self._parsed[key] = self[name](name, value)
        return header


class _Policy(email.policy.EmailPolicy):
    """``email.policy.default`` whose header handling fails with :class:`MessageFormatError`
    only.  Header values come from outside; the email package answers some of them with
    ValueError (a line break once decoded), AttributeError or IndexError (its parser on odd
    groups and brackets) or UnicodeEncodeError (8-bit text where only ASCII can be written):
    those are malformed input, to be bounced with a reason — not a crash to be retried."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        try:
            return super().header_store_parse(name, value)
        except Exception:
            raise MessageFormatError(f"{name} header cannot be written") from None

    def header_fetch_parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except Exception:
            raise MessageFormatError(f"unreadable {name} header") from None

    def fold_binary(self, name: str, value: str) -> bytes:
        try:
            return super().fold_binary(name, value)
        except Exception:
            raise MessageFormatError(f"{name} header cannot be written") from None


_REGISTRY = _RememberingRegistry()
# The policies every message of the gateway is read and written with: the standard ones
# (``email.policy.default``, and ``SMTP`` for the wire), with the remembering registry and
# typed failures.
POLICY = _Policy(header_factory=_REGISTRY)
WIRE = POLICY.clone(linesep="\r\n")


def new() -> EmailMessage:
    """An empty message under :data:`POLICY`."""
    return EmailMessage(policy=POLICY)


# MIME names of the charsets legacy software reads (RFC 1345 / IANA registry).
MIME_CHARSET = {"cp1252": "windows-1252", "mac_roman": "macintosh", "cp850": "IBM850",
                "utf-8": "utf-8"}


def content_type(part: Message) -> str:
    """``part.get_content_type()``, remembered (see :func:`shape`)."""
    return shape(part)[0]


def shape(part: Message) -> tuple[str, str | None]:
    """``(part.get_content_type(), part.get_boundary())``, remembered by the value of the
    part's Content-Type field.

    The email package parses the field again on every call: a part's type some ten times,
    its boundary some five, in one translation.  Both are functions of the header the field
    is fetched as, which under the gateway's policies is a function of the value stored
    (the same header object, or the same text parsed the same way); a part without the
    field takes its type from its parent, and is not remembered.  Bounded like the
    remembering registry."""
    if part.policy is not POLICY and part.policy is not WIRE:
        return part.get_content_type(), part.get_boundary()
    value = next((v for k, v in part._headers  # type: ignore[attr-defined]
                  if k.lower() == "content-type"), None)
    if value is None:
        return part.get_content_type(), None
    if not isinstance(value, str) or len(value) > _SHAPE_LONGEST:
        return part.get_content_type(), part.get_boundary()
    # a stored header object is fetched as itself, a stored text parsed: the same text
    # may give either, and they are kept apart
    key = (value.__class__ is str, str(value))
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _SHAPE_ENTRIES:
            _SHAPES.clear()
        shape = _SHAPES[key] = (part.get_content_type(), part.get_boundary())
    return shape


_SHAPE_LONGEST = 512
_SHAPE_ENTRIES = 1024
_SHAPES: dict[tuple[bool, str], tuple[str, str | None]] = {}
