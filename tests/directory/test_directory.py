"""Importing the national extraction, finding mailboxes, exporting ours: as an operator would."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from gateway.directory import synthetic
from gateway.directory.addresses import AddressBook
from gateway.directory.export import export_lines
from gateway.directory.model import COLUMNS, HEADER
from gateway.directory.pgstore import open_directory
from gateway.directory.resolve import Preference, choose, rpps_from_hprim_recipient
from gateway.directory.store import DirectoryStore
from gateway.errors import BadInputError


def row(kind: str, address: str, rpps: str = "", family: str = "", given: str = "",
        dept: str = "75", structure: str = "") -> str:
    values = [""] * COLUMNS
    values[0], values[1] = kind, address
    if rpps:
        values[2], values[3], values[4] = "8", rpps, f"8{rpps}"
    values[9], values[10], values[18], values[29] = family, given, structure, dept
    return "|".join(values)


def extraction(path: Path, *rows: str, bom: bool = False) -> Path:
    text = "\n".join(["|".join(HEADER), *rows]) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the directory lives: a SQLite file, or the PostgreSQL spool database."""
    if request.param == "sqlite":
        return tmp_path / "d.db"
    return str(request.getfixturevalue("pg_url"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "directory", *args],
                          capture_output=True, text=True, check=False)


def test_generated_extraction_with_duplicates_and_malformed_lines(tmp_path: Path,
        target: Path | str) -> None:
    src = synthetic.write(tmp_path / "x.txt", 2000, malformed=7, duplicates=5, bom=True)
    store = open_directory(target)
    report = store.import_file(src)
    assert (report.imported, report.duplicates, report.malformed) == (2000, 5, 7)
    assert report.lines == 2000 + 5 + 7
    assert len(report.malformed_examples) == 7
    assert all(line > 2000 for line, _ in report.malformed_examples)  # where they are
    assert store.count() == 2000
    # a clinician with two mailboxes (two lines share each RPPS in the generator)
    rpps = f"{10000000000:011d}"
    found = store.find_by_rpps(rpps)
    assert found and all(e.rpps == rpps for e in found)


def test_zipped_extraction_and_internationalised_domains(tmp_path: Path,
        target: Path | str) -> None:
    src = tmp_path / "x.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Extraction_MSSante.txt", "\n".join([
            "|".join(HEADER),
            row("PER", "anne.leroy@médecins-c.mssante.example", "10000000011", "Leroy", "Anne"),
            row("PER", "Jean.Simon@xn--sant-epa.mssante.example", "10000000022", "Simon",
                "Jean"),
        ]) + "\n")
    store = open_directory(target)
    assert store.import_file(src).imported == 2
    # the same mailbox however its domain is written
    for spelled in ("anne.leroy@xn--mdecins-c-b4a.mssante.example",
                    "ANNE.LEROY@MÉDECINS-C.mssante.example"):
        assert [e.family_name for e in store.find_by_address(spelled)] == ["Leroy"]
    assert [e.given_name for e in store.find_by_address("jean.simon@santé.mssante.example")] \
        == ["Jean"]


def test_names_are_found_without_accents_or_case(tmp_path: Path,
        target: Path | str) -> None:
    store = open_directory(target)
    store.import_file(extraction(
        tmp_path / "x.txt",
        row("PER", "h.lefevre@a.example", "10000000033", "Lefèvre", "Hélène"),
        row("PER", "h.lefevre2@b.example", "10000000033", "LEFEVRE", "Helene"),
        row("PER", "p.lefevre@a.example", "10000000044", "Lefèvre", "Paul"),
        row("PER", "x.lefevre-dupont@a.example", "10000000055", "Lefèvre-Dupont", "Xavier")))
    assert {e.address for e in store.find_by_name("lefevre", "helene")} == {
        "h.lefevre@a.example", "h.lefevre2@b.example"}
    assert len(store.find_by_name("LEFÈVRE")) == 3  # a family name: not Lefèvre-Dupont
    assert [e.given_name for e in store.find_by_name("Lefèvre Dupont", "Xavier")] == ["Xavier"]


def test_reimport_replaces_atomically_and_a_failed_import_keeps_the_old(tmp_path: Path,
        target: Path | str) -> None:
    store = open_directory(target)
    store.import_file(extraction(tmp_path / "a.txt",
                                 row("PER", "old@a.example", "10000000011", "Ancien", "A")))
    reader = open_directory(target)  # another process's view
    assert reader.count() == 1
    store.import_file(extraction(tmp_path / "b.txt",
                                 row("PER", "new1@a.example", "10000000011", "Nouveau", "N"),
                                 row("PER", "new2@a.example", "10000000022", "Nouveau", "M")))
    assert reader.count() == 2 and reader.find_by_address("old@a.example") == []
    # a file that is not the extraction: refused, the directory stays as it was
    bad = tmp_path / "bad.txt"
    bad.write_text("nom;prenom;adresse\nx;y;z\n", "utf-8")
    with pytest.raises(BadInputError, match="not the MSSanté directory extraction"):
        store.import_file(bad)
    assert reader.count() == 2
    if isinstance(target, Path):
        tables = sqlite3.connect(target).execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'directory_1%'"
        ).fetchall()
    else:
        tables = store.db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND "
            "tablename LIKE 'directory\\_%' AND tablename <> 'directory_meta'").fetchall()
    assert len(tables) == 1  # the replaced table was dropped, no half-built one left


def test_lookups_from_several_threads(tmp_path: Path,
        target: Path | str) -> None:
    store = open_directory(target)
    store.import_file(synthetic.write(tmp_path / "x.txt", 200))
    errors: list[BaseException] = []

    def look() -> None:
        try:
            for n in range(50):
                store.find_by_rpps(f"{10000000000 + n:011d}")
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_preference_per_before_org_then_department_then_domain() -> None:
    from gateway.directory.model import DirectoryEntry

    def entry(kind: str, address: str, dept: str) -> DirectoryEntry:
        return DirectoryEntry(*row(kind, address, "10000000011", "X", "Y", dept).split("|"))

    org = entry("ORG", "secretariat@a.example", "33")
    per_far = entry("PER", "y.x@b.example", "75")
    per_near = entry("PER", "y.x@c.example", "33")
    default = Preference()
    assert choose([org, per_far], preference=default) is per_far
    assert choose([org, per_far, per_near], preference=default, sender_department="33") \
        is per_near
    assert choose([per_near, per_far], preference=Preference(
        preferred_domains=("b.example",))) is per_far
    assert choose([org, per_far], preference=Preference(types=("ORG", "PER"))) is org
    # stable when nothing else decides
    assert choose([per_near, per_far], preference=default) is per_far  # b before c


@pytest.mark.parametrize(("code", "name", "rpps"), [
    ("12345678901", "Dr Bernard", "12345678901"),
    ("DRBERNARD", "Dr Bernard 12345678901", "12345678901"),
    ("DRBERNARD", "Dr Bernard", None),
    ("1234567890", "Dr Bernard", None),  # ten digits: not an RPPS, no guessing
    ("123456789012", "", None),
])
def test_rpps_is_read_from_the_hprim_recipient_line_only_when_unambiguous(
        code: str, name: str, rpps: str | None) -> None:
    assert rpps_from_hprim_recipient(code, name) == rpps


def test_find_shows_at_most_limit_mailboxes_and_says_how_many_more(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    rows = [row("PER", f"martin.{n}@a.mssante.example", f"100000{n:05d}", "Martin", f"P{n}",
                "75") for n in range(30)]
    assert cli("import", str(extraction(tmp_path / "x.txt", *rows)), "--db", db).returncode == 0
    default = cli("find", "--name", "MARTIN", "--db", db)
    assert default.returncode == 0 and len(default.stdout.splitlines()) == 20
    assert "10 more not shown (30 in all" in default.stderr
    three = cli("find", "--name", "MARTIN", "--db", db, "--limit", "3", "--json")
    assert len(json.loads(three.stdout)) == 3
    every = cli("find", "--name", "MARTIN", "--db", db, "--limit", "0")
    assert len(every.stdout.splitlines()) == 30 and every.stderr == ""


def test_cli_import_find_json_and_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    src = extraction(tmp_path / "x.txt",
                     row("PER", "anne.leroy@médecins-c.mssante.example", "10000000011",
                         "Leroy", "Anne", "69"),
                     row("ORG", "labo@a.example", structure="Laboratoire A"),
                     "PER|too|few|columns")
    imp = cli("import", str(src), "--db", db)
    assert imp.returncode == 0, imp.stderr
    assert "imported 2 mailboxes" in imp.stdout and "1 malformed" in imp.stdout
    assert "line 4: 4 columns" in imp.stderr
    found = cli("find", "--rpps", "10000000011", "--db", db, "--json")
    assert found.returncode == 0
    assert json.loads(found.stdout) == [{
        "type": "PER", "address": "anne.leroy@médecins-c.mssante.example",
        "rpps": "10000000011", "family_name": "Leroy", "given_name": "Anne", "structure": "",
        "department": "69"}]
    by_name = cli("find", "--name", "LEROY Anne", "--db", db)
    assert "anne.leroy@" in by_name.stdout
    none = cli("find", "--address", "nobody@a.example", "--db", db)
    assert none.returncode == 1 and "no mailbox found" in none.stderr  # like grep
    bad = cli("find", "--rpps", "123", "--db", db)
    assert bad.returncode == 2 and "11 digits" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("import", str(tmp_path / "nope.txt"), "--db", db)
    assert missing.returncode == 65 and "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
    empty = cli("find", "--rpps", "10000000011", "--db", str(tmp_path / "empty.db"))
    assert empty.returncode == 65 and "no directory imported" in empty.stderr


def test_export_of_our_users_is_a_valid_extraction(world: object, tmp_path: Path) -> None:
    from gateway.crypto.world import USERS, World

    assert isinstance(world, World)
    book = AddressBook.load(world.addresses)
    lines = list(export_lines(book.users()))
    assert lines[0].split("|") == HEADER
    assert all(len(line.split("|")) == COLUMNS for line in lines)
    out = tmp_path / "export.txt"
    proc = subprocess.run([sys.executable, "-m", "gateway", "directory", "export", "--config",
                           str(world.config), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    store = DirectoryStore(tmp_path / "d.db")
    assert store.import_file(out).imported == len(USERS) + 2  # with the expired/revoked users
    dupont = store.find_by_rpps("10001234567")
    assert [(e.box_type, e.address, e.family_name, e.given_name) for e in dupont] == [
        ("PER", "jean.dupont@legacy.mssante.example", "Dupont", "Jean")]
    lab = store.find_by_address("labo.biolab@legacy.mssante.example")
    assert lab[0].box_type == "ORG" and lab[0].structure_name == "Laboratoire Biolab"


def test_import_draws_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    import fcntl
    import os
    import pty
    import struct
    import termios

    src = extraction(tmp_path / "x.txt", *[row("PER", f"p{n}@a.mssante.example",
                                              f"100000{n:05d}", "Nom", f"P{n}", "75")
                                          for n in range(50)])
    quiet = cli("import", str(src), "--db", str(tmp_path / "a.db"))
    assert quiet.returncode == 0 and quiet.stderr == ""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a screen
    drawn: list[bytes] = []

    def read_terminal() -> None:  # while the command runs: a closed terminal loses the rest
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 65536):
                drawn.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        done = subprocess.run([sys.executable, "-m", "gateway", "directory", "import", str(src),
                               "--db", str(tmp_path / "b.db")], stderr=follower,
                              stdout=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    assert done.returncode == 0
    assert b"directory import" in b"".join(drawn) and b"lines" in b"".join(drawn)
