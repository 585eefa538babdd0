"""The trace record: what came in, what was changed, who signed, where it went.

One record per message and direction, one step per stage (``received``, ``open``, ``repair``,
``documents``, ``compose``, ``sign``, ``seal`` …).  Each step carries the time it ended, the
SHA-256 of the bytes it consumed and of those it produced (none when it produced nothing: a
letter without a report gives no documents), and what it did.  The record travels inside the
signed message as a small JSON part (``application/json; name=passerelle-trace.json``) and each
step is appended to the hash-chained journal, so anyone can later prove what was received and
what was sent.  The attached copy stops at ``compose`` and carries no output digest for it:
that output is the message the copy is part of; the journal's ``compose`` step has it (and it
is the ``sign`` step's input).  What happens to the message afterwards (each delivery attempt,
quarantine, release, the notices written about it, purge) is journaled under the same id,
:func:`trace_id`.

Steps carry no message text, except the before/after of text repairs (words), which the
recipient reads anyway in the attached copy; the journal keeps their digest and length only
(:func:`gateway.journal.without_text`), and logs never receive a trace record, only its
digest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from gateway import __version__

TRACE_FILENAME = "passerelle-trace.json"
TRACE_CONTENT_TYPE = "application/json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trace_id(message_id: str, digest: str) -> str:
    """The id a message's steps are journaled under: its Message-ID, else one made of the
    SHA-256 of the bytes received (``digest``) — what the translator, the spool's stages and
    the operator's tools all use for the same message."""
    return message_id.strip() or f"<{digest[:32]}@passerelle>"


@dataclass(frozen=True)
class TraceStep:
    stage: str
    at: datetime
    input_digest: str | None  # None: the step consumed no bytes
    output_digest: str | None  # None: it produced none (or, attached, the message itself)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "at": self.at.isoformat(),
            **({"input_sha256": self.input_digest} if self.input_digest else {}),
            **({"output_sha256": self.output_digest} if self.output_digest else {}),
            **({"details": self.details} if self.details else {}),
        }


@dataclass
class TraceRecord:
    """Built step by step while a message is translated (the only mutable value here).

    Steps are stamped with the time they end: the ``at`` a step is added with is the clock of
    the translation when it began (the ``now`` the pipeline is given, which its documents and
    checks use throughout), and the step's time is that plus the time elapsed since the record
    was made (``stamped`` gives a step its own time instead: when the message was received)."""

    message_id: str
    direction: str  # "to_trust" or "to_legacy"
    steps: list[TraceStep] = field(default_factory=list)
    # How long each stage took (for metrics only; not part of the record).
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    # seconds, to time steps by (a test that compares two translations byte for byte
    # stops it: every step is then stamped with the translation's ``now``)
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False, compare=False)
    _last: float = field(default=0.0, repr=False, compare=False)
    _began: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._last = self._began = self.clock()

    def add(self, stage: str, at: datetime, data_in: bytes | None, data_out: bytes | None,
            **details: Any) -> TraceStep:
        """A step that consumed ``data_in`` and produced ``data_out`` (None: no bytes)."""
        return self.add_digests(stage, at, None if data_in is None else sha256(data_in),
                                None if data_out is None else sha256(data_out), **details)

    def add_digests(self, stage: str, at: datetime, input_digest: str | None,
                    output_digest: str | None, *, stamped: datetime | None = None,
                    **details: Any) -> TraceStep:
        """:meth:`add` with the SHA-256 of the input and output taken beforehand (a large
        message is then let go before the stage ends, not kept for its digest)."""
        tick = self.clock()
        when = stamped if stamped is not None else at + timedelta(seconds=tick - self._began)
        step = TraceStep(stage, when, input_digest, output_digest,
                         {k: v for k, v in details.items() if v not in (None, [], {}, "")})
        self.steps.append(step)
        self.timings[stage] = self.timings.get(stage, 0.0) + tick - self._last
        self._last = tick
        return step

    def settle(self, stage: str, output_digest: str) -> None:
        """The last ``stage`` step's output digest, known only once the step's output was
        written (``compose``: the message, written after the record was attached to it)."""
        for n in range(len(self.steps) - 1, -1, -1):
            if self.steps[n].stage == stage:
                self.steps[n] = replace(self.steps[n], output_digest=output_digest)
                return
        raise ValueError(f"no {stage} step to settle")

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_version": 1,
            "gateway": f"passerelle {__version__}",
            "message_id": self.message_id,
            "direction": self.direction,
            "steps": [s.to_json() for s in self.steps],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, UTF-8): what is attached and what is digested."""
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")

    def digest(self) -> str:
        return sha256(self.to_bytes())
