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

CRBIO_TEMPLATE = "1.2.250.1.213.1.1.1.55"
DOC_TEMPLATES = (
    "2.16.840.1.113883.2.8.2.1",
    "1.2.250.1.213.1.1.1.1",
    "1.3.6.1.4.1.19376.1.3.3",
    "1.2.250.1.213.1.1.1.55",
)
# Level 1: the CR-BIO header (the 2024.01 schematron asks every CR-BIO for the XD-LAB
# template) over an XDS-SD body carrying the PDF, as the agency's level-1 example.
LEVEL1_TEMPLATES = (
    "2.16.840.1.113883.2.8.2.1",
    "1.2.250.1.213.1.1.1.1",
    "1.3.6.1.4.1.19376.1.3.3",
    "1.3.6.1.4.1.19376.1.2.20",
)
CRBIO_VERSION = "2024.01"  # extension of the CR-BIO templateId 1.2.250.1.213.1.1.1.55
PDF_COPY_TEMPLATE = "1.2.250.1.213.1.1.2.243"  # FR-Document-PDF-copie section
PDF_COPY_ORGANIZER = "1.2.250.1.213.1.1.3.18"
PDF_COPY_OBS = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48",
                "1.2.250.1.213.1.1.3.48.18")
PERFORMER_TEMPLATE = "1.3.6.1.4.1.19376.1.3.3.1.7"
CHAPTER_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.3.2.1", "1.2.250.1.213.1.1.2.70")
SUBSECTION_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.3.2.2", "1.2.250.1.213.1.1.2.71")
ENTRY_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.1", "1.2.250.1.213.1.1.3.21")
OBS_TEMPLATES = ("1.3.6.1.4.1.19376.1.3.1.6", "1.2.250.1.213.1.1.3.80")
CRBIO_CODE = ("11502-2", "CR d'examens biologiques")

# HPRIM status (field 10) ↔ ActStatus.  CR-BIO allows a result to be `completed` or `aborted`:
# validated (F), corrected (C) and unstated ("") results are completed — "corrected" has no
# ActStatus of its own, the narrative's status cell keeps the letter.  A result not validated
# by the biologist (R) is never sent as a structured result: it stays in the narrative with
# its status (mappings/README.md, "Result status").  R → active is kept for reading CDAs.
STATUS_TO_ACT = {"F": "completed", "C": "completed", "R": "active", "": "completed"}
STRUCTURED_STATUSES = frozenset({"F", "C", ""})
FLAG_DISPLAY = {"N": "Normal", "L": "Bas", "H": "Haut", "LL": "Critique bas", "HH": "Critique haut"}
