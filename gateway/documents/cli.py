"""Subcommands of the documents area (registered into `passerelle` by gateway.cli):
`hprim to-cda`, `cda to-hprim`, `xdm pack|unpack|verify`.

The core in this package is pure; this module is the only place here that reads files, the
clock and the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.documents import cda, hprim, pdf, xdm
from gateway.documents.codes import load_tables
from gateway.documents.model import Finding
from gateway.errors import DocumentError, TextError, TranslationError, UnknownLab
from gateway.text import normalize

MAX_INPUT = 50 * 1024 * 1024


def _read(path: str) -> bytes:
    try:
        p = Path(path)
        if p.stat().st_size > MAX_INPUT:
            raise DocumentError(f"{path}: larger than {MAX_INPUT} bytes")
        return p.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror})") from None


def _findings(found: Sequence[Finding], as_json: bool, where: str) -> None:
    if as_json:
        print(
            json.dumps({"file": where, "findings": [f.as_dict() for f in found]}), file=sys.stderr
        )
        return
    for f in found:
        print(f"passerelle: {where}: {f}", file=sys.stderr)


def _when(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DocumentError(f"--time: not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _text(args: argparse.Namespace, data: bytes) -> str:
    """The file's faithful text: legacy bytes (CP850, CP1252, Mac Roman, mojibake…) read back
    by the text engine, ``--charset`` as a hint; what it changed is said on stderr."""
    try:
        result = normalize(data, hint=args.charset)
    except TextError as exc:
        raise DocumentError(f"{args.file}: {exc}") from None
    kinds = {kind: n for kind, n in result.summary()["repairs"].items()
             if kind != "line_ends"}  # CRLF, LF or CR: HPRIM is read the same
    if result.encoding not in ("ascii", "utf-8") or kinds:
        repaired = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(f"passerelle: {args.file}: read as {result.encoding} (confidence "
              f"{result.confidence:.2f}){'; repaired: ' + repaired if repaired else ''}",
              file=sys.stderr)
    return result.text


def _to_cda(args: argparse.Namespace) -> int:
    data = _read(args.file)
    text = _text(args, data)
    if not hprim.looks_like_hprim(text):
        raise DocumentError(f"{args.file}: not HPRIM Net (no ****FIN**** after a header)")
    parsed = hprim.parse(text)
    count = len(parsed.documents)
    if args.document is not None:
        if not 1 <= args.document <= count:
            raise DocumentError(f"{args.file}: no document {args.document} (it has {count})")
        numbers = [args.document]
    elif count > 1 and not args.out:
        raise DocumentError(f"{args.file}: {count} reports: give --out DIR for one file each, "
                            "or --document N for one")
    else:
        numbers = list(range(1, count + 1))
    when = _when(args.time)
    tables = load_tables(args.mappings)
    lab = None
    if args.lab:
        lab = tables.labs.lookup(args.lab)
        if lab is None:
            raise DocumentError(f"--lab {args.lab}: no such lab in labs.csv")
    outputs: list[tuple[int, bytes]] = []
    found = list(parsed.findings)
    for n in numbers:
        doc = parsed.documents[n - 1]
        key = f"{hashlib.sha256(data).hexdigest()}/{n}"  # the same file, the same id
        if args.document_id:
            doc_id = args.document_id if len(numbers) == 1 else f"{args.document_id}.{n}"
        else:
            doc_id = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, key).int}"
        try:
            result = cda.build_crbio(doc, tables=tables, document_id=doc_id,
                                     effective_time=when, lab=lab)
        except UnknownLab as exc:
            raise DocumentError(f"{args.file}: {exc} (name it with --lab)") from None
        except TranslationError:
            # Nothing to structure: the report travels as a PDF in a level-1 document.
            result = cda.build_level1(doc, pdf.render(doc), tables=tables, document_id=doc_id,
                                      effective_time=when, lab=lab)
            found.append(Finding("level-1", f"report {n}: no RES line: sent as a level-1 CDA "
                                 "with a PDF"))
        found += result.findings
        outputs.append((n, result.xml))
    _findings(found, args.json, args.file)
    if not args.out:
        sys.stdout.buffer.write(outputs[0][1])
        sys.stdout.buffer.flush()
        return 0
    out = Path(args.out)
    stem = Path(args.file).stem
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for n, xml in outputs:
            target = out / f"{stem}-{n}.xml"
            target.write_bytes(xml)
            written.append(str(target))
    except OSError as exc:
        raise DocumentError(f"--out {out}: cannot write ({exc.strerror})") from None
    what = "report" if len(written) == 1 else "reports"
    print(f"{args.file}: {len(written)} {what} → {', '.join(written)}", file=sys.stderr)
    return 0


def _to_hprim(args: argparse.Namespace) -> int:
    content = cda.read_cda(_read(args.file))
    if content.pdf is not None:
        raise DocumentError(f"{args.file}: level-1 CDA carries a PDF, not results")
    _findings(content.findings, args.json, args.file)
    if args.attachments:
        # the files the CDA carries (its PDF copy, images), as the legacy message attaches them
        where = Path(args.attachments)
        try:
            where.mkdir(parents=True, exist_ok=True)
            for k, a in enumerate(content.attachments, start=1):
                (where / f"CR0001-{k}.{a.extension}").write_bytes(a.data)
        except OSError as exc:
            raise DocumentError(f"--attachments: cannot write ({exc.strerror})") from None
    text = hprim.write(content.document)
    try:
        out = text.encode(args.charset)
    except LookupError:
        raise DocumentError(f"--charset: unknown charset {args.charset!r}") from None
    except UnicodeEncodeError as exc:
        raise DocumentError(
            f"--charset {args.charset}: cannot encode character {exc.start}"
        ) from None
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return 0


def _pack(args: argparse.Namespace) -> int:
    docs = [xdm.XdmDocument(_read(p)) for p in args.cda]
    data = xdm.pack(docs, submission_time=_when(args.time), sender=xdm.XdmSender(args.sender))
    Path(args.out).write_bytes(data)
    print(f"{args.out}: {len(docs)} document(s), {len(data)} bytes")
    return 0


def _unpack(args: argparse.Namespace) -> int:
    package = xdm.unpack(_read(args.zip))
    out = Path(args.out)
    files = [(package.metadata_path, package.metadata)]
    files += [(e.path, e.xml) for e in package.documents]
    files += [(o.path, o.data) for o in package.others]
    for path, data in files:
        # every path was checked to stay inside the package (no absolute path, no "..")
        # before anything was read
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
        if path != package.metadata_path:
            print(out / path)
    return 0


def _verify(args: argparse.Namespace) -> int:
    found = xdm.verify(_read(args.zip))
    if args.json:
        print(
            json.dumps(
                {"file": args.zip, "ok": not found, "findings": [f.as_dict() for f in found]}
            )
        )
    elif found:
        for f in found:
            print(f"passerelle: xdm verify: {args.zip}: {f}", file=sys.stderr)
    else:
        print(f"{args.zip}: ok")
    return 65 if found else 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this area's subcommands to the `passerelle` parser."""
    hp = sub.add_parser("hprim", help="HPRIM Net documents").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=sub._parser_class
    )
    p = hp.add_parser("to-cda", help="HPRIM Net file -> CDA R2 CR-BIO (one per report)")
    p.add_argument("file")
    p.add_argument("--document", type=int, metavar="N",
                   help="only report N of the file (1-based; default: every report)")
    p.add_argument("--out", metavar="DIR", help="write one CDA per report into DIR "
                   "(FILE-1.xml, FILE-2.xml…); without it the only report goes to stdout")
    p.add_argument("--charset", help="the file's likely charset or platform (cp850, cp1252, "
                   "mac_roman, pc, mac, dos): a hint, the text engine reads legacy text itself")
    p.add_argument("--document-id", help="CDA id root (default: an OID derived from the file)")
    p.add_argument("--time", help="effective time, ISO 8601 (default: now)")
    p.add_argument("--mappings", help="directory of lab-codes.csv, units.csv and labs.csv")
    p.add_argument("--lab", help="the sending lab: its legacy address, FINESS or HPRIM code in "
                   "labs.csv (default: the sender code of HPRIM line 11)")
    p.add_argument("--json", action="store_true", help="findings as JSON on stderr")
    p.set_defaults(handler=_to_cda)

    cp = sub.add_parser("cda", help="CDA R2 documents").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=sub._parser_class
    )
    p = cp.add_parser("to-hprim", help="CDA R2 CR-BIO -> HPRIM Net on stdout")
    p.add_argument("file")
    p.add_argument("--charset", default="utf-8", help="output charset (default utf-8)")
    p.add_argument("--json", action="store_true", help="findings as JSON on stderr")
    p.add_argument("--attachments", metavar="DIR",
                   help="write the files the CDA carries (PDF copy, images) into DIR")
    p.set_defaults(handler=_to_hprim)

    xp = sub.add_parser("xdm", help="IHE XDM packages").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=sub._parser_class
    )
    p = xp.add_parser("pack", help="CDA files -> IHE_XDM.ZIP")
    p.add_argument("cda", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--sender", default="passerelle", help="sender named in README and metadata")
    p.add_argument("--time", help="submission time, ISO 8601 (default: now)")
    p.set_defaults(handler=_pack)
    p = xp.add_parser("unpack", help="check an XDM zip and extract its documents")
    p.add_argument("zip")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_unpack)
    p = xp.add_parser("verify", help="check hashes, sizes and safety of an XDM zip")
    p.add_argument("zip")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_verify)
