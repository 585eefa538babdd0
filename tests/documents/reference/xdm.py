"""Frozen reference (see __init__).

IHE XDM packages (IHE_XDM.ZIP): pack CDAs with README, INDEX and ebRIM metadata; unpack and
verify them with zip-bomb and traversal checks made before anything is extracted.

Layout and identifiers: ../shared/specs/cda-xdm.md.  Zips are built in memory with a fixed
timestamp so the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import io
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from gateway.documents import safexml
from gateway.documents.cdaconst import INS_NIR, LEGACY_ROOT, RPPS_ROOT, H
from gateway.documents.model import Finding
from gateway.errors import DocumentError
from tests.documents.reference import ebrim

SUBSET = "IHE_XDM/SUBSET01/"
METADATA = SUBSET + "METADATA.XML"
MAX_ENTRIES = 1000
MAX_ENTRY_BYTES = 50 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed; CDA text compresses ~10:1, bombs 1000:1 and more
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class XdmDocument:
    """A CDA to put in a package."""

    xml: bytes


@dataclass(frozen=True)
class XdmSender:
    """Who sends the package (README.TXT, INDEX.HTM, sourceId, authorInstitution)."""

    name: str
    address: str = ""
    source_oid: str = LEGACY_ROOT
    application: str = "passerelle"
    version: str = "0.1.0"
    vendor: str = "passerelle developers"


@dataclass(frozen=True)
class XdmEntry:
    path: str
    xml: bytes
    entry_id: str


@dataclass(frozen=True)
class XdmPackage:
    documents: list[XdmEntry]
    metadata: bytes
    readme: str = ""
    findings: list[Finding] = field(default_factory=list)


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise DocumentError("submission_time must carry a time zone")
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


_NS = {"h": H[1:-1]}
_PAT = "h:recordTarget/h:patientRole/h:patient"
_AA = "h:author/h:assignedAuthor"


def _xpath(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=_NS)


# Compiled once: an expression handed to ``_Element.xpath`` is compiled on every call, some
# twenty of them for each document packed.
_FIRST = {(path, attr): _xpath(f"{path}/@{attr}") for path, attr in (
    (f"{_PAT}/h:birthTime", "value"), (f"{_PAT}/h:administrativeGenderCode", "code"),
    ("h:effectiveTime", "value"), ("h:id", "root"), ("h:id", "extension"),
    ("h:documentationOf/h:serviceEvent/h:effectiveTime", "value"))}
_STRING = {path: _xpath(f"string({path})") for path in (
    f"{_PAT}/h:name/h:family", f"{_PAT}/h:name/h:given", "h:title",
    f"{_AA}/h:id[@root='{RPPS_ROOT}']/@extension",
    f"{_AA}/h:assignedPerson/h:name/h:family", f"{_AA}/h:assignedPerson/h:name/h:given",
    f"{_AA}/h:representedOrganization/h:name", f"{_AA}/h:id[@root='{LEGACY_ROOT}']/@extension")}
_TEMPLATES = _xpath("h:templateId/@root")


def _describe(n: int, xml: bytes, author_xcn: str) -> ebrim.Entry:
    root = safexml.parse(xml, what=f"CDA #{n}")
    if root.tag != H + "ClinicalDocument":
        raise DocumentError(f"CDA #{n}: root element is not ClinicalDocument")

    def one(path: str, attr: str) -> str:
        found = _FIRST[path, attr](root)
        return str(found[0]) if isinstance(found, list) and found else ""

    ids = {
        str(i.get("root")): str(i.get("extension") or "")
        for i in root.iterfind(f"{H}recordTarget/{H}patientRole/{H}id")
    }
    if ids.get(INS_NIR):
        cx = f"{ids[INS_NIR]}^^^&{INS_NIR}&ISO^NH"
    else:
        cx = f"{ids.get(LEGACY_ROOT, 'UNK')}^^^&{LEGACY_ROOT}&ISO^PI"
    pat = _PAT
    family, given = _string(root, f"{pat}/h:name/h:family"), _string(root, f"{pat}/h:name/h:given")
    info = [f"PID-5|{family}^{given}^^^^^L"]
    if one(f"{pat}/h:birthTime", "value"):
        info.append(f"PID-7|{one(f'{pat}/h:birthTime', 'value')[:8]}")
    info.append(f"PID-8|{one(f'{pat}/h:administrativeGenderCode', 'code') or 'U'}")
    templates = _TEMPLATES(root)
    level1 = isinstance(templates, list) and "1.3.6.1.4.1.19376.1.2.20" in templates
    created = one("h:effectiveTime", "value")
    doc_id = one("h:id", "root") + (
        f"^{one('h:id', 'extension')}" if one("h:id", "extension") else ""
    )
    digest = hashlib.sha1(xml).hexdigest().upper()
    return ebrim.Entry(
        entry_id=f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, doc_id + digest)}",
        unique_id=doc_id,
        uri=f"DOC{n:04d}.XML",
        size=len(xml),
        sha1=digest,
        patient_cx=cx,
        patient_info=tuple(info),
        creation_time=_utc(created),
        service_start=one("h:documentationOf/h:serviceEvent/h:effectiveTime", "value")[:8]
        or _utc(created),
        title=_string(root, "h:title"),
        format_code=ebrim.FORMAT_PDF if level1 else ebrim.FORMAT_CRBIO,
        author_xcn=_author_xcn(root),
    )


def _string(root: etree._Element, path: str) -> str:
    """XPath string() of `path` under `root` (HL7 namespace prefix h:)."""
    compiled = _STRING.get(path)
    if compiled is not None:
        return str(compiled(root))
    return str(root.xpath(f"string({path})", namespaces=_NS))


def _utc(ts: str) -> str:
    """An HL7 TS with offset as the UTC yyyymmddhhmmss that XDS slots want."""
    try:
        return datetime.strptime(ts, "%Y%m%d%H%M%S%z").astimezone(UTC).strftime("%Y%m%d%H%M%S")
    except ValueError:
        return ts[:14]


def _author_xcn(root: etree._Element) -> str:
    aa = _AA
    rpps = _string(root, f"{aa}/h:id[@root='{RPPS_ROOT}']/@extension")
    family = _string(root, f"{aa}/h:assignedPerson/h:name/h:family")
    given = _string(root, f"{aa}/h:assignedPerson/h:name/h:given")
    if rpps:
        return f"{rpps}^{family}^{given}^^^^^^&{RPPS_ROOT}&ISO^D^^^IDNPS"
    org = _string(root, f"{aa}/h:representedOrganization/h:name")
    code = _string(root, f"{aa}/h:id[@root='{LEGACY_ROOT}']/@extension")
    return f"{code}^{org}^^^^^^^&{LEGACY_ROOT}&ISO"


def _readme(sender: XdmSender, entries: list[ebrim.Entry], when: str) -> str:
    lines = [
        "IHE XDM package (ITI-32), French CI-SIS profile",
        f"Sender: {sender.name} {sender.address}".rstrip(),
        f"Application: {sender.application} {sender.version} ({sender.vendor})",
        f"Submission time (UTC): {when}",
        "Content:",
        "  IHE_XDM/SUBSET01/METADATA.XML  ebRIM 3.0 metadata",
        *(f"  IHE_XDM/SUBSET01/{e.uri}  {e.title} ({e.format_code})" for e in entries),
    ]
    return "\r\n".join(lines) + "\r\n"


def _index(sender: XdmSender, entries: list[ebrim.Entry]) -> str:
    links = "".join(
        f'<li><a href="IHE_XDM/SUBSET01/{e.uri}">{html.escape(e.title)}</a></li>' for e in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        f"<head><title>IHE XDM</title></head><body><h1>{html.escape(sender.name)}</h1>"
        f'<p><a href="README.TXT">README.TXT</a></p><ul>{links}</ul></body></html>\n'
    )


def pack(
    documents: list[XdmDocument],
    *,
    submission_time: datetime,
    sender: XdmSender,
    facility: ebrim.Code = ("SA29", "Laboratoire de biologie médicale", "1.2.250.1.71.4.2.4"),
    practice: ebrim.Code = ("ORG", "Organisation", "1.2.250.1.213.1.1.4.9"),
    content_type: ebrim.Code = ("11502-2", "CR d'examens biologiques", "2.16.840.1.113883.6.1"),
) -> bytes:
    """IHE_XDM.ZIP bytes holding the CDAs (DOC0001.XML …) and their metadata."""
    if not documents:
        raise DocumentError("xdm pack: no document")
    when = _ts(submission_time)
    entries = []
    for n, d in enumerate(documents, start=1):
        entries.append(_describe(n, d.xml, ""))
    seed = when + "".join(e.sha1 for e in entries)
    set_uuid = uuid.uuid5(uuid.NAMESPACE_OID, seed)
    meta = ebrim.build(
        entries,
        set_id=f"urn:uuid:{set_uuid}",
        set_unique_id=f"2.25.{set_uuid.int}",
        submission_time=when,
        source_id=sender.source_oid,
        institution=sender.name,
        facility=facility,
        practice=practice,
        content_type=content_type,
        uid=lambda name: f"urn:uuid:{uuid.uuid5(set_uuid, name)}",
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        files = [
            ("README.TXT", _readme(sender, entries, when).encode()),
            ("INDEX.HTM", _index(sender, entries).encode()),
            (METADATA, meta),
        ]
        files += [(SUBSET + e.uri, d.xml) for e, d in zip(entries, documents, strict=True)]
        for name, data in files:
            z.writestr(zipfile.ZipInfo(name, _FIXED_TIME), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()
