"""IHE XDM packages (IHE_XDM.ZIP): pack CDAs with README, INDEX and ebRIM metadata; unpack and
verify them with zip-bomb and traversal checks made before anything is extracted.

Layout and identifiers: IHE ITI XDM and the ANS CI-SIS.  Zips are built in memory with a fixed
timestamp so the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from gateway.documents import ebrim, safexml
from gateway.documents.cda import CdaFacts
from gateway.documents.cdaconst import LEGACY_ROOT, ORG_ROOT, RPPS_ROOT, H
from gateway.documents.model import Finding
from gateway.errors import DocumentError, UnsafeDocumentError

SUBSET = "IHE_XDM/SUBSET01/"
METADATA = SUBSET + "METADATA.XML"
MAX_ENTRIES = 1000
MAX_ENTRY_BYTES = 50 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
# The national identity roots (INS-NIR, INS-NIA, test, demo): a CDA that carries one is packed
# with the id type NH; ours never do (an HPRIM report cannot establish a qualified identity).
INS_ROOTS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10",
                       "1.2.250.1.213.1.4.11"})
KEEP_PARSED = 4 * 1024 * 1024  # bytes of CDA XML of one package kept parsed (XdmEntry.root)
MAX_RATIO = 100  # uncompressed / compressed; CDA text compresses ~10:1, bombs 1000:1 and more
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class XdmDocument:
    """A CDA to put in a package, with the facts its builder wrote into it (`cda.CdaResult`);
    without them `pack` reads them from the XML."""

    xml: bytes
    facts: CdaFacts | None = field(default=None, kw_only=True)


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
    """A CDA of a package, with what its DocumentEntry in METADATA.XML says of it (`title`,
    `patient_id`, `unique_id`, `creation_time`, `patient_name`, `birth_date`, `gender`: the
    slots and identifiers present)."""

    path: str
    xml: bytes
    entry_id: str
    facts: dict[str, str] = field(default_factory=dict, compare=False)
    # ``xml`` as the package's check parsed it (safexml), for a reader not to parse it again
    # (``cda.read_cda(entry.xml, root=entry.root)``); None beyond the first KEEP_PARSED
    # bytes of XML of a package, whose trees are let go as soon as checked
    root: etree._Element | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class XdmFile:
    """A document a package lists that is not a CDA (a PDF rendition, an image)."""

    path: str
    media_type: str
    data: bytes
    entry_id: str

    @property
    def extension(self) -> str:
        return {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPG",
                "text/plain": "TXT"}.get(self.media_type, "BIN")


@dataclass(frozen=True)
class XdmPackage:
    documents: list[XdmEntry]
    metadata: bytes
    readme: str = ""
    findings: list[Finding] = field(default_factory=list)
    others: list[XdmFile] = field(default_factory=list)
    metadata_path: str = METADATA


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise DocumentError("submission_time must carry a time zone")
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


_NS = {"h": H[1:-1]}
_PAT = "h:recordTarget/h:patientRole/h:patient"
_AA = "h:author/h:assignedAuthor"
_LA = "h:legalAuthenticator/h:assignedEntity"
_FACILITY = "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code"
_PRACTICE = f"{_LA}/h:representedOrganization/h:standardIndustryClassCode"


def _xpath(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=_NS)


# Compiled once: an expression handed to ``_Element.xpath`` is compiled on every call, some
# thirty of them for each document packed.
_FIRST = {(path, attr): _xpath(f"{path}/@{attr}") for path, attr in (
    (f"{_PAT}/h:birthTime", "value"), (f"{_PAT}/h:administrativeGenderCode", "code"),
    ("h:effectiveTime", "value"), ("h:id", "root"), ("h:id", "extension"),
    ("h:recordTarget/h:patientRole/h:id", "root"),
    ("h:recordTarget/h:patientRole/h:id", "extension"),
    ("h:documentationOf/h:serviceEvent/h:effectiveTime", "value"))}
_STRING = {path: _xpath(f"string({path})") for path in (
    f"{_PAT}/h:name/h:given", "h:title",
    f"{_AA}/h:id[@root='{RPPS_ROOT}']/@extension",
    f"{_AA}/h:assignedPerson/h:name/h:family", f"{_AA}/h:assignedPerson/h:name/h:given",
    f"{_AA}/h:representedOrganization/h:name",
    f"{_AA}/h:representedOrganization/h:id[@root='{ORG_ROOT}']/@extension",
    f"{_LA}/h:id[@root='{RPPS_ROOT}']/@extension",
    f"{_LA}/h:assignedPerson/h:name/h:family", f"{_LA}/h:assignedPerson/h:name/h:given")}
_TEMPLATES = _xpath("h:templateId/@root")
_FAMILIES = _xpath(f"{_PAT}/h:name/h:family")
_CODES = {path: _xpath(path) for path in (
    f"{_AA}/h:code", _FACILITY, _PRACTICE, "h:documentationOf/h:serviceEvent/h:code")}


def _codes(root: etree._Element, path: str) -> tuple[ebrim.Code, ...]:
    found = _CODES[path](root)
    assert isinstance(found, list)
    return tuple((str(c.get("code") or ""), str(c.get("displayName") or ""),
                  str(c.get("codeSystem") or "")) for c in found
                 if isinstance(c, etree._Element) and c.get("code"))


_NO_CODE: ebrim.Code = ("", "", "")


def _read_facts(n: int, xml: bytes) -> CdaFacts:
    """The facts of a CDA read from its XML: for documents that do not come with them."""
    root = safexml.parse(xml, what=f"CDA #{n}")
    if root.tag != H + "ClinicalDocument":
        raise DocumentError(f"CDA #{n}: root element is not ClinicalDocument")

    def one(path: str, attr: str) -> str:
        found = _FIRST[path, attr](root)
        return str(found[0]) if isinstance(found, list) and found else ""

    families = _FAMILIES(root)
    assert isinstance(families, list)
    names = [(f.get("qualifier") or "", "".join(str(t) for t in f.itertext())) for f in families
             if isinstance(f, etree._Element)]
    birth = next((v for q, v in names if "BR" in q.split()), None)
    family = birth if birth is not None else (names[0][1] if names else "")
    pat, aa, la = _PAT, _AA, _LA
    templates = _TEMPLATES(root)
    pid = one("h:recordTarget/h:patientRole/h:id", "extension")
    return CdaFacts(
        id_root=one("h:id", "root"),
        id_extension=one("h:id", "extension"),
        patient_id=pid,
        patient_root=one("h:recordTarget/h:patientRole/h:id", "root"),
        family=family,
        given=_string(root, f"{pat}/h:name/h:given"),
        birth_name=birth is not None,
        birth_time=one(f"{pat}/h:birthTime", "value"),
        gender=one(f"{pat}/h:administrativeGenderCode", "code"),
        level1=isinstance(templates, list) and "1.3.6.1.4.1.19376.1.2.20" in templates,
        effective_time=one("h:effectiveTime", "value"),
        service_time=one("h:documentationOf/h:serviceEvent/h:effectiveTime", "value"),
        title=_string(root, "h:title"),
        author_rpps=_string(root, f"{aa}/h:id[@root='{RPPS_ROOT}']/@extension"),
        author_family=_string(root, f"{aa}/h:assignedPerson/h:name/h:family"),
        author_given=_string(root, f"{aa}/h:assignedPerson/h:name/h:given"),
        organisation=_string(root, f"{aa}/h:representedOrganization/h:name"),
        org_id=_string(root, f"{aa}/h:representedOrganization/h:id[@root='{ORG_ROOT}']/@extension"),
        specialty=(_codes(root, f"{aa}/h:code") or (_NO_CODE,))[0],
        facility=(_codes(root, _FACILITY) or (_NO_CODE,))[0],
        practice=(_codes(root, _PRACTICE) or (_NO_CODE,))[0],
        events=_codes(root, "h:documentationOf/h:serviceEvent/h:code"),
        legal_rpps=_string(root, f"{la}/h:id[@root='{RPPS_ROOT}']/@extension"),
        legal_family=_string(root, f"{la}/h:assignedPerson/h:name/h:family"),
        legal_given=_string(root, f"{la}/h:assignedPerson/h:name/h:given"),
    )


# What a document without these header elements is classified as (a CDA packed by
# `passerelle xdm pack` that is not ours): a medical-biology laboratory, ambulatory.
DEFAULT_FACILITY: ebrim.Code = ("SA25", "Laboratoire de biologie médicale", "1.2.250.1.71.4.2.4")
DEFAULT_PRACTICE: ebrim.Code = ("AMBULATOIRE", "Ambulatoire", "1.2.250.1.213.1.1.4.9")


def _entry(n: int, xml: bytes, facts: CdaFacts) -> ebrim.Entry:
    """What METADATA.XML says of document `n`, from its bytes and its facts.  The patient
    is the CDA's own id (for ours: the lab's number under the lab's OID, type PI); an INS
    appears here only if the CDA carried one."""
    f = facts
    kind = "NH" if f.patient_root in INS_ROOTS else "PI"
    if f.patient_id and f.patient_root:
        cx = f"{f.patient_id}^^^&{f.patient_root}&ISO^{kind}"
    else:
        cx = f"UNK^^^&{LEGACY_ROOT}&ISO^PI"
    info = [f"PID-5|{f.family}^{f.given}^^^^^{'L' if f.birth_name else 'D'}"]
    if f.birth_time:
        info.append(f"PID-7|{f.birth_time[:8]}")
    info.append(f"PID-8|{f.gender or 'U'}")
    doc_id = f.id_root + (f"^{f.id_extension}" if f.id_extension else "")
    digest = hashlib.sha1(xml).hexdigest().upper()
    created = _utc(f.effective_time)
    institution = (f"{f.organisation}^^^^^&{ORG_ROOT}&ISO^IDNST^^^{f.org_id}" if f.org_id
                   else f.organisation)
    legal = (f"{f.legal_rpps}^{f.legal_family}^{f.legal_given}^^^^^^&{RPPS_ROOT}&ISO^D^^^IDNPS"
             if f.legal_rpps else "")
    return ebrim.Entry(
        entry_id=f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, doc_id + digest)}",
        unique_id=doc_id,
        uri=f"DOC{n:04d}.XML",
        size=len(xml),
        sha1=digest,
        patient_cx=cx,
        patient_info=tuple(info),
        creation_time=created,
        service_start=f.service_time[:8] or created,
        title=f.title,
        format_code=ebrim.FORMAT_PDF if f.level1 else ebrim.FORMAT_CRBIO,
        author_xcn=_author_xcn(f),
        institution=institution,
        specialty=f.specialty if f.specialty[0] else None,
        facility=f.facility if f.facility[0] else DEFAULT_FACILITY,
        practice=f.practice if f.practice[0] else DEFAULT_PRACTICE,
        events=f.events,
        legal_xcn=legal,
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


def _author_xcn(f: CdaFacts) -> str:
    if f.author_rpps:
        return f"{f.author_rpps}^{f.author_family}^{f.author_given}^^^^^^&{RPPS_ROOT}&ISO^D^^^IDNPS"
    return f"UNK^{f.organisation}^^^^^^^&{LEGACY_ROOT}&ISO"


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
    content_type: ebrim.Code = ("11502-2", "CR d'examens biologiques", "2.16.840.1.113883.6.1"),
) -> bytes:
    """IHE_XDM.ZIP bytes holding the CDAs (DOC0001.XML …) and their metadata."""
    if not documents:
        raise DocumentError("xdm pack: no document")
    when = _ts(submission_time)
    entries = []
    for n, d in enumerate(documents, start=1):
        # a builder's facts are trusted to be what its XML says (tests/documents/
        # test_xdm_facts.py holds cda's to that): that XML is not parsed again here
        facts = d.facts if d.facts is not None else _read_facts(n, d.xml)
        entries.append(_entry(n, d.xml, facts))
    seed = when + "".join(e.sha1 for e in entries)
    set_uuid = uuid.uuid5(uuid.NAMESPACE_OID, seed)
    meta = ebrim.build(
        entries,
        set_id=f"urn:uuid:{set_uuid}",
        set_unique_id=f"2.25.{set_uuid.int}",
        submission_time=when,
        source_id=sender.source_oid,
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
            # the fastest deflate level: most of a package is a CDA carrying its PDF in
            # base64, which level 6 packs 3 % smaller for a third more CPU (~0.5 ms a report)
            z.writestr(zipfile.ZipInfo(name, _FIXED_TIME), data, zipfile.ZIP_DEFLATED,
                       compresslevel=1)
    return buf.getvalue()


def _safe_names(z: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every entry checked for traversal, count, sizes and ratio: nothing read before this."""
    infos = z.infolist()
    if len(infos) > MAX_ENTRIES:
        raise UnsafeDocumentError(f"xdm: {len(infos)} zip entries, over {MAX_ENTRIES}")
    total, names = 0, {}
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in name or "\x00" in name:
            raise UnsafeDocumentError("xdm: zip entry path leaves the package (traversal)")
        if info.file_size > MAX_ENTRY_BYTES:
            raise UnsafeDocumentError(f"xdm: zip entry of {info.file_size} bytes, over the cap")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024 and ratio > MAX_RATIO:
            raise UnsafeDocumentError(f"xdm: zip entry compressed {int(ratio)}:1 (zip bomb?)")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise UnsafeDocumentError("xdm: zip entries over the total size cap")
        if name.upper() in names:
            # two entries of one name: readers disagree on which counts (the hash checked
            # here could be another entry's than the one a viewer shows)
            raise UnsafeDocumentError("xdm: two zip entries share a name")
        names[name.upper()] = info
    return names


_METADATA_AT = re.compile(r"IHE_XDM/([^/]+)/METADATA\.XML", re.IGNORECASE)
# identification schemes of a DocumentEntry's external identifiers
_DE_IDS = {ebrim.DE_PATIENT: "patient_id", ebrim.DE_UNIQUE: "unique_id"}


def _entry_facts(eo: etree._Element) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(slots, facts) of one DocumentEntry: its slots as lists, and the document and patient
    facts a reader shows (title, identifiers, patient name, birth date, gender)."""
    R = ebrim.R
    slots: dict[str, list[str]] = {}
    for slot in eo.findall(R + "Slot"):
        slots[slot.get("name") or ""] = [v.text or "" for v in slot.iter(R + "Value")]
    facts: dict[str, str] = {"mime_type": eo.get("mimeType") or ""}
    name = eo.find(f"{R}Name/{R}LocalizedString")
    if name is not None and name.get("value"):
        facts["title"] = name.get("value") or ""
    for ext in eo.findall(R + "ExternalIdentifier"):
        key = _DE_IDS.get(ext.get("identificationScheme") or "")
        if key:
            facts[key] = ext.get("value") or ""
    for key in ("creationTime", "serviceStartTime", "languageCode"):
        if slots.get(key):
            facts[key] = slots[key][0]
    for info in slots.get("sourcePatientInfo", []):
        field_, _, value = info.partition("|")
        if field_ == "PID-5":
            facts["patient_name"] = " ".join(x for x in value.split("^")[:2] if x)
        elif field_ == "PID-7":
            facts["birth_date"] = value
        elif field_ == "PID-8":
            facts["gender"] = value
    return slots, facts


def _resolve(uri: str, subset: str) -> str | None:
    """The zip path a DocumentEntry's URI names: relative to its subset folder, or from the
    package's root when it starts with IHE_XDM/; None when it would leave the package."""
    path = uri.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    parts = path.split("/")
    if not path or path.startswith("/") or ":" in path or "\x00" in path or any(
            p in ("", ".", "..") for p in parts):
        return None
    return path if path.upper().startswith("IHE_XDM/") else subset + path


def _check(data: bytes) -> XdmPackage:
    """Open, check and read a package; raises at the first unsafe thing, collects the rest.
    Any subset folder (IHE_XDM/<name>/METADATA.XML, several allowed), URIs with a path,
    hashes in either case."""
    if len(data) > MAX_TOTAL_BYTES:
        raise UnsafeDocumentError("xdm: package over the size cap")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, NotImplementedError, OSError, EOFError):
        # NotImplementedError: a "version needed to extract" zipfile does not know
        raise DocumentError("xdm: not a zip file") from None
    with z:
        names = _safe_names(z)
        findings: list[Finding] = []

        def read(name: str) -> bytes | None:
            info = names.get(name.upper())
            if info is None:
                return None
            try:
                return z.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                    RuntimeError, zlib.error):  # RuntimeError: an entry flagged encrypted
                raise DocumentError(f"xdm: {name}: corrupt zip entry") from None

        subsets = sorted(names[n].filename for n in names if _METADATA_AT.fullmatch(n))
        if not subsets:
            raise DocumentError("xdm: no IHE_XDM/<subset>/METADATA.XML")
        readme = read("README.TXT")
        if readme is None:
            findings.append(Finding("no-readme", "README.TXT missing"))
        if read("INDEX.HTM") is None:
            findings.append(Finding("no-index", "INDEX.HTM missing"))
        docs: list[XdmEntry] = []
        others: list[XdmFile] = []
        first_meta = b""
        kept = 0
        for meta_path in subsets:
            meta = read(meta_path) or b""
            first_meta = first_meta or meta
            subset = meta_path[: -len("METADATA.XML")]
            root = safexml.parse(meta, what=meta_path)
            entries = [eo for eo in root.iter(ebrim.R + "ExtrinsicObject")]
            if not entries:
                findings.append(Finding("no-document", f"{meta_path} lists no document"))
            for eo in entries:
                slots, facts = _entry_facts(eo)
                uri = (slots.get("URI") or [""])[0]
                path = _resolve(uri, subset)
                if path is None:
                    findings.append(Finding("uri", f"{meta_path}: a DocumentEntry without a "
                                            "URI inside the package"))
                    continue
                body = read(path)
                if body is None:
                    findings.append(Finding("missing", f"{path} listed but absent"))
                    continue
                path = names[path.upper()].filename
                want_hash = (slots.get("hash") or [""])[0].strip()
                if want_hash.lower() != hashlib.sha1(body).hexdigest():
                    findings.append(Finding("hash", f"{path}: SHA-1 differs from METADATA.XML"))
                if (slots.get("size") or [""])[0].strip() != str(len(body)):
                    findings.append(Finding("size", f"{path}: size differs from METADATA.XML"))
                media = facts.get("mime_type", "").lower()
                if media and "xml" not in media:
                    others.append(XdmFile(path, media, body, eo.get("id") or ""))
                    continue
                cda_root: etree._Element | None = None
                try:
                    cda_root = safexml.parse(body, what=path)
                    if cda_root.tag != H + "ClinicalDocument":
                        findings.append(Finding("not-cda", f"{path}: not a CDA document"))
                except UnsafeDocumentError:
                    raise
                except DocumentError:
                    findings.append(Finding("not-cda", f"{path}: not well-formed XML"))
                kept += len(body)
                docs.append(XdmEntry(path, body, eo.get("id") or "", facts,
                                     root=cda_root if kept <= KEEP_PARSED else None))
        if not docs and not others and not any(f.code == "no-document" for f in findings):
            findings.append(Finding("no-document", "the package holds no readable document"))
        text = readme.decode("utf-8", "replace") if readme is not None else ""
        return XdmPackage(docs, first_meta, text, findings, others, subsets[0])


def verify(data: bytes) -> list[Finding]:
    """Every problem found in a package; an empty list means it is sound."""
    try:
        return _check(data).findings
    except UnsafeDocumentError as exc:
        return [Finding("unsafe", str(exc))]
    except DocumentError as exc:
        return [Finding("unreadable", str(exc))]


def unpack(data: bytes) -> XdmPackage:
    """The checked documents of a package; DocumentError/UnsafeDocumentError on any problem."""
    package = _check(data)
    bad = [f for f in package.findings if f.code not in ("no-readme", "no-index")]
    if bad:
        raise DocumentError(f"xdm: {bad[0].message}")
    return package
