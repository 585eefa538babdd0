"""How often a translation parses and writes messages with the email package, and where.

:func:`counting` patches, for the time of a ``with`` block, the places every parse and every
serialisation goes through, and records each one with the gateway function that asked for it:

* a **parse**: every ``email.feedparser.FeedParser.close()`` — ``BytesFeedParser``,
  ``BytesParser``/``Parser`` (``parsebytes``, ``parsestr``, headers only or not),
  ``message_from_bytes``/``message_from_string`` all end there — with how much text was fed
  and whether only the header block was read (``headersonly``); one of a few bytes is a
  header value read as a field (``"From: …\\n\\n"``), a whole message one of its size;
* a **serialisation**: the outermost ``email.generator.Generator.flatten`` (``as_bytes``,
  ``as_string``, ``BytesGenerator`` — its own nested calls for the parts are not counted)
  and the outermost :func:`gateway.mail.write._write` (``to_bytes``, ``to_handover``);
  a ``flatten`` inside ``_write`` (a part it hands to the generator) is part of that one.

Used by ``bench/mimepath.py`` (counts and CPU per stage) and by the test that holds the
translator to one parse of each message and one serialisation per output
(``tests/translate/test_parse_once.py``).
"""

from __future__ import annotations

import contextlib
import email.feedparser
import email.generator
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from gateway.mail import write


@dataclass(frozen=True)
class Event:
    kind: str  # "parse", "parse_head" (headers only), "serialise"
    size: int  # characters fed to the parser; 0 for a serialisation
    caller: str  # the first gateway function up the stack, "module.function"
    how: str  # "feedparser", "generator", "write"


@dataclass
class Census:
    events: list[Event] = field(default_factory=list)

    def of(self, *kinds: str, at_least: int = 0) -> list[Event]:
        return [e for e in self.events if e.kind in kinds and e.size >= at_least]

    def parses(self, at_least: int = 0) -> list[Event]:
        """Parses of anything (whole messages and header blocks) of ``at_least`` characters."""
        return self.of("parse", "parse_head", at_least=at_least)

    def serialisations(self) -> list[Event]:
        return self.of("serialise")

    def table(self) -> Counter[tuple[str, str, str]]:
        return Counter((e.kind, e.caller, "value" if e.kind != "serialise" and e.size < 1024
                        else "message") for e in self.events)


def _caller(skip: tuple[str, ...] = ()) -> str:
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("gateway.") and module not in skip:
            return f"{module.removeprefix('gateway.')}.{frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


@contextlib.contextmanager
def counting() -> Iterator[Census]:
    """Every parse and serialisation made in the block (in any thread), in ``census.events``."""
    census = Census()
    fed: dict[int, int] = {}
    depth = {"write": 0, "flatten": 0}
    original_feed = email.feedparser.FeedParser.feed
    original_close = email.feedparser.FeedParser.close
    original_flatten = email.generator.Generator.flatten
    original_write = write._write

    def feed(self: Any, data: str) -> None:
        fed[id(self)] = fed.get(id(self), 0) + len(data)
        original_feed(self, data)

    def close(self: Any) -> Any:
        kind = "parse_head" if getattr(self, "_headersonly", False) else "parse"
        census.events.append(Event(kind, fed.pop(id(self), 0), _caller(), "feedparser"))
        return original_close(self)

    def flatten(self: Any, *args: Any, **kwargs: Any) -> Any:
        if depth["write"] == 0 and depth["flatten"] == 0:
            census.events.append(Event("serialise", 0, _caller(), "generator"))
        depth["flatten"] += 1
        try:
            return original_flatten(self, *args, **kwargs)
        finally:
            depth["flatten"] -= 1

    def write_(*args: Any, **kwargs: Any) -> Any:
        if depth["write"] == 0 and depth["flatten"] == 0:
            census.events.append(Event("serialise", 0, _caller(("gateway.mail.write",)),
                                       "write"))
        depth["write"] += 1
        try:
            return original_write(*args, **kwargs)
        finally:
            depth["write"] -= 1

    with mock.patch.object(email.feedparser.FeedParser, "feed", feed), \
            mock.patch.object(email.feedparser.FeedParser, "close", close), \
            mock.patch.object(email.generator.Generator, "flatten", flatten), \
            mock.patch.object(write, "_write", write_):
        yield census
