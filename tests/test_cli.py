"""The `passerelle` command as a user meets it: help, version, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli import main
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "text" / "sample-letter-mac-read-as-pc.bin"
EXPECTED = (FIXTURES / "text" / "extra" / "garbled" / "e08-mac-read-as-pc-utf8.expected").read_text(
    "utf-8"
)


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin,
                          capture_output=True, check=False)


def test_help_lists_commands_and_exit_codes() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "normalize-text" in out and "exit codes" in out


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"passerelle {__version__}"


def test_usage_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["normalize-text"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage" in err


def test_no_command_prints_help_and_exits_2() -> None:
    assert run().returncode == 2


def test_normalize_text_file_prints_utf8() -> None:
    proc = run("normalize-text", str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode("utf-8") == EXPECTED


def test_normalize_text_stdin_and_json() -> None:
    proc = run("normalize-text", "--json", "-", stdin=SAMPLE.read_bytes())
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["text"] == EXPECTED
    assert doc["encoding"] == "utf-8"
    assert 0 < doc["confidence"] <= 1
    kinds = {r["kind"] for r in doc["repairs"]}
    assert {"mac_pc", "line_ends"} <= kinds
    assert all({"kind", "offset", "line", "column", "before", "after"} <= set(r)
               for r in doc["repairs"])


def test_normalize_text_hint() -> None:
    proc = run("normalize-text", "--hint", "cp850", "-", stdin="ÉTAT".encode("cp850"))
    assert proc.stdout.decode() == "ÉTAT"


def test_binary_input_exit_65_one_line(tmp_path: Path) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(b"%PDF-1.4\x00\x00binary")
    proc = run("normalize-text", str(pdf))
    assert proc.returncode == 65
    assert proc.stdout == b""
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "not text" in err and "Traceback" not in err


def test_missing_file_exit_65(tmp_path: Path) -> None:
    proc = run("normalize-text", str(tmp_path / "absent.txt"))
    assert proc.returncode == 65
    assert "cannot read" in proc.stderr.decode()
