"""`passerelle serve`, `passerelle queue …`, `passerelle quarantine …`, `passerelle demo`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway import config
from gateway.errors import ConfigError
from gateway.spool.model import QueueEntry


def _settings(path: Path | None) -> config.Settings:
    return config.load_located(path)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    serve = sub.add_parser(
        "serve", help="run the gateway (listeners, workers, delivery)",
        description=("Run the gateway: both SMTP listeners, the translation workers (in "
                     "[workers] processes worker processes) and delivery. The spool is SQLite "
                     "under state_dir, or the PostgreSQL database of [spool] url, which several "
                     "instances can share. SIGTERM drains (stop accepting, finish what is in "
                     "flight, leave the rest in the spool); SIGHUP reloads the address book and "
                     "the list of domains."))
    serve.add_argument("--config", type=Path,
                       help="the configuration (see deploy/passerelle.example.toml)")
    serve.set_defaults(handler=run_serve)

    for name, states, actions in (
        ("queue", None, ("list", "show", "retry", "hold", "release", "delete")),
        ("quarantine", "quarantined", ("list", "show", "release", "drop")),
    ):
        p = sub.add_parser(name, help=f"inspect and act on the {name}",
                           description=f"Inspect and act on the {name}. `list` shows ids, "
                           "sizes, ages, states and reasons — nothing about patients; `show ID`"
                           " prints one message (--raw for its bytes).")
        actions_sub = p.add_subparsers(dest=f"{name}_action", metavar="ACTION", required=True)
        for action in actions:
            a = actions_sub.add_parser(action)
            a.add_argument("--config", type=Path)
            a.add_argument("--json", action="store_true")
            if action == "list":
                if states is None:
                    a.add_argument("--state", choices=("received", "translated", "deferred",
                                                       "delivered", "bounced", "quarantined",
                                                       "held"))
            else:
                a.add_argument("queue_id", metavar="ID")
            if action == "show":
                a.add_argument("--raw", action="store_true",
                               help="print the stored message itself (may hold patient data)")
            a.set_defaults(handler=run_admin, admin=action, fixed_state=states)

    demo = sub.add_parser(
        "demo", help="run the whole gateway against simulated peers and show what happens",
        description=("From nothing: build a test world in a temporary directory, start the "
                     "gateway (SQLite spool) and simulated peers (a legacy hub and trust-space "
                     "operators, real SMTP with TLS on 127.0.0.1), send realistic messages both "
                     "ways, and print what happened to each. Exit 0 when every message reached "
                     "the outcome it should."))
    demo.add_argument("--keep-running", action="store_true",
                      help="leave the gateway and peers running afterwards (Ctrl-C stops)")
    demo.add_argument("--dir", type=Path, help="where to build the world (default: a temp dir)")
    demo.set_defaults(handler=run_demo)


def run_serve(args: argparse.Namespace) -> int:
    from gateway import statedir
    from gateway.daemon import serve

    settings = _settings(args.config)
    with statedir.hold(settings.state_dir):  # before anything in it is touched
        return asyncio.run(serve(settings))


def _entry_json(e: QueueEntry, now: float) -> dict[str, Any]:
    return {"id": e.queue_id, "direction": e.direction, "size": e.size,
            "age_s": round(now - e.received_at, 1), "sender_domain": e.mail_from_domain,
            "digest": e.digest[:16],
            "recipients": [{"domain": r.rcpt.rpartition("@")[2], "state": str(r.state),
                            "attempts": r.attempts, "reason": r.reason} for r in e.recipients]}


def run_admin(args: argparse.Namespace) -> int:
    from gateway.spool import open_spool

    settings = _settings(args.config)
    spool = open_spool(settings.journal_url)
    now = time.time()
    action = args.admin
    if action == "list":
        state = args.fixed_state or getattr(args, "state", None)
        entries = spool.list(state=state, limit=1000)
        if args.json:
            print(json.dumps([_entry_json(e, now) for e in entries], indent=2))
        else:
            for e in entries:
                states = ",".join(sorted({str(r.state) for r in e.recipients}))
                reason = next((r.reason for r in e.recipients if r.reason), "")
                print(f"{e.queue_id}  {e.direction:9} {e.size:>9}B  {now - e.received_at:>8.0f}s"
                      f"  {states:12} {reason[:60]}")
            print(f"{len(entries)} message(s)", file=sys.stderr)
        return 0
    if action == "show":
        entry, data = spool.show(args.queue_id)
        if args.raw:
            sys.stdout.buffer.write(data)
            return 0
        doc = _entry_json(entry, now)
        doc["message_id"] = entry.message_id
        doc["recipients"] = [{"rcpt": r.rcpt, "state": str(r.state), "attempts": r.attempts,
                              "reason": r.reason} for r in entry.recipients]
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    if action == "retry":
        n = spool.retry(args.queue_id, now=now)
    elif action == "hold":
        n = spool.hold(args.queue_id, now=now)
    elif action == "release":
        n = spool.release(args.queue_id, now=now)
    elif action in ("delete", "drop"):
        spool.delete(args.queue_id)
        n = 1
    else:
        raise ConfigError(f"unknown action {action}")
    print(f"{action}: {args.queue_id} ({n} recipient(s))")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run

    return asyncio.run(run(keep_running=args.keep_running, directory=args.dir))
