"""A realistic synthetic extraction, for tests and the benchmark (not real people).

Several mailboxes for some RPPS, all mailbox types, departments, internationalised domains,
and, on request, malformed lines and duplicated addresses.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

from gateway.directory.model import HEADER

FAMILIES = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
            "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Bertrand",
            "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Lefebvre", "Mercier",
            "Dupont", "Lambert", "Bonnet", "François", "Martinez", "Légaré", "Château")
GIVENS = ("Jean", "Marie", "Pierre", "Anne", "Élise", "François", "Hélène", "Jérôme", "Chloé",
          "Zoé", "Noël", "Agnès", "Benoît", "Cécile", "Gaëlle", "Loïc")
DOMAINS = ("hopital-a.mssante.example", "clinique-b.mssante.example", "mssante.example",
           "médecins-c.mssante.example", "xn--sant-epa.mssante.example", "chu-d.mssante.example")
TYPES = ("PER", "PER", "PER", "PER", "ORG", "CAB", "APP")


def line(rng: random.Random, n: int) -> str:
    kind = rng.choice(TYPES)
    family, given = rng.choice(FAMILIES), rng.choice(GIVENS)
    rpps = f"{10000000000 + n // 2:011d}" if kind in ("PER", "CAB") else ""
    local = f"{given}.{family}{n}".lower().replace(" ", "")
    domain = rng.choice(DOMAINS)
    dept = f"{rng.randint(1, 95):02d}"
    values = [kind, f"{local}@{domain}", "8" if rpps else "", rpps, f"8{rpps}" if rpps else "",
              "1", f"1{rng.randint(10**8, 10**9 - 1)}", "Cardiologie" if kind == "ORG" else "",
              "DR", family if rpps else "", given if rpps else "", "C", "Civil", "10",
              "Médecin", "SM26", "Qualifié en médecine générale", "O", f"Cabinet {family}",
              "", "", "", str(rng.randint(1, 99)), "", "RUE", "de la Paix", "",
              f"{dept}000 VILLE", f"{dept}000", dept, "FRANCE"]
    return "|".join(values)


def write(path: Path, lines: int, *, seed: int = 1, malformed: int = 0, duplicates: int = 0,
          zipped: bool = False, bom: bool = False) -> Path:
    rng = random.Random(seed)
    body: list[str] = ["|".join(HEADER)]
    for n in range(lines):
        body.append(line(rng, n))
    for k in range(duplicates):
        body.append(body[1 + k])
    text = ("\ufeff" if bom else "") + "\n".join(body) + "\n"
    data = text.encode("utf-8")
    bad = b"".join(
        (b"PER|only|four|columns\n", b"PER|\xff\xfe not utf-8|" + b"|" * 29 + b"\n", b"\n")[
            k % 3] for k in range(malformed))
    data += bad
    if zipped:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("Extraction_MSSante.txt", data)
    else:
        path.write_bytes(data)
    return path
