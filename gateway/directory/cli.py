"""`passerelle directory import|find|export`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.errors import UsageError


def default_db(args: argparse.Namespace) -> Path | str:
    """--db (a SQLite file or a postgresql:// URL), else where the configuration puts it."""
    if args.db:
        return str(args.db) if str(args.db).startswith(("postgresql://", "postgres://")) \
            else Path(args.db)
    from gateway import config

    path = config.find(getattr(args, "config", None))
    return config.load(path).directory_target if path else Path("state") / "directory.db"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    d = sub.add_parser("directory", help="the national directory of MSSanté mailboxes",
                       description="Import the national MSSanté directory extraction, find "
                       "mailboxes, export the legacy users' addresses.")
    dsub = d.add_subparsers(dest="directory_action", metavar="ACTION", required=True)
    imp = dsub.add_parser("import", help="import an extraction (plain or zipped)")
    imp.add_argument("file", type=Path,
                     help="the national extraction: 31 columns, |-separated, UTF-8; plain or zip")
    find = dsub.add_parser("find", help="find mailboxes by RPPS, name or address")
    group = find.add_mutually_exclusive_group(required=True)
    group.add_argument("--rpps")
    group.add_argument("--name", help='"NOM Prénom" or "NOM"')
    group.add_argument("--address")
    find.add_argument("--limit", type=int, default=20, metavar="N",
                      help="show at most N mailboxes (default 20; 0: all); exit 1 when none")
    exp = dsub.add_parser("export", help="the legacy users' trust addresses, 31 columns")
    exp.add_argument("--out", type=Path, help="file to write (default: stdout)")
    for p in (imp, find, exp):
        p.add_argument("--db", help="directory database: a SQLite file or a postgresql:// URL "
                       "(default: the PostgreSQL spool database if [spool] url is one, else "
                       "<state_dir>/directory.db)")
        p.add_argument("--config", type=Path)
        p.add_argument("--json", action="store_true")
    imp.set_defaults(handler=run_import)
    find.set_defaults(handler=run_find)
    exp.set_defaults(handler=run_export)


def run_import(args: argparse.Namespace) -> int:
    from gateway.directory.pgstore import open_directory
    from gateway.progress import bar

    store = open_directory(default_db(args))
    with bar(unit=" lines", desc="directory import") as shown:
        def progress(lines: int) -> None:
            shown.update(lines - shown.n)

        report = store.import_file(args.file, progress)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(f"imported {report.imported:,} mailboxes from {report.lines:,} lines in "
              f"{report.seconds} s; {report.duplicates:,} duplicate addresses and "
              f"{report.malformed:,} malformed lines skipped")
        for line, reason in report.malformed_examples[:5]:
            print(f"  line {line}: {reason}", file=sys.stderr)
    _tell_daemon(args)
    return 0


def _tell_daemon(args: argparse.Namespace) -> None:
    """The daemon whose configuration names this directory reads it again (SIGHUP)."""
    from gateway import config
    from gateway.statedir import reload_daemon

    path = config.find(getattr(args, "config", None))
    if path is None:
        return
    settings = config.load(path)
    if args.db is None or str(settings.directory_target) == str(default_db(args)):
        print(reload_daemon(settings.state_dir), file=sys.stderr if args.json else sys.stdout)


def run_find(args: argparse.Namespace) -> int:
    from gateway.directory.pgstore import open_directory

    store = open_directory(default_db(args))
    if args.rpps is not None:
        if not re.fullmatch(r"\d{11}", args.rpps):
            raise UsageError("--rpps takes the 11 digits of an RPPS number")
        found = store.find_by_rpps(args.rpps)
    elif args.name is not None:
        family, _, given = args.name.strip().partition(" ")
        found = store.find_by_name(family, given or None)
    else:
        found = store.find_by_address(args.address)
    if args.limit < 0:
        raise UsageError("--limit takes a whole number, 0 or more")
    shown = found[:args.limit] if args.limit else found
    if args.json:
        print(json.dumps([{"type": e.box_type, "address": e.address, "rpps": e.rpps,
                           "family_name": e.family_name, "given_name": e.given_name,
                           "structure": e.structure_name, "department": e.department}
                          for e in shown], ensure_ascii=False, indent=2))
    else:
        for e in shown:
            print(f"{e.box_type:4} {e.address:45} {e.rpps:11} {e.family_name} {e.given_name}"
                  f" ({e.department})")
    if not found:
        print("no mailbox found", file=sys.stderr)
        return 1
    if len(shown) < len(found):
        print(f"{len(found) - len(shown):,} more not shown ({len(found):,} in all; "
              "--limit N to see more, 0 for all)", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from gateway import config
    from gateway.directory.addresses import AddressBook
    from gateway.directory.export import export_lines

    settings = config.load(config.find(args.config))
    book = AddressBook.load(settings.addresses)
    text = "\n".join(export_lines(book.users())) + "\n"
    if args.out:
        args.out.write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return 0
