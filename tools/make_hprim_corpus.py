"""Write the HPRIM Net test corpus (fixtures/hprim/*.hpr): every variant of specs/hprim-net.md.

Run `python tools/make_hprim_corpus.py` from the repository root; the files are committed and
the tests check that this script still writes the same bytes.  Patients are invented.
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "hprim"

PATIENTS = [
    (
        "P0001",
        "MARTIN",
        "Élodie",
        "12 rue des Écoles",
        "Bât. B",
        "75005 PARIS",
        "14/07/1962",
        "2620775123456 45",
        "24-000117",
        "03/04/2024",
    ),
    (
        "P0002",
        "LEFÈVRE",
        "François",
        "3 chemin du Moulin",
        "",
        "69003 LYON",
        "1948-11-02",
        "1481169123123 07",
        "24-000118",
        "04/04/2024",
    ),
    (
        "P0003",
        "NGUYEN",
        "Anaïs",
        "",
        "",
        "13008 MARSEILLE",
        "02/03/85",
        "",
        "24-000119",
        "05/04/2024",
    ),
]

PANELS = {
    "glycemie": ["RES|GLYCEMIE à jeun|glyc33|N|0.91|g/l|0.74|1.06|N|F|5.05|mmol/l|4.11|5.88"],
    "nfs": [
        "RES|LEUCOCYTES|gb|N|2920|/mm3|4000|10000|L|F",
        "RES|Hématies|GR|N|4.12|T/L|4.20|5.40|L|F",
        "RES|Hémoglobine|HB|N|12.1|g/dl|12.5|15.5|L|F",
        "RES|Hématocrite|HT|N|37.2|%|37|47|N|F",
        "RES|VGM|VGM|N|90|fl|80|100|N|F",
        "RES|Plaquettes|PLQ|N|35|G/L|150|400|LL|F",
        "RES|Polynucléaires neutrophiles|PNN|N|0.4|G/L|1.5|7|LL|F",
    ],
    "iono": [
        "RES|Sodium|NA|N|139|mmol/l|136|145|N|F",
        "RES|Potassium|K|N|6.8|mmol/l|3.5|5.1|HH|F",
        "RES|Chlore|CL|N|101|mmol/l|98|107|N|F",
        "RES|Créatinine|CREA|N|9.8|mg/l|5.7|11.1|N|F|86.7|µmol/l|50|98",
        "RES|DFG CKD-EPI|DFG|N|72|ml/min/1.73m2|60||N|F",
    ],
    "lipides": [
        "RES|CHOLESTEROL TOTAL|CT|N|2.31|g/l||2.00|H|F|5.97|mmol/l||5.17",
        "RES|CHOLESTEROL HDL|hdl33|N|0.63|g/l|0.40||N|F|1.63|mmol/l|1.03|",
        "RES|TRIGLYCERIDES|TG|N|1.20|g/l||1.50|N|F",
        "RES|CHOLESTEROL LDL|LDL|N|1.44|g/l||1.60|N|R",
    ],
    "hepatique": [
        "RES|ASAT|ASAT|N|32|UI/l||35|N|F",
        "RES|ALAT|ALAT|N|58|UI/l||45|H|C",
        "RES|Gamma GT|GGT|N|210|UI/l|9|36|HH|F",
        "RES|Bilirubine totale|BILT|N|7|mg/l||12|N|F",
    ],
    "hormono": [
        "RES|TSH ultra-sensible|TSH|N|0.005|mUI/l|0.27|4.2|LL|F",
        "RES|T4 libre|T4L|N|+31.5|pmol/l|12|22|HH|F",
        "RES|HbA1c|HBA1C|N|7.4|%|4|6|H|F|57|mmol/mol|20|42",
    ],
    "inflammation": [
        "RES|PROTEINE C-REACTIVE (CRP)|CRPS33|A|    < 0.12  mg/l |||||F",
        "RES|Ferritine|FERR|N|12|ng/ml|15|150|L|F",
        "RES|Vitesse de sédimentation|VS|N|48|mm/h||20|H|F",
    ],
    "hemostase": [
        "RES|INR|INR|N|2.8||2|3|N|F",
        "RES|Taux de prothrombine|TP|N|31|%|70|100|L|F",
        "RES|D-dimères|DDIM|A|< 270 µg/l FEU||||N|F",
    ],
    "oddities": [
        "RES|Groupe sanguin|ABO|C|A+||||",
        "RES|Recherche d'agglutinines irrégulières|RAI|A|Négative",
        "RES|Dosage maison|XYZ42|N|17.3|U/zz|10|20|N|F",
        "RES|Glycémie capillaire|GLYM|N|.5|mmol/l|||L|R",
        "RES|Commentaire vide||A|",
        "RES|Lithium|LITH|N|-0.0|mmol/l|0.5|0.8|L|F",
    ],
}

FREE = [
    "            COMPTE RENDU D'EXAMENS BIOLOGIQUES",
    "",
    "Prélèvement du 03/04/2024 à 08h12 — à jeun : oui",
    "Résultats validés par Dr Œillet (biologiste) « sous réserve »",
]


def header(p: tuple[str, ...], thirteen: bool) -> list[str]:
    lines = [
        p[0],
        p[1],
        p[2],
        f"{p[3]:<30}" if p[3] else " ",
        f"{p[4]:<30}" if p[4] else " ",
        p[5],
        p[6],
        p[7],
        p[8],
        p[9],
        f"{'LABO75':<10} Laboratoire Bio-Santé Paris",
        f"{'DRDUPONT':<10} dr.dupont",
    ]
    return [*lines, ""] if thirteen else lines


def document(p: tuple[str, ...], panels: list[str], *, thirteen: bool, tex: bool) -> list[str]:
    lines = header(p, thirteen) + FREE + [" ****LAB****" if tex else "****LAB****"]
    for name in panels:
        if tex:
            lines += [f"TEX|{name.upper()}", "TEX"]
        lines += PANELS[name]
    return [*lines, "****FIN****"]


def corpus() -> dict[str, bytes]:
    """File name → bytes, for every combination the tests rely on."""
    ends = {"crlf": "\r\n", "lf": "\n", "cr": "\r"}
    files: dict[str, bytes] = {}
    names = list(PANELS)
    n = 0
    for k, panel in enumerate(names):
        for end_name, end in ends.items():
            n += 1
            p = PATIENTS[(k + n) % len(PATIENTS)]
            thirteen = (n % 2) == 0
            doc = document(p, [panel], thirteen=thirteen, tex=(n % 3 == 0))
            name = f"{n:02d}-{panel}-{end_name}{'-13' if thirteen else '-12'}.hpr"
            files[name] = (end.join([*doc, "****FINFICHIER****"]) + end).encode("utf-8")
    many = document(PATIENTS[0], ["nfs", "iono"], thirteen=True, tex=True)
    many += document(PATIENTS[1], ["lipides", "hepatique"], thirteen=False, tex=False)
    many += document(PATIENTS[2], ["oddities", "inflammation"], thirteen=True, tex=True)
    files[f"{n + 1:02d}-several-documents-crlf.hpr"] = (
        "\r\n".join([*many, "****FINFICHIER****"]) + "\r\n"
    ).encode("utf-8")
    free_only = header(PATIENTS[0], True) + FREE + ["****FIN****", "****FINFICHIER****"]
    files[f"{n + 2:02d}-free-text-only-crlf.hpr"] = ("\r\n".join(free_only) + "\r\n").encode()
    return files


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in corpus().items():
        (OUT / name).write_bytes(data)
    print(f"wrote {len(corpus())} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
