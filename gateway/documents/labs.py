"""The sending laboratories: mappings/labs.csv (documented in mappings/README.md).

A CR-BIO names its author, custodian, legal authenticator, responsible biologist and
performing laboratory by their national identifiers (RPPS, FINESS); an HPRIM report carries
none of them.  This table is the operator's statement of who each sending lab is.  A report
from a lab without a row is not translated (`UnknownLab`, quarantined): the gateway never
makes an author up.

How a report's lab is found: in the pipeline, by the legacy address that signed the message
(the envelope sender the address book binds to the signing key) — never by what the HPRIM
text says of itself; on the command line (`hprim to-cda`), by `--lab` (an address or a FINESS)
or else by the sender code of HPRIM header line 11 (`hprim_code`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gateway.documents import jdv
from gateway.errors import ConfigError, UnknownLab

LABS = "labs.csv"
COLUMNS = (
    "legacy_address",
    "hprim_code",
    "finess",
    "name",
    "street",
    "postcode",
    "city",
    "telecom",
    "biologist_rpps",
    "biologist_family",
    "biologist_given",
    "biologist_specialty",
    "facility_code",
    "practice_code",
    "patient_oid",
)
FINESS = re.compile(r"[0-9]{2}[0-9AB][0-9]{6}")
RPPS = re.compile(r"[0-9]{11}")
OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
TELECOM = re.compile(r"(tel|fax|mailto):\S+")


@dataclass(frozen=True)
class Lab:
    """One row of labs.csv: a laboratory and its responsible biologist."""

    legacy_address: str
    hprim_code: str
    finess: str
    name: str
    street: str
    postcode: str
    city: str
    telecom: str
    biologist_rpps: str
    biologist_family: str
    biologist_given: str
    specialty: jdv.Concept
    facility: jdv.Concept
    practice: jdv.Concept
    patient_oid: str

    @property
    def org_extension(self) -> str:
        """The organisation id under 1.2.250.1.71.4.2.2: "1" (FINESS) then the number."""
        return "1" + self.finess

    @property
    def rpps_extension(self) -> str:
        """The person id under 1.2.250.1.71.4.2.1: "8" (RPPS) then the number."""
        return "8" + self.biologist_rpps


def default_patient_oid(finess: str) -> str:
    """The OID a lab's own patient numbers are sent under when its row names none: a
    2.25 (UUID) OID derived from the FINESS, the same for every report of that lab."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:passerelle:patient-ids:' + finess).int}"


@dataclass(frozen=True)
class LabTable:
    by_address: dict[str, Lab] = field(default_factory=dict)
    by_code: dict[str, Lab] = field(default_factory=dict)
    by_finess: dict[str, Lab] = field(default_factory=dict)

    def for_sender(self, address: str) -> Lab:
        """The lab that signed a message (its legacy address); UnknownLab without a row."""
        lab = self.by_address.get(_addr_key(address))
        if lab is None:
            raise UnknownLab(f"HPRIM report from {address.strip()}: no row for this lab in "
                             "mappings/labs.csv")
        return lab

    def lookup(self, key: str) -> Lab | None:
        """A lab by legacy address, FINESS or HPRIM sender code (command line)."""
        key = key.strip()
        return (self.by_address.get(_addr_key(key)) if "@" in key else None) or (
            self.by_finess.get(key) or self.by_code.get(key)
        )

    def __len__(self) -> int:
        return len(self.by_address)


def _addr_key(address: str) -> str:
    """Local part exactly as written, domain case-insensitive (as the address book)."""
    address = address.strip().strip("<>")
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if local else address


def _concept(table: dict[str, jdv.Concept], code: str, where: str, what: str) -> jdv.Concept:
    concept = table.get(code.strip())
    if concept is None:
        raise ConfigError(f"{where}: {what} {code.strip()!r} is not in the agency's value set")
    return concept


def load_labs(path: Path) -> LabTable:
    """labs.csv (absent file: no lab, every HPRIM report is quarantined); ConfigError names
    the file, row and column of anything wrong."""
    from gateway.documents.codes import read_rows  # here: codes imports this module

    if not path.exists():
        return LabTable()
    table = LabTable()
    for n, row in enumerate(read_rows(path, COLUMNS), start=2):
        where = f"{path}:{n}"
        v = {c: (row.get(c) or "").strip() for c in COLUMNS}
        if "@" not in v["legacy_address"]:
            raise ConfigError(f"{where}: legacy_address is not an address")
        if not FINESS.fullmatch(v["finess"]):
            raise ConfigError(f"{where}: finess is not 9 characters (FINESS number)")
        if not RPPS.fullmatch(v["biologist_rpps"]):
            raise ConfigError(f"{where}: biologist_rpps is not 11 digits")
        for col in ("name", "biologist_family"):
            if not v[col]:
                raise ConfigError(f"{where}: {col} is empty")
        if v["telecom"] and not TELECOM.fullmatch(v["telecom"]):
            raise ConfigError(f"{where}: telecom is not tel:…, fax:… or mailto:…")
        if v["patient_oid"] and not OID.fullmatch(v["patient_oid"]):
            raise ConfigError(f"{where}: patient_oid is not an OID")
        if v["postcode"] and not re.fullmatch(r"[0-9]{5}", v["postcode"]):
            raise ConfigError(f"{where}: postcode is not 5 digits")
        lab = Lab(
            legacy_address=v["legacy_address"],
            hprim_code=v["hprim_code"],
            finess=v["finess"],
            name=v["name"],
            street=v["street"],
            postcode=v["postcode"],
            city=v["city"],
            telecom=v["telecom"],
            biologist_rpps=v["biologist_rpps"],
            biologist_family=v["biologist_family"],
            biologist_given=v["biologist_given"],
            specialty=_concept(jdv.J01_SPECIALTY, v["biologist_specialty"], where,
                               "biologist_specialty"),
            facility=_concept(jdv.J02_FACILITY, v["facility_code"], where, "facility_code"),
            practice=_concept(jdv.J04_PRACTICE, v["practice_code"], where, "practice_code"),
            patient_oid=v["patient_oid"] or default_patient_oid(v["finess"]),
        )
        key = _addr_key(lab.legacy_address)
        if key in table.by_address:
            raise ConfigError(f"{where}: duplicate legacy_address")
        if lab.finess in table.by_finess:
            raise ConfigError(f"{where}: duplicate finess")
        table.by_address[key] = lab
        table.by_finess[lab.finess] = lab
        if lab.hprim_code:
            if lab.hprim_code in table.by_code:
                raise ConfigError(f"{where}: duplicate hprim_code")
            table.by_code[lab.hprim_code] = lab
    return table
