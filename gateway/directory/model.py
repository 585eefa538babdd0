"""One line of the national extraction: the 31 columns, in order."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, fields

HEADER = (  # noqa: SIM905 (the header as the specification prints it)
    "Type de BAL|Adresse BAL|Type Identifiant PP|Identifiant PP|Identification nationale PP|"
    "Type identifiant structure|Identification Structure|Service de rattachement|"
    "Civilité d'exercice|Nom d'exercice|Prénom d'exercice|Catégorie profession|"
    "Libellé de catégorie profession|Code Profession|Libellé Profession|Code savoir-faire|"
    "Libellé savoir-faire|Dématérialisation|Raison Sociale structure BAL|"
    "Enseigne commerciale structure BAL|L2COMPLEMENTLOCALISATION structure BAL|"
    "L3COMPLEMENTDISTRIBUTION structure BAL|L4NUMEROVOIE structure BAL|"
    "L4COMPLEMENTNUMEROVOIE structure BAL|NL4TYPEVOIE structure BAL|"
    "L4LIBELLEVOIE structure BAL|L5LIEUDITMENTION structure BAL|"
    "L6LIGNEACHEMINEMENT structure BAL|Code postal structure BAL|"
    "Département structure BAL|Pays structure BAL"
).split("|")


@dataclass(frozen=True)
class DirectoryEntry:
    box_type: str  # PER, ORG, APP, CAB
    address: str
    pp_id_type: str
    pp_id: str
    pp_national_id: str
    structure_id_type: str
    structure_id: str
    service: str
    civility: str
    family_name: str
    given_name: str
    profession_category: str
    profession_category_label: str
    profession_code: str
    profession_label: str
    skill_code: str
    skill_label: str
    dematerialisation: str
    structure_name: str
    structure_brand: str
    l2: str
    l3: str
    l4_number: str
    l4_complement: str
    l4_type: str
    l4_label: str
    l5: str
    l6: str
    postcode: str
    department: str
    country: str

    @property
    def rpps(self) -> str:
        """The 11-digit RPPS: "Identifiant PP" when it is 11 digits, else the national id
        ("8" + RPPS) without its type digit."""
        if len(self.pp_id) == 11 and self.pp_id.isdigit():
            return self.pp_id
        nat = self.pp_national_id
        if len(nat) == 12 and nat.isdigit() and nat[0] == "8":
            return nat[1:]
        return ""

    def values(self) -> tuple[str, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


COLUMNS = len(HEADER)
assert COLUMNS == 31 == len(fields(DirectoryEntry))


def fold_name(text: str) -> str:
    """Upper case without accents or extra spaces: how names are compared."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.upper().replace("-", " ").split())
