"""The HPRIM Net document model shared by the parser, the writer, CDA and PDF (plain values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class Finding:
    """Something a reader or builder could not do faithfully; never carries patient data."""

    code: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.code}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class HprimHeader:
    """The 12 identity lines, as raw strings (codes and address padding stripped)."""

    patient_code: str = ""
    last_name: str = ""
    first_name: str = ""
    address1: str = ""
    address2: str = ""
    postcode_city: str = ""
    birth_date: str = ""
    nir: str = ""
    lab_ref: str = ""
    exam_date: str = ""
    sender_code: str = ""
    sender_name: str = ""
    recipient_code: str = ""
    recipient_name: str = ""
    blank_line_13: bool = False
    birth: date | None = None  # parsed birth_date, when readable
    exam: date | None = None  # parsed exam_date, when readable

    @property
    def postcode(self) -> str:
        return self.postcode_city[:5].strip()

    @property
    def city(self) -> str:
        return self.postcode_city[5:].strip()


@dataclass(frozen=True)
class TexLine:
    """`TEX|text`: one line of report text inside the coded block."""

    text: str = ""


@dataclass(frozen=True)
class ResLine:
    """`RES|...`: one coded result, the 14 fields of HPRIM Net (field 1 is the tag)."""

    label: str = ""
    code: str = ""
    kind: str = ""  # N numeric, A alphanumeric, C coded
    value: str = ""
    unit: str = ""
    low: str = ""
    high: str = ""
    flag: str = ""  # L H LL HH N or empty
    status: str = ""  # F validated, R not validated, C corrected
    value2: str = ""
    unit2: str = ""
    low2: str = ""
    high2: str = ""

    def fields(self) -> tuple[str, ...]:
        """Fields 2..14 in order."""
        return (
            self.label,
            self.code,
            self.kind,
            self.value,
            self.unit,
            self.low,
            self.high,
            self.flag,
            self.status,
            self.value2,
            self.unit2,
            self.low2,
            self.high2,
        )


LabLine = TexLine | ResLine


@dataclass(frozen=True)
class HprimDocument:
    """One document of a body, ended by ****FIN****."""

    header: HprimHeader
    free_text: str = ""
    lab: list[LabLine] | None = None

    @property
    def results(self) -> list[ResLine]:
        return [x for x in self.lab or [] if isinstance(x, ResLine)]


@dataclass(frozen=True)
class HprimFile:
    """A whole HPRIM body: its documents and what the parser could not read."""

    documents: list[HprimDocument] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    ended: bool = False  # ****FINFICHIER**** seen
