"""`passerelle normalize-text`: repair a legacy text file and print it as UTF-8."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.errors import BadInputError
from gateway.text.charsets import HINTS
from gateway.text.repair import normalize
from gateway.text.short import repair_short

# A single line up to this many bytes is a short string (a name, a subject, a header line):
# read on its own evidence by gateway.text.short, left as received when that cannot decide.
SHORT_LIMIT = 256


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "normalize-text",
        help="repair a garbled legacy text (Mac/PC, CP850, mojibake) and print it as UTF-8",
        description=(
            "Read FILE (or standard input with -) as a legacy client wrote it — CP1252, "
            "ISO-8859-1/15, Mac Roman, CP850 or UTF-8, with mojibake or Mac/PC garbling baked "
            "in, or several mixed — and write the text the author wrote as UTF-8 with LF line "
            "ends. Exit 65 when the input is not text."
        ),
    )
    p.add_argument("file", metavar="FILE|-", help="the text to repair; - reads standard input")
    p.add_argument(
        "--hint",
        choices=sorted({"cp1252", "mac_roman", "cp850", "utf-8", "iso-8859-1", "iso-8859-15"}),
        help="the sender's known charset: it tips the balance, it never overrules evidence",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"text", "encoding", "confidence", "encodings", "repairs"} instead',
    )
    p.add_argument(
        "--as",
        dest="kind",
        choices=("auto", "letter", "short"),
        default="auto",
        help=f"read as a letter or as a short string (a name, a subject); auto: a single line "
             f"of at most {SHORT_LIMIT} bytes is a short string",
    )
    p.set_defaults(handler=run)
    assert set(HINTS) >= {"cp1252", "mac_roman", "cp850", "utf-8"}


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {name}: {exc.strerror or exc}") from None


def _is_short(data: bytes) -> bool:
    line = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(
        (b"\n", b"\r")) else data
    return len(line) <= SHORT_LIMIT and b"\n" not in line and b"\r" not in line \
        and b"\x00" not in line


def run(args: argparse.Namespace) -> int:
    data = _read(args.file)
    if args.kind == "short" or (args.kind == "auto" and _is_short(data)):
        return _run_short(data, args)
    result = normalize(data, hint=args.hint)
    out = sys.stdout
    if args.json:
        out.write(json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.buffer.write(result.text.encode("utf-8"))
    out.flush()
    return 0


def _run_short(data: bytes, args: argparse.Namespace) -> int:
    end = data[len(data.rstrip(b"\r\n")):]
    short = repair_short(data[: len(data) - len(end)], hint=args.hint)
    if args.json:
        sys.stdout.write(json.dumps(short.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.buffer.write(short.text.encode("utf-8") + (b"\n" if end else b""))
    sys.stdout.flush()
    return 0
