from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from lxml import etree

from gateway.documents import cda, ebrim, hprim, xdm
from gateway.documents.codes import load_tables
from gateway.errors import DocumentError, UnsafeDocumentError
from tests.documents.conftest import WHEN, corpus_files

SENDER = xdm.XdmSender("Laboratoire Bio-Santé")


def _cdas() -> list[bytes]:
    text = next(p for p in corpus_files() if "several" in p.name).read_bytes().decode()
    return [
        cda.build_crbio(
            d, tables=load_tables(), document_id=f"1.2.250.9.{k}", effective_time=WHEN
        ).xml
        for k, d in enumerate(hprim.parse(text).documents, start=1)
    ]


def _pack() -> bytes:
    return xdm.pack([xdm.XdmDocument(x) for x in _cdas()], submission_time=WHEN, sender=SENDER)


def _rezip(data: bytes, change: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, change.get(info.filename, src.read(info)))
    return out.getvalue()


def test_pack_layout_hashes_and_verify() -> None:
    data = _pack()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names[:3] == ["README.TXT", "INDEX.HTM", "IHE_XDM/SUBSET01/METADATA.XML"]
    assert names[3:] == [
        "IHE_XDM/SUBSET01/DOC0001.XML",
        "IHE_XDM/SUBSET01/DOC0002.XML",
        "IHE_XDM/SUBSET01/DOC0003.XML",
    ]
    assert xdm.verify(data) == []
    package = xdm.unpack(data)
    assert [d.xml for d in package.documents] == _cdas()
    slots = dict(ebrim.listed(etree.fromstring(package.metadata)))
    first = slots[package.documents[0].entry_id]
    assert first["hash"] == [hashlib.sha1(_cdas()[0]).hexdigest().upper()]
    assert first["size"] == [str(len(_cdas()[0]))] and first["URI"] == ["DOC0001.XML"]
    assert first["sourcePatientInfo"][0].startswith("PID-5|MARTIN^Élodie")
    meta = package.metadata.decode()
    for ident in (
        ebrim.SUBMISSION_SET,
        ebrim.DE_UNIQUE,
        ebrim.SS_SOURCE,
        ebrim.FORMAT_CRBIO,
        ebrim.DOC_ENTRY,
    ):
        assert ident in meta
    assert "Laboratoire Bio-Santé" in package.readme


def test_pack_is_deterministic() -> None:
    assert _pack() == _pack()


def test_wrong_hash_is_refused() -> None:
    data = _pack()
    tampered = _cdas()[1].replace(b"2.31", b"3.31")  # same size, other value
    assert tampered != _cdas()[1]
    bad = _rezip(data, {"IHE_XDM/SUBSET01/DOC0002.XML": tampered})
    assert {f.code for f in xdm.verify(bad)} == {"hash"}
    with pytest.raises(DocumentError, match="SHA-1"):
        xdm.unpack(bad)


def test_traversal_is_refused_before_reading() -> None:
    bad = _rezip(_pack(), {})
    out = io.BytesIO(bad)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("../../etc/evil", b"x")
    with pytest.raises(UnsafeDocumentError, match="traversal"):
        xdm.unpack(out.getvalue())
    assert [f.code for f in xdm.verify(out.getvalue())] == ["unsafe"]


def test_ten_thousand_to_one_entry_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"\0" * 10_000_000)
    info = zipfile.ZipFile(io.BytesIO(out.getvalue())).infolist()[0]
    assert info.file_size / info.compress_size > 1000
    with pytest.raises(UnsafeDocumentError, match="zip bomb"):
        xdm.unpack(out.getvalue())


def test_too_many_entries_and_not_a_zip() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n in range(xdm.MAX_ENTRIES + 1):
            z.writestr(f"f{n}", b"")
    with pytest.raises(UnsafeDocumentError):
        xdm.unpack(out.getvalue())
    with pytest.raises(DocumentError):
        xdm.unpack(b"PK not really")


def test_metadata_with_entities_is_refused() -> None:
    meta = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>'
    bad = _rezip(_pack(), {"IHE_XDM/SUBSET01/METADATA.XML": meta})
    with pytest.raises(UnsafeDocumentError):
        xdm.unpack(bad)


def test_compiled_expressions_read_what_xpath_reads() -> None:
    """``_read_facts`` compiles its expressions once: each gives what ``_Element.xpath`` gives
    for its text, on level-3 and level-1 CDAs."""
    pdf = b"%PDF-1.4\n%%EOF\n"
    docs = [d for p in corpus_files() for d in hprim.parse(p.read_bytes().decode()).documents]
    roots = [etree.fromstring(x) for x in _cdas()] + [
        etree.fromstring(cda.build_level1(d, pdf, tables=load_tables(), document_id="1.2.3",
                                          effective_time=WHEN).xml)
        for d in docs[:5]]
    ns = {"h": xdm.H[1:-1]}
    for root in roots:
        for (path, attr), compiled in xdm._FIRST.items():
            assert compiled(root) == root.xpath(f"{path}/@{attr}", namespaces=ns)
        for path, compiled in xdm._STRING.items():
            assert compiled(root) == root.xpath(f"string({path})", namespaces=ns)
        assert xdm._TEMPLATES(root) == root.xpath("h:templateId/@root", namespaces=ns)
