"""Frozen reference (see __init__).

METADATA.XML of an IHE XDM package: the ebRIM 3.0 SubmitObjectsRequest (identifiers from
../shared/specs/cda-xdm.md), written from the CDAs it describes and read back for checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

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


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = etree.SubElement(parent, R + "Slot", name=name)
    vl = etree.SubElement(slot, R + "ValueList")
    for v in values:
        etree.SubElement(vl, R + "Value").text = v


def _name(parent: etree._Element, text: str) -> None:
    etree.SubElement(etree.SubElement(parent, R + "Name"), R + "LocalizedString", value=text)


def _classify(parent: etree._Element, scheme: str, obj: str, cid: str, code: Code) -> None:
    c = etree.SubElement(
        parent,
        R + "Classification",
        id=cid,
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation=code[0],
    )
    _slot(c, "codingScheme", code[2])
    _name(c, code[1])


def _author(parent: etree._Element, scheme: str, obj: str, cid: str, xcn: str, inst: str) -> None:
    c = etree.SubElement(
        parent,
        R + "Classification",
        id=cid,
        classificationScheme=scheme,
        classifiedObject=obj,
        nodeRepresentation="",
    )
    _slot(c, "authorPerson", xcn)
    if inst:
        _slot(c, "authorInstitution", inst)


def _ext_id(parent: etree._Element, scheme: str, obj: str, eid: str, value: str, name: str) -> None:
    e = etree.SubElement(
        parent,
        R + "ExternalIdentifier",
        id=eid,
        registryObject=obj,
        identificationScheme=scheme,
        value=value,
    )
    _name(e, name)


def build(
    entries: list[Entry],
    *,
    set_id: str,
    set_unique_id: str,
    submission_time: str,
    source_id: str,
    institution: str,
    facility: Code,
    practice: Code,
    content_type: Code,
    uid: Callable[[str], str],
) -> bytes:
    """The SubmitObjectsRequest for `entries`; `uid(name)` mints the object ids."""
    req = etree.Element("{%s}SubmitObjectsRequest" % LCM, nsmap={"lcm": LCM, "rim": RIM})  # noqa: UP031
    rol = etree.SubElement(req, R + "RegistryObjectList")
    for e in entries:
        eo = etree.SubElement(
            rol, R + "ExtrinsicObject", id=e.entry_id, mimeType="text/xml", objectType=DOC_ENTRY
        )
        _slot(eo, "creationTime", e.creation_time)
        _slot(eo, "hash", e.sha1)
        _slot(eo, "languageCode", "fr-FR")
        _slot(eo, "serviceStartTime", e.service_start)
        _slot(eo, "serviceStopTime", e.service_start)
        _slot(eo, "size", str(e.size))
        _slot(eo, "sourcePatientId", e.patient_cx)
        _slot(eo, "sourcePatientInfo", *e.patient_info)
        _slot(eo, "URI", e.uri)
        _name(eo, e.title)
        n = e.entry_id
        _author(eo, DE_AUTHOR, n, f"{n}-au", e.author_xcn, institution)
        _classify(
            eo,
            DE_CLASS,
            n,
            f"{n}-cl",
            ("11502-2", "CR d'examens biologiques", "2.16.840.1.113883.6.1"),
        )
        _classify(eo, DE_CONF, n, f"{n}-co", ("N", "Normal", "2.16.840.1.113883.5.25"))
        fmt_name = "CR-BIO" if e.format_code == FORMAT_CRBIO else "PDF (XDS-SD)"
        _classify(eo, DE_FORMAT, n, f"{n}-fo", (e.format_code, fmt_name, "1.3.6.1.4.1.19376.1.2.3"))
        _classify(eo, DE_FACILITY, n, f"{n}-fa", facility)
        _classify(eo, DE_PRACTICE, n, f"{n}-pr", practice)
        _classify(
            eo,
            DE_TYPE,
            n,
            f"{n}-ty",
            ("11502-2", "CR d'examens biologiques", "2.16.840.1.113883.6.1"),
        )
        _ext_id(eo, DE_PATIENT, n, f"{n}-pid", e.patient_cx, "XDSDocumentEntry.patientId")
        _ext_id(eo, DE_UNIQUE, n, f"{n}-uid", e.unique_id, "XDSDocumentEntry.uniqueId")
    rp = etree.SubElement(rol, R + "RegistryPackage", id=set_id)
    _slot(rp, "submissionTime", submission_time)
    _name(rp, "Envoi de documents")
    _author(rp, SS_AUTHOR, set_id, f"{set_id}-au", entries[0].author_xcn, institution)
    _classify(rp, SS_CONTENT_TYPE, set_id, f"{set_id}-ct", content_type)
    _ext_id(rp, SS_UNIQUE, set_id, f"{set_id}-uid", set_unique_id, "XDSSubmissionSet.uniqueId")
    _ext_id(rp, SS_SOURCE, set_id, f"{set_id}-sid", source_id, "XDSSubmissionSet.sourceId")
    _ext_id(
        rp, SS_PATIENT, set_id, f"{set_id}-pid", entries[0].patient_cx, "XDSSubmissionSet.patientId"
    )
    etree.SubElement(
        rol,
        R + "Classification",
        id=f"{set_id}-ss",
        classifiedObject=set_id,
        classificationNode=SUBMISSION_SET,
    )
    for k, e in enumerate(entries, start=1):
        a = etree.SubElement(
            rol,
            R + "Association",
            id=uid(f"assoc{k}"),
            associationType=HAS_MEMBER,
            sourceObject=set_id,
            targetObject=e.entry_id,
        )
        _slot(a, "SubmissionSetStatus", "Original")
    return bytes(etree.tostring(req, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def listed(root: etree._Element) -> list[tuple[str, dict[str, list[str]]]]:
    """(entry id, slots) for each DocumentEntry of a parsed METADATA.XML."""
    out = []
    for eo in root.iter(R + "ExtrinsicObject"):
        slots: dict[str, list[str]] = {}
        for slot in eo.findall(R + "Slot"):
            slots[slot.get("name") or ""] = [v.text or "" for v in slot.iter(R + "Value")]
        out.append((eo.get("id") or "", slots))
    return out
