"""METADATA.XML of an IHE XDM package: the ebRIM 3.0 SubmitObjectsRequest (identifiers from
the ANS CI-SIS XDM metadata), written from the CDAs it describes and read back for checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from gateway.documents.narrative import attr, text

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
R = "{%s}" % RIM  # noqa: UP031
DOC_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SS_AUTHOR, SS_CONTENT_TYPE = (
    "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d",
    "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500",
)
SS_PATIENT, SS_SOURCE, SS_UNIQUE = (
    "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
    "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832",
    "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8",
)
DE_AUTHOR, DE_CLASS, DE_TYPE = (
    "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
    "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
)
DE_CONF, DE_FORMAT, DE_FACILITY, DE_PRACTICE = (
    "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
)
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_PATIENT, DE_UNIQUE = (
    "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
    "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab",
)
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
FORMAT_CRBIO = "urn:ihe:lab:xd-lab:2008"
FORMAT_PDF = "urn:ihe:iti:xds-sd:pdf:2008"

Code = tuple[str, str, str]  # (code, display name, coding scheme)


@dataclass(frozen=True)
class Entry:
    """What METADATA.XML says about one document."""

    entry_id: str
    unique_id: str
    uri: str
    size: int
    sha1: str  # upper-case hex
    patient_cx: str
    patient_info: tuple[str, ...]  # PID-5, PID-7, PID-8 values
    creation_time: str
    service_start: str
    title: str
    format_code: str
    author_xcn: str
    institution: str  # XON of the author's organisation ("" when unknown)
    specialty: Code | None  # the author's profession/specialty (JDV J01)
    facility: Code  # healthcareFacilityTypeCode (JDV J02)
    practice: Code  # practiceSettingCode (JDV J04)
    events: tuple[Code, ...] = ()  # eventCodeList: the serviceEvent codes
    legal_xcn: str = ""  # legalAuthenticator


# Written as text, indented as lxml's pretty_print indented the tree it was once built as
# (the golden files, tests/documents/test_golden.py, hold the bytes to that); escaping as in
# narrative.
_HEAD = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}">\n'
    "  <rim:RegistryObjectList>\n"
)
_TAIL = "  </rim:RegistryObjectList>\n</lcm:SubmitObjectsRequest>\n"


def _slot(w: list[str], pad: str, name: str, *values: str) -> None:
    w.append(f'{pad}<rim:Slot name="{attr(name)}">\n{pad}  <rim:ValueList>\n')
    for v in values:
        w.append(f"{pad}    <rim:Value>{text(v)}</rim:Value>\n")
    w.append(f"{pad}  </rim:ValueList>\n{pad}</rim:Slot>\n")


def _name(w: list[str], pad: str, value: str) -> None:
    w.append(f'{pad}<rim:Name>\n{pad}  <rim:LocalizedString value="{attr(value)}"/>\n'
             f"{pad}</rim:Name>\n")


def _classify(w: list[str], pad: str, scheme: str, obj: str, cid: str, code: Code) -> None:
    w.append(f'{pad}<rim:Classification id="{attr(cid)}" classificationScheme="{scheme}" '
             f'classifiedObject="{attr(obj)}" nodeRepresentation="{attr(code[0])}">\n')
    _slot(w, pad + "  ", "codingScheme", code[2])
    _name(w, pad + "  ", code[1])
    w.append(f"{pad}</rim:Classification>\n")


def _author(
    w: list[str], pad: str, scheme: str, obj: str, cid: str, xcn: str, inst: str,
    specialty: Code | None = None,
) -> None:
    w.append(f'{pad}<rim:Classification id="{attr(cid)}" classificationScheme="{scheme}" '
             f'classifiedObject="{attr(obj)}" nodeRepresentation="">\n')
    _slot(w, pad + "  ", "authorPerson", xcn)
    if inst:
        _slot(w, pad + "  ", "authorInstitution", inst)
    if specialty:
        _slot(w, pad + "  ", "authorSpecialty", "^".join(specialty))
    w.append(f"{pad}</rim:Classification>\n")


def _ext_id(w: list[str], pad: str, scheme: str, obj: str, eid: str, value: str, name: str) -> None:
    w.append(f'{pad}<rim:ExternalIdentifier id="{attr(eid)}" registryObject="{attr(obj)}" '
             f'identificationScheme="{scheme}" value="{attr(value)}">\n')
    _name(w, pad + "  ", name)
    w.append(f"{pad}</rim:ExternalIdentifier>\n")


_CRBIO_TYPE: Code = ("11502-2", "CR d'examens biologiques", "2.16.840.1.113883.6.1")
# classCode from JDV_J06_XdsClassCode_CISIS (TRE_A03 ClasseDocument, 1.2.250.1.213.1.1.4.1)
_CLASS_CR: Code = ("10", "Compte rendu", "1.2.250.1.213.1.1.4.1")
_NORMAL: Code = ("N", "Normal", "2.16.840.1.113883.5.25")


def build(
    entries: list[Entry],
    *,
    set_id: str,
    set_unique_id: str,
    submission_time: str,
    source_id: str,
    content_type: Code,
    uid: Callable[[str], str],
) -> bytes:
    """The SubmitObjectsRequest for `entries`; `uid(name)` mints the object ids."""
    w = [_HEAD]
    p3, p4 = " " * 4, " " * 6
    for e in entries:
        n = e.entry_id
        w.append(f'{p3}<rim:ExtrinsicObject id="{attr(n)}" mimeType="text/xml" '
                 f'objectType="{DOC_ENTRY}">\n')
        _slot(w, p4, "creationTime", e.creation_time)
        _slot(w, p4, "hash", e.sha1)
        _slot(w, p4, "languageCode", "fr-FR")
        if e.legal_xcn:
            _slot(w, p4, "legalAuthenticator", e.legal_xcn)
        _slot(w, p4, "serviceStartTime", e.service_start)
        _slot(w, p4, "serviceStopTime", e.service_start)
        _slot(w, p4, "size", str(e.size))
        _slot(w, p4, "sourcePatientId", e.patient_cx)
        _slot(w, p4, "sourcePatientInfo", *e.patient_info)
        _slot(w, p4, "URI", e.uri)
        _name(w, p4, e.title)
        _author(w, p4, DE_AUTHOR, n, f"{n}-au", e.author_xcn, e.institution, e.specialty)
        _classify(w, p4, DE_CLASS, n, f"{n}-cl", _CLASS_CR)
        _classify(w, p4, DE_CONF, n, f"{n}-co", _NORMAL)
        fmt_name = "CR-BIO" if e.format_code == FORMAT_CRBIO else "PDF (XDS-SD)"
        _classify(
            w, p4, DE_FORMAT, n, f"{n}-fo", (e.format_code, fmt_name, "1.3.6.1.4.1.19376.1.2.3")
        )
        _classify(w, p4, DE_FACILITY, n, f"{n}-fa", e.facility)
        _classify(w, p4, DE_PRACTICE, n, f"{n}-pr", e.practice)
        _classify(w, p4, DE_TYPE, n, f"{n}-ty", _CRBIO_TYPE)
        for k, event in enumerate(e.events, start=1):
            _classify(w, p4, DE_EVENT, n, f"{n}-ev{k}", event)
        _ext_id(w, p4, DE_PATIENT, n, f"{n}-pid", e.patient_cx, "XDSDocumentEntry.patientId")
        _ext_id(w, p4, DE_UNIQUE, n, f"{n}-uid", e.unique_id, "XDSDocumentEntry.uniqueId")
        w.append(f"{p3}</rim:ExtrinsicObject>\n")
    w.append(f'{p3}<rim:RegistryPackage id="{attr(set_id)}">\n')
    _slot(w, p4, "submissionTime", submission_time)
    _name(w, p4, "Envoi de documents")
    first = entries[0]
    _author(w, p4, SS_AUTHOR, set_id, f"{set_id}-au", first.author_xcn, first.institution,
            first.specialty)
    _classify(w, p4, SS_CONTENT_TYPE, set_id, f"{set_id}-ct", content_type)
    _ext_id(w, p4, SS_UNIQUE, set_id, f"{set_id}-uid", set_unique_id, "XDSSubmissionSet.uniqueId")
    _ext_id(w, p4, SS_SOURCE, set_id, f"{set_id}-sid", source_id, "XDSSubmissionSet.sourceId")
    _ext_id(
        w, p4, SS_PATIENT, set_id, f"{set_id}-pid", entries[0].patient_cx,
        "XDSSubmissionSet.patientId",
    )
    w.append(f"{p3}</rim:RegistryPackage>\n")
    w.append(f'{p3}<rim:Classification id="{attr(set_id)}-ss" classifiedObject="{attr(set_id)}" '
             f'classificationNode="{SUBMISSION_SET}"/>\n')
    for k, e in enumerate(entries, start=1):
        w.append(f'{p3}<rim:Association id="{attr(uid(f"assoc{k}"))}" '
                 f'associationType="{HAS_MEMBER}" sourceObject="{attr(set_id)}" '
                 f'targetObject="{attr(e.entry_id)}">\n')
        _slot(w, p4, "SubmissionSetStatus", "Original")
        w.append(f"{p3}</rim:Association>\n")
    w.append(_TAIL)
    return "".join(w).encode("utf-8")


def listed(root: etree._Element) -> list[tuple[str, dict[str, list[str]]]]:
    """(entry id, slots) for each DocumentEntry of a parsed METADATA.XML."""
    out = []
    for eo in root.iter(R + "ExtrinsicObject"):
        slots: dict[str, list[str]] = {}
        for slot in eo.findall(R + "Slot"):
            slots[slot.get("name") or ""] = [v.text or "" for v in slot.iter(R + "Value")]
        out.append((eo.get("id") or "", slots))
    return out
