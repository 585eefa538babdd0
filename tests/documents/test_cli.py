from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.documents import hprim
from tests.documents.conftest import corpus_files

TIME = ["--time", "2024-04-03T10:00:00+02:00"]


def _one(name: str) -> Path:
    return next(p for p in corpus_files() if name in p.name)


def test_hprim_to_cda_and_back(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    src = _one("iono-crlf")
    assert main(["hprim", "to-cda", str(src), *TIME]) == 0
    xml = capsysbinary.readouterr().out
    assert xml.startswith(b"<?xml") and b"1.2.250.1.213.1.1.1.55" in xml
    (tmp_path / "a.xml").write_bytes(xml)
    assert main(["cda", "to-hprim", str(tmp_path / "a.xml"), "--charset", "cp1252"]) == 0
    back = capsysbinary.readouterr().out.decode("cp1252")
    assert hprim.parse(back).documents[0].lab == hprim.parse(src.read_text()).documents[0].lab


def test_findings_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hprim", "to-cda", str(_one("oddities-crlf")), *TIME, "--json"]) == 0
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "code-unmapped" in {f["code"] for f in report["findings"]}


def test_free_text_only_becomes_level1(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["hprim", "to-cda", str(_one("free-text-only")), *TIME]) == 0
    assert b'mediaType="application/pdf"' in capsysbinary.readouterr().out


def test_xdm_pack_verify_unpack(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["hprim", "to-cda", str(_one("nfs-crlf")), *TIME]) == 0
    (tmp_path / "a.xml").write_bytes(capsysbinary.readouterr().out)
    zip_path = tmp_path / "IHE_XDM.ZIP"
    assert main(["xdm", "pack", str(tmp_path / "a.xml"), "--out", str(zip_path), *TIME]) == 0
    assert main(["xdm", "verify", str(zip_path)]) == 0
    assert main(["xdm", "unpack", str(zip_path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/IHE_XDM/SUBSET01/DOC0001.XML").read_bytes() == (
        tmp_path / "a.xml"
    ).read_bytes()


@pytest.mark.parametrize(
    "argv",
    [
        ["hprim", "to-cda", "/nonexistent.hpr"],
        ["hprim", "to-cda", "{tmp}/junk.txt"],
        ["cda", "to-hprim", "{tmp}/junk.txt"],
        ["xdm", "verify", "{tmp}/junk.txt"],
        ["xdm", "unpack", "{tmp}/junk.txt", "--out", "{tmp}/o"],
    ],
)
def test_bad_files_exit_65_with_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.txt").write_bytes(b"<not really\x00")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 65
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cda_to_hprim_of_an_agency_example_writes_its_files(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from tests.conftest import FIXTURES

    src = FIXTURES / "ans" / "examples" / "BIO-CR-BIO_2024.01_CR-2nde-intention-PDF.xml"
    assert main(["cda", "to-hprim", str(src), "--attachments", str(tmp_path / "files")]) == 0
    (doc,) = hprim.parse(capsysbinary.readouterr().out.decode()).documents
    assert [(r.code, r.value) for r in doc.results] == [("6301-6", "2.0")]  # the INR, a REAL
    files = sorted((tmp_path / "files").iterdir())
    assert [f.name for f in files] == ["CR0001-1.PDF", "CR0001-2.PDF"]
    assert all(f.read_bytes().startswith(b"%PDF") for f in files)
def test_the_lab_comes_from_labs_csv(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
                                     ) -> None:
    """By HPRIM line 11 (LABO75) by default, by --lab (address or FINESS) when given; a
    sender without a row is refused with one line (exit 65), never given a made-up author."""
    src = _one("glycemie-crlf")
    assert main(["hprim", "to-cda", str(src), *TIME]) == 0
    assert b'extension="1759999902"' in capsysbinary.readouterr().out  # LABO75's FINESS
    assert main(["hprim", "to-cda", str(src), *TIME, "--lab", "699999901"]) == 0
    assert b'extension="1699999901"' in capsysbinary.readouterr().out  # Biolab, by FINESS
    text = src.read_bytes().replace(b"LABO75    ", b"NOSUCHLAB ")
    (tmp_path / "r.hpr").write_bytes(text)
    assert main(["hprim", "to-cda", str(tmp_path / "r.hpr"), *TIME]) == 65
    err = capsysbinary.readouterr().err.decode()
    assert "labs.csv" in err and "Traceback" not in err
    assert main(["hprim", "to-cda", str(src), *TIME, "--lab", "nobody@nowhere.example"]) == 65


def test_document_ids_are_uuid_oids_stable_for_a_file(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    src = _one("several-documents")
    ids = []
    for n in (1, 2, 1):
        assert main(["hprim", "to-cda", str(src), *TIME, "--document", str(n)]) == 0
        xml = capsysbinary.readouterr().out
        ids.append(xml.split(b"<id root=\"", 1)[1].split(b'"', 1)[0].decode())
    assert all(i.startswith("2.25.") and i[5:].isdigit() for i in ids)
    assert ids[0] == ids[2] != ids[1]


def test_a_cp850_file_is_read_back_and_converted(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """A DOS lab's file (CP850) is repaired by the text engine, not refused; stderr says so,
    and the CDA carries the accents as the lab wrote them."""
    src = _one("iono-crlf")
    # what CP850 cannot write (a dash, Œ) becomes "?" in both files
    text = src.read_bytes().decode("utf-8").encode("cp850", "replace").decode("cp850")
    assert any(ord(c) > 127 for c in text)
    (tmp_path / "dos.hpr").write_bytes(text.encode("cp850"))
    (tmp_path / "utf8.hpr").write_bytes(text.encode("utf-8"))
    assert main(["hprim", "to-cda", str(tmp_path / "dos.hpr"), *TIME]) == 0
    captured = capsysbinary.readouterr()
    assert "read as cp850" in captured.err.decode()
    assert main(["hprim", "to-cda", str(tmp_path / "utf8.hpr"), *TIME]) == 0
    xml = capsysbinary.readouterr().out
    assert "Élodie".encode() in xml
    # the same CDA as from UTF-8 (but for the id, derived from the file's bytes)
    assert _without_id(xml) == _without_id(captured.out)
    assert main(["hprim", "to-cda", str(tmp_path / "dos.hpr"), *TIME, "--charset", "dos"]) == 0
    assert capsysbinary.readouterr().out == captured.out


def _without_id(xml: bytes) -> bytes:
    """The document without its id and set id (derived from the file's bytes)."""
    return re.sub(rb'<(id|setId) root="2\.25\.\d+"/>', b"", xml)


def test_every_report_of_a_file_is_converted(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    src = _one("several-documents")
    count = len(hprim.parse(src.read_text()).documents)
    assert count > 1
    assert main(["hprim", "to-cda", str(src), *TIME]) == 65  # which one? it says
    err = capsysbinary.readouterr().err.decode()
    assert f"{count} reports" in err and "--out" in err and len(err.splitlines()) == 1
    assert main(["hprim", "to-cda", str(src), *TIME, "--out", str(tmp_path / "out")]) == 0
    err = capsysbinary.readouterr().err.decode()
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == [f"{src.stem}-{n}.xml" for n in range(1, count + 1)]
    assert f"{count} reports → " in err and str(files[-1]) in err
    ids = {f.read_bytes().split(b'<id root="', 1)[1].split(b'"', 1)[0] for f in files}
    assert len(ids) == count
    assert main(["hprim", "to-cda", str(src), *TIME, "--document", "2"]) == 0
    assert capsysbinary.readouterr().out == files[1].read_bytes()
