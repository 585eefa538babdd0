"""XDM packages as other senders write them (another subset folder, a URI with a path, a
lower-case hash, several subsets, a PDF listed beside the CDA), and what is refused."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.documents import cda, ebrim, xdm
from gateway.errors import DocumentError, UnsafeDocumentError
from tests.conftest import FIXTURES

EXAMPLES = FIXTURES / "ans" / "examples"
TSH = (EXAMPLES / "BIO-CR-BIO_2024.01_TSH_1.xml").read_bytes()
MICRO = (EXAMPLES / "BIO-CR-BIO_2024.01_Microbiologie_V2.xml").read_bytes()
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
R = ebrim.R


def packed(*docs: bytes) -> bytes:
    return xdm.pack([xdm.XdmDocument(d) for d in docs], submission_time=NOW,
                    sender=xdm.XdmSender("Laboratoire des charmes"))


def relayout(data: bytes, *, subset: str, folder: str = "", uri_from_root: bool = False,
             lower_hash: bool = True, edit: dict[str, str] | None = None) -> bytes:
    """The package with its documents moved to IHE_XDM/<subset>/<folder>, its URIs naming
    that path, and its hashes in lower case (as DRIM-M style senders write them)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    meta = etree.fromstring(src.read(xdm.METADATA))
    moved: dict[str, str] = {}
    for eo in meta.iter(R + "ExtrinsicObject"):
        for slot in eo.findall(R + "Slot"):
            value = slot.find(f"{R}ValueList/{R}Value")
            assert value is not None
            if slot.get("name") == "URI":
                new = folder + (value.text or "")
                moved[xdm.SUBSET + (value.text or "")] = f"IHE_XDM/{subset}/{new}"
                value.text = f"IHE_XDM/{subset}/{new}" if uri_from_root else new
            elif slot.get("name") == "hash" and lower_hash:
                value.text = (value.text or "").lower()
            if edit and slot.get("name") in edit:
                value.text = edit[slot.get("name") or ""]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            name = info.filename
            body = src.read(info)
            if name == xdm.METADATA:
                name, body = f"IHE_XDM/{subset}/METADATA.XML", etree.tostring(meta)
            z.writestr(moved.get(name, name), body)
    return out.getvalue()


@pytest.mark.parametrize("uri_from_root", [False, True])
def test_drim_m_style_layout_is_read(uri_from_root: bool) -> None:
    data = relayout(packed(TSH, MICRO), subset="IMG00001", folder="CDA/",
                    uri_from_root=uri_from_root)
    assert xdm.verify(data) == []
    package = xdm.unpack(data)
    assert [e.path for e in package.documents] == ["IHE_XDM/IMG00001/CDA/DOC0001.XML",
                                                   "IHE_XDM/IMG00001/CDA/DOC0002.XML"]
    assert [e.xml for e in package.documents] == [TSH, MICRO]
    facts = package.documents[0].facts  # METADATA.XML's word on the document and patient
    assert facts["patient_name"].startswith("PAT-TROIS") and facts["title"]
    assert cda.read_cda(package.documents[1].xml).document.results


def test_upper_case_hash_still_read() -> None:
    data = relayout(packed(TSH), subset="SUBSET01", lower_hash=False)
    assert xdm.verify(data) == []


def test_several_subsets_are_all_read() -> None:
    one = zipfile.ZipFile(io.BytesIO(relayout(packed(TSH), subset="A")))
    two = zipfile.ZipFile(io.BytesIO(relayout(packed(MICRO), subset="B")))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for src in (one, two):
            for info in src.infolist():
                if info.filename.startswith("IHE_XDM/"):
                    z.writestr(info.filename, src.read(info))
        z.writestr("README.TXT", "two subsets")
        z.writestr("INDEX.HTM", "<html/>")
    package = xdm.unpack(out.getvalue())
    assert [e.xml for e in package.documents] == [TSH, MICRO]


def test_a_pdf_listed_beside_the_cda_is_kept() -> None:
    pdf = b"%PDF-1.4\n%%EOF\n"
    data = packed(TSH)
    src = zipfile.ZipFile(io.BytesIO(data))
    meta = etree.fromstring(src.read(xdm.METADATA))
    eo = next(meta.iter(R + "ExtrinsicObject"))
    copy = etree.fromstring(etree.tostring(eo))
    copy.set("id", "urn:uuid:00000000-0000-0000-0000-000000000001")
    copy.set("mimeType", "application/pdf")
    for slot in copy.findall(R + "Slot"):
        value = slot.find(f"{R}ValueList/{R}Value")
        assert value is not None
        value.text = {"URI": "DOC0002.PDF", "hash": hashlib.sha1(pdf).hexdigest(),
                      "size": str(len(pdf))}.get(slot.get("name") or "", value.text)
    eo.addnext(copy)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, etree.tostring(meta) if info.filename == xdm.METADATA
                       else src.read(info))
        z.writestr(xdm.SUBSET + "DOC0002.PDF", pdf)
    package = xdm.unpack(out.getvalue())
    assert [(o.media_type, o.data) for o in package.others] == [("application/pdf", pdf)]


@pytest.mark.parametrize(("change", "named"), [
    ({"URI": "../../etc/passwd"}, "URI inside the package"),
    ({"URI": "/abs/DOC0001.XML"}, "URI inside the package"),
    ({"URI": "ABSENT.XML"}, "listed but absent"),
    ({"hash": "0" * 40}, "SHA-1 differs"),
    ({"size": "12"}, "size differs"),
])
def test_malformed_package_is_refused_naming_what(change: dict[str, str], named: str) -> None:
    data = relayout(packed(TSH), subset="SUB", edit=change)
    found = xdm.verify(data)
    assert found and named in str(found[0])
    with pytest.raises(DocumentError, match=named):
        xdm.unpack(data)


def test_no_metadata_anywhere_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", TSH)
    with pytest.raises(DocumentError, match=r"no IHE_XDM/<subset>/METADATA\.XML"):
        xdm.unpack(out.getvalue())


def test_zip_safety_checks_still_come_first() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("IHE_XDM/X/METADATA.XML", b"<x/>")
        z.writestr("IHE_XDM/X/../../evil", b"x")
    with pytest.raises(UnsafeDocumentError, match="traversal"):
        xdm.unpack(out.getvalue())


def test_cli_unpacks_another_layout_and_refuses_a_bad_one_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    good.write_bytes(relayout(packed(TSH), subset="IMG00001", folder="CDA/"))
    proc = subprocess.run([sys.executable, "-m", "gateway", "xdm", "unpack", str(good),
                           "--out", str(tmp_path / "x")], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x" / "IHE_XDM" / "IMG00001" / "CDA" / "DOC0001.XML").read_bytes() == TSH
    bad = tmp_path / "bad.zip"
    bad.write_bytes(relayout(packed(TSH), subset="IMG00001", edit={"hash": "1" * 40}))
    proc = subprocess.run([sys.executable, "-m", "gateway", "xdm", "unpack", str(bad),
                           "--out", str(tmp_path / "y")], capture_output=True, check=False)
    assert proc.returncode == 65
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert b"SHA-1 differs" in proc.stderr and b"Traceback" not in proc.stderr
