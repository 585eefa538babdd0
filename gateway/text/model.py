"""Values produced by text repair: the faithful text, what was found, what was changed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Repair:
    """One change made to the text after its first reading.

    ``kind`` is a stable label (``mojibake``, ``mac_pc``, ``misread``, ``mixed_encoding``,
    ``line_ends``, ``bom``, ``nfc``, ``dos_eof``); ``offset``/``line``/``column`` locate the
    change in the *output* text (0-based offset, 1-based line and column); ``before`` and
    ``after`` are the text as first read and as repaired.
    """

    kind: str
    detail: str
    offset: int
    line: int
    column: int
    before: str
    after: str


@dataclass(frozen=True)
class EncodingFound:
    """An encoding the input was written in, the share of non-ASCII bytes it covers."""

    name: str
    confidence: float
    share: float = 1.0


@dataclass(frozen=True)
class TextResult:
    """The text a clinician must read: NFC, LF line ends, plus how we got there."""

    text: str
    encodings: tuple[EncodingFound, ...]
    repairs: tuple[Repair, ...] = field(default=())

    @property
    def encoding(self) -> str:
        """The encodings found, joined with ``+`` when the input mixes several."""
        return "+".join(e.name for e in self.encodings)

    @property
    def confidence(self) -> float:
        return min((e.confidence for e in self.encodings), default=1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "encoding": self.encoding,
            "confidence": round(self.confidence, 3),
            "encodings": [asdict(e) for e in self.encodings],
            "repairs": [asdict(r) for r in self.repairs],
        }

    def summary(self) -> dict[str, Any]:
        """What the trace record and logs may carry: no text, only kinds and counts."""
        kinds: dict[str, int] = {}
        for r in self.repairs:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        return {
            "encoding": self.encoding,
            "confidence": round(self.confidence, 3),
            "repairs": kinds,
        }
