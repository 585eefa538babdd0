"""Identifiers of CDA R2 CR-BIO (CI-SIS) and of passerelle's own code systems."""

from __future__ import annotations

import uuid

NS = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {None: NS, "xsi": XSI}
H = "{%s}" % NS  # noqa: UP031 — lxml Clark notation prefix
XSI_TYPE = "{%s}type" % XSI  # noqa: UP031

LOINC = "2.16.840.1.113883.6.1"
UCUM = "2.16.840.1.113883.6.8"
INTERPRETATION = "2.16.840.1.113883.5.83"
CONFIDENTIALITY = "2.16.840.1.113883.5.25"
GENDER = "2.16.840.1.113883.5.1"
INS_NIR = "1.2.250.1.213.1.4.8"
RPPS_ROOT = "1.2.250.1.71.4.2.1"
ORG_ROOT = "1.2.250.1.71.4.2.2"


def _uuid_oid(name: str) -> str:
    # 2.25.<uuid> OIDs may be minted by anyone (ITU-T X.667): no registration to fake.
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:passerelle:' + name).int}"


LEGACY_ROOT = _uuid_oid("legacy-codes")  # patient, sender and recipient codes of HPRIM lines
LOCAL_LAB_CODES = _uuid_oid("hprim-analysis-codes")  # RES field 3
LOCAL_UNITS = _uuid_oid("hprim-units")  # RES field 6, as written by the lab
ORDER_ROOT = _uuid_oid("hprim-lab-ref")  # header line 9

DOC_TEMPLATES = (
    "2.16.840.1.113883.2.8.2.1",
    "1.2.250.1.213.1.1.1.1",
    "1.3.6.1.4.1.19376.1.3.3",
    "1.2.250.1.213.1.1.1.55",
)
LEVEL1_TEMPLATES = (
    "2.16.840.1.113883.2.8.2.1",
    "1.2.250.1.213.1.1.1.1",
    "1.3.6.1.4.1.19376.1.2.20",
)
CHAPTER_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.3.2.1", "1.2.250.1.213.1.1.2.70")
SUBSECTION_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.3.2.2", "1.2.250.1.213.1.1.2.71")
ENTRY_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.1", "1.2.250.1.213.1.1.3.21")
OBS_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.1.6", "1.2.250.1.213.1.1.3.80")
CRBIO_CODE = ("11502-2", "CR d'examens biologiques")

# HPRIM status (field 10) ↔ ActStatus.  "Corrected" has no ActStatus of its own: it is a
# completed result, and the narrative's status cell keeps the letter.
STATUS_TO_ACT = {"F": "completed", "C": "completed", "R": "active", "": "completed"}
FLAG_DISPLAY = {"N": "Normal", "L": "Bas", "H": "Haut", "LL": "Critique bas", "HH": "Critique haut"}
