"""The trace record: what came in, what was changed, who signed, where it went.

One record per message and direction, one step per stage (``received``, ``open``, ``repair``,
``documents``, ``compose``, ``sign``, ``seal``, ``deliver`` …).  Each step carries the SHA-256 of
its input and output and what it did.  The record travels inside the signed message as a small
JSON part (``application/json; name=passerelle-trace.json``) and each step is appended to the
hash-chained journal, so anyone can later prove what was received and what was sent.

Steps carry no message text, except the before/after of text repairs (words), which the
recipient reads anyway; logs never receive a trace record, only its digest.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway import __version__

TRACE_FILENAME = "passerelle-trace.json"
TRACE_CONTENT_TYPE = "application/json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TraceStep:
    stage: str
    at: datetime
    input_digest: str
    output_digest: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "at": self.at.isoformat(),
            "input_sha256": self.input_digest,
            "output_sha256": self.output_digest,
            **({"details": self.details} if self.details else {}),
        }


@dataclass
class TraceRecord:
    """Built step by step while a message is translated (the only mutable value here)."""

    message_id: str
    direction: str  # "to_trust" or "to_legacy"
    steps: list[TraceStep] = field(default_factory=list)
    # How long each stage took (for metrics only; not part of the record).
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    _last: float = field(default_factory=time.perf_counter, repr=False, compare=False)

    def add(self, stage: str, at: datetime, data_in: bytes, data_out: bytes,
            **details: Any) -> TraceStep:
        return self.add_digests(stage, at, sha256(data_in), sha256(data_out), **details)

    def add_digests(self, stage: str, at: datetime, input_digest: str, output_digest: str,
                    **details: Any) -> TraceStep:
        """:meth:`add` with the SHA-256 of the input and output taken beforehand (a large
        message is then let go before the stage ends, not kept for its digest)."""
        step = TraceStep(stage, at, input_digest, output_digest,
                         {k: v for k, v in details.items() if v not in (None, [], {}, "")})
        self.steps.append(step)
        tick = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + tick - self._last
        self._last = tick
        return step

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
