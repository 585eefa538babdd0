"""`passerelle translate` and `passerelle trace show|verify`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from gateway import config
from gateway.errors import BadInputError, UsageError
from gateway.mail import mime


def _settings(path: Path | None) -> config.Settings:
    return config.load_located(path)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    tr = sub.add_parser(
        "translate", help="translate one message, exactly as the daemon would",
        description=(
            "Translate IN.eml (an RFC 5322 message as received) and write the translated "
            "message to standard output: --to trust opens a legacy message (decrypt, verify "
            "the signer), repairs its text, converts HPRIM reports to CDA/XDM + PDF and signs "
            "with S/MIME; --to legacy verifies a trust-space message, converts XDM to HPRIM in "
            "the recipient's charset and seals it for the recipient. The envelope defaults to "
            "the From and To/Cc headers. Exit 65 with the reason (and nothing on stdout) when "
            "the message cannot be translated."))
    tr.add_argument("--to", required=True, choices=("trust", "legacy"), dest="direction")
    tr.add_argument("--config", type=Path, help="passerelle.toml (default: $PASSERELLE_CONFIG, "
                    "./passerelle.toml, /etc/passerelle/passerelle.toml)")
    tr.add_argument("--mail-from", help="envelope sender (default: the From header)")
    tr.add_argument("--rcpt", action="append", help="envelope recipient (repeatable; default: "
                                                    "To and Cc)")
    tr.add_argument("--record", action="store_true",
                    help="also append the trace to the journal (as the daemon does)")
    tr.add_argument("file", metavar="IN.eml", type=Path)
    tr.set_defaults(handler=run_translate)

    trace = sub.add_parser("trace", help="the hash-chained trace journal",
                           description="Read and check the trace journal.")
    trace_sub = trace.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    show = trace_sub.add_parser(
        "show", help="every recorded step of one message",
        description="Every recorded step of one message, in the order recorded, each at its own "
        "time: its translation (digests of what each step read and wrote), each delivery "
        "attempt, quarantine, release, the notices written about it, purge. ID is its "
        "Message-ID (with or without <>) or its queue id (from the log or `queue list`).")
    show.add_argument("message_id", metavar="ID")
    show.add_argument("--config", type=Path)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=run_trace_show)
    verify = trace_sub.add_parser("verify", help="recompute the chain; name the first broken "
                                                 "entry (exit 65) if any")
    verify.add_argument("--config", type=Path)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=run_trace_verify)


def run_translate(args: argparse.Namespace) -> int:
    from gateway.log import configure as configure_logging
    from gateway.translate.factory import build_translator
    from gateway.translate.pipeline import Envelope

    # stdout carries the translated message only: what the adapters log (rnp hands a
    # refusal to gpg to name, and says so) goes to stderr, redacted, warnings and worse
    configure_logging("warning", stream=sys.stderr)

    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {args.file}: {exc.strerror}") from None
    settings = _settings(args.config)
    translator = build_translator(settings)
    msg = mime.parse(raw)
    mail_from = args.mail_from or next(
        (a for _, a in getaddresses([mime.header(msg, "From")]) if a), "")
    rcpts = tuple(args.rcpt or [a for _, a in getaddresses(
        [mime.header(msg, "To"), mime.header(msg, "Cc")]) if a])
    if not rcpts:
        raise UsageError("no recipient: give --rcpt")
    now = datetime.now(UTC)
    envelope = Envelope(mail_from, rcpts)
    if args.direction == "trust":
        results = [translator.to_trust(raw, envelope, now=now)]
    else:
        results = translator.to_legacy(raw, envelope, now=now)
        if len(results) != 1:
            raise UsageError(f"{len(results)} legacy recipients: choose one with --rcpt")
    if args.record:
        from gateway.spool import open_journal

        journal = open_journal(settings.journal_url)
        for r in results:
            journal.append_trace(r.trace, at=now)
    sys.stdout.buffer.write(results[0].message)
    sys.stdout.flush()
    return 0


_FRAME = ("stage", "at", "direction", "input_sha256", "output_sha256", "details")


def _facts(record: dict[str, Any]) -> str:
    """A step's facts on one line: its own (delivery, quarantine…) and its details."""
    facts = {k: v for k, v in record.items() if k not in _FRAME}
    details = record.get("details")
    if isinstance(details, dict):
        facts.update(details)
    out = []
    for k, v in facts.items():
        if isinstance(v, list) and v and all(isinstance(x, str | int | float) for x in v):
            v = ",".join(str(x) for x in v)
        if isinstance(v, str | int | float) and v != "":
            out.append(f"{k}={v}")
    return " ".join(out)


def run_trace_show(args: argparse.Namespace) -> int:
    from gateway.spool import open_journal

    journal = open_journal(_settings(args.config).journal_url, create=False)
    wanted = args.message_id.strip()
    entries = []
    for key in dict.fromkeys((wanted, f"<{wanted.strip('<>')}>")):
        entries = journal.entries(key)
        if entries:
            break
    if not entries:  # a queue id: the steps of that message only
        entries = journal.entries_of_queue(wanted)
    if not entries:
        raise BadInputError(f"no trace recorded for {args.message_id}")
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], ensure_ascii=False, indent=2))
        return 0
    for e in entries:
        at = str(e.record.get("at") or e.at)
        digests = ""
        if "input_sha256" in e.record or "output_sha256" in e.record:
            digests = (f"in={str(e.record.get('input_sha256', '-'))[:12]} "
                       f"out={str(e.record.get('output_sha256', '-'))[:12]} ")
        print(f"#{e.seq} {at} {e.stage:<11} {digests}{_facts(e.record)}".rstrip())
    return 0


def run_trace_verify(args: argparse.Namespace) -> int:
    from gateway.spool import open_journal

    result = open_journal(_settings(args.config).journal_url, create=False).verify()
    if args.json:
        print(json.dumps(result.__dict__))
    if result.ok:
        if not args.json:
            print(f"journal intact: {result.count} entries")
        return 0
    raise BadInputError(f"journal broken at entry #{result.first_broken}: {result.reason}")
