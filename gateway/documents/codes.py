"""The operator's mapping tables: local lab codes → LOINC and free units → UCUM (mappings/*.csv).

Units are matched exactly after trimming spaces: in French labs `G/L` (giga per litre) and
`g/l` (grams per litre) are different quantities, so case is never folded.  A unit mapping only
respells a unit; it never converts a value.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gateway.documents.labs import LABS, LabTable, load_labs
from gateway.errors import ConfigError

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "mappings"
LAB_CODES, UNITS = "lab-codes.csv", "units.csv"
FALLBACK_CHAPTER = "26436-6"  # LOINC "Laboratory studies": results whose chapter is unknown
CHAPTERS = {
    "18719-5": "Biochimie",
    "18720-3": "Hémostase",
    "18721-1": "Suivi thérapeutique",
    "18723-7": "Hématologie",
    "18729-4": "Examens urinaires",
    FALLBACK_CHAPTER: "Examens de laboratoire",
}


@dataclass(frozen=True)
class LabCode:
    """One row of lab-codes.csv."""

    local_code: str
    label: str
    loinc: str
    loinc_display: str
    chapter: str
    default_ucum: str = ""
    loinc2: str = ""  # the LOINC of the same result in the second unit (RES fields 11-14)
    loinc2_display: str = ""


@dataclass(frozen=True)
class CodeTables:
    """Both tables, looked up by the exact local code and the trimmed unit."""

    lab_codes: dict[str, LabCode] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    labs: LabTable = field(default_factory=LabTable)

    def lab(self, local_code: str) -> LabCode | None:
        return self.lab_codes.get(local_code.strip())

    def ucum(self, unit: str) -> str | None:
        return self.units.get(unit.strip())


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    for n, row in enumerate(rows, start=2):
        if any(row.get(c) is None for c in columns):
            raise ConfigError(f"{path}:{n}: short row")
    return rows


@lru_cache(maxsize=8)
def _load(directory: Path) -> CodeTables:
    labs: dict[str, LabCode] = {}
    cols = ("local_code", "label", "loinc", "loinc_display", "chapter")
    for n, row in enumerate(read_rows(directory / LAB_CODES, cols), start=2):
        code = row["local_code"].strip()
        if not code or not row["loinc"].strip():
            raise ConfigError(f"{directory / LAB_CODES}:{n}: empty local_code or loinc")
        if code in labs:
            raise ConfigError(f"{directory / LAB_CODES}:{n}: duplicate local_code")
        labs[code] = LabCode(
            code,
            row["label"],
            row["loinc"].strip(),
            row["loinc_display"],
            row["chapter"].strip() or FALLBACK_CHAPTER,
            (row.get("default_ucum") or "").strip(),
            (row.get("loinc2") or "").strip(),
            (row.get("loinc2_display") or "").strip(),
        )
        if labs[code].loinc2 and not labs[code].loinc2_display:
            raise ConfigError(f"{directory / LAB_CODES}:{n}: loinc2 without loinc2_display")
    units: dict[str, str] = {}
    for n, row in enumerate(read_rows(directory / UNITS, ("unit", "ucum")), start=2):
        unit, ucum = row["unit"].strip(), row["ucum"].strip()
        if not unit or not ucum:
            raise ConfigError(f"{directory / UNITS}:{n}: empty unit or ucum")
        if unit in units:
            raise ConfigError(f"{directory / UNITS}:{n}: duplicate unit")
        units[unit] = ucum
    return CodeTables(labs, units, load_labs(directory / LABS))


def load_tables(directory: Path | str | None = None) -> CodeTables:
    """Load (once per directory) the tables, labs.csv too (gateway.documents.labs);
    ConfigError names the file, row and reason."""
    return _load(Path(directory).resolve() if directory is not None else DEFAULT_DIR)
