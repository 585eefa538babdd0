"""Streaming reader of the extraction (plain or zipped; UTF-8 with or without BOM).

Malformed lines (wrong column count, bad UTF-8, no address) are counted with their line
numbers and skipped — never fatal.  A wrong header is fatal: it is not the right file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gateway.directory.model import COLUMNS, HEADER, DirectoryEntry, fold_name
from gateway.errors import BadInputError


@dataclass
class ReadReport:
    lines: int = 0
    malformed: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)

    def bad(self, line: int, reason: str) -> None:
        self.malformed += 1
        if len(self.examples) < 20:
            self.examples.append((line, reason))


def _open(path: Path) -> IO[bytes]:
    try:
        if zipfile.is_zipfile(path):
            z = zipfile.ZipFile(path)
            members = [i for i in z.infolist() if not i.is_dir()]
            if not members:
                raise BadInputError(f"{path}: empty zip")
            return z.open(members[0])
        return path.open("rb")
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_header(line: bytes, path: Path) -> None:
    text = line.decode("utf-8-sig", "replace").rstrip("\r\n")
    cols = text.split("|")
    if len(cols) != COLUMNS or fold_name(cols[1]) != fold_name(HEADER[1]):
        raise BadInputError(f"{path}: not the MSSanté directory extraction "
                            f"(header has {len(cols)} columns, expected {COLUMNS})")


def read(path: Path, report: ReadReport) -> Iterator[DirectoryEntry]:
    with _open(path) as stream:
        header = stream.readline()
        if not header:
            raise BadInputError(f"{path}: empty file")
        _check_header(header, path)
        for n, line in enumerate(stream, start=2):
            report.lines += 1
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                report.bad(n, "not UTF-8")
                continue
            if not text.strip():
                report.bad(n, "empty line")
                continue
            cols = text.split("|")
            if len(cols) != COLUMNS:
                report.bad(n, f"{len(cols)} columns")
                continue
            if "@" not in cols[1]:
                report.bad(n, "no mailbox address")
                continue
            yield DirectoryEntry(*cols)
