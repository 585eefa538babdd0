"""`passerelle serve`, `passerelle queue …`, `passerelle quarantine …`, `passerelle demo`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import config, progress
from gateway.errors import ConfigError, PasserelleError, UsageError
from gateway.journal import Journal
from gateway.spool import events
from gateway.spool.model import Direction, QueueEntry, State
from gateway.spool.search import AGE_BUCKETS, BULK_ACTIONS, QueueFilter, parse_since

if TYPE_CHECKING:
    from gateway.spool.sqlite import SqliteSpool


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

    for name, fixed, actions in (
        ("queue", None, ("list", "show", "summary", "retry", "hold", "release", "delete",
                         "purge")),
        ("quarantine", "quarantined", ("list", "show", "summary", "release", "drop")),
    ):
        p = sub.add_parser(name, help=f"inspect and act on the {name}",
                           description=f"Inspect and act on the {name}. `list` shows ids, "
                           "sizes, ages, states and domains — nothing about patients; `show ID`"
                           " prints one message (--raw for its bytes); `summary` counts by "
                           "state, domain and age. The actions take an ID, or a filter (or "
                           "--all) and then ask for confirmation unless --yes. --json prints "
                           "the documented schema (docs/operations.md).")
        actions_sub = p.add_subparsers(dest=f"{name}_action", metavar="ACTION", required=True)
        for action in actions:
            a = actions_sub.add_parser(action)
            a.add_argument("--config", type=Path)
            a.add_argument("--json", action="store_true", help="machine-readable output")
            if action == "purge":
                a.description = ("Purge what [retention] no longer keeps (the daemon does it "
                                 "every [retention] interval): the content of finished "
                                 "messages, then their rows; each purge is recorded in the "
                                 "message's trace (a `purged` step).")
                a.set_defaults(handler=run_purge)
                continue
            if action == "show":
                a.add_argument("queue_id", metavar="ID")
                a.add_argument("--raw", action="store_true",
                               help="print the stored message itself (may hold patient data)")
            else:
                if action not in ("list", "summary"):
                    a.add_argument("queue_id", metavar="ID", nargs="?",
                                   help="one message (or give a filter, or --all)")
                    a.add_argument("--yes", "-y", action="store_true",
                                   help="act on a filter without asking")
                _filters(a, fixed)
            if action == "list":
                a.add_argument("--limit", type=int, default=50, help="rows per page (50)")
                page = a.add_mutually_exclusive_group()
                page.add_argument("--offset", type=int, default=0, help="rows to skip")
                page.add_argument("--page", type=int, help="page number (from 1)")
            a.set_defaults(handler=run_admin, admin=action, fixed_state=fixed)

    keys = sub.add_parser(
        "keys", help="the keyring sealing the spool at rest",
        description=("`keys new --out FILE` writes a new keyring (mode 0600) for [keys] file "
                     "or the systemd credential passerelle-keys; `keys rotate` adds a new key, "
                     "makes it current and seals every stored message with it (with "
                     "--background, or when a daemon is running: the daemon does, once it has "
                     "read the new keyring). Older keys stay in the ring to open backups."))
    keys_sub = keys.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    new = keys_sub.add_parser("new", help="write a new keyring")
    new.add_argument("--out", type=Path, required=True, help="the file to write (not there yet)")
    new.set_defaults(handler=run_keys_new)
    rotate = keys_sub.add_parser("rotate", help="add a key and seal everything with it")
    rotate.add_argument("--config", type=Path)
    rotate.add_argument("--file", type=Path, help="the keyring (default: [keys] file)")
    rotate.add_argument("--background", action="store_true",
                        help="only add the key and tell the running daemon (SIGHUP), which "
                        "seals the stored messages again")
    rotate.set_defaults(handler=run_keys_rotate)

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
    from gateway.daemon import run, serve

    settings = _settings(args.config)
    with statedir.hold(settings.state_dir):  # before anything in it is touched
        return run(serve(settings))


SCHEMA = "passerelle.queue/1"
"""The ``schema`` of every JSON document `queue` and `quarantine` print (docs/operations.md)."""


def _filters(a: argparse.ArgumentParser, fixed: str | None) -> None:
    if fixed is None:
        a.add_argument("--state", choices=[str(s) for s in State],
                       help="recipients in this state (delivered and bounced are hidden "
                       "unless asked for, or with --all)")
    a.add_argument("--direction", choices=[str(d) for d in Direction])
    a.add_argument("--from", dest="sender", metavar="ADDRESS|DOMAIN",
                   help="the envelope sender, or any sender at a domain")
    a.add_argument("--to", dest="rcpt", metavar="ADDRESS|DOMAIN",
                   help="a recipient, or any recipient at a domain")
    a.add_argument("--domain", help="the recipient's (destination) domain")
    a.add_argument("--since", metavar="WHEN",
                   help="received since: 30m, 2h, 3d, 1w, or a date (2026-12-01[T08:00])")
    a.add_argument("--message-id", metavar="ID", help="the Message-ID (with or without <>)")
    a.add_argument("--all", dest="everything", action="store_true",
                   help="delivered and bounced messages too; for an action: every message")


def _filter(args: argparse.Namespace, now: float) -> QueueFilter:
    since = getattr(args, "since", None)
    return QueueFilter(
        state=args.fixed_state or getattr(args, "state", None),
        direction=getattr(args, "direction", None), sender=getattr(args, "sender", None),
        rcpt=getattr(args, "rcpt", None), domain=getattr(args, "domain", None),
        since=parse_since(since, now=now) if since else None,
        message_id=getattr(args, "message_id", None),
        everything=bool(getattr(args, "everything", False)))


def _filtered(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) for k in ("state", "direction", "sender", "rcpt",
                                                 "domain", "since", "message_id",
                                                 "everything"))


def human_age(seconds: float) -> str:
    """``42s``, ``5m 12s``, ``3h 12m``, ``3d 4h``: two units at most."""
    s = max(0, int(seconds))
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                          ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // small_size
            return f"{s // size}{unit} {rest}{small}" if rest else f"{s // size}{unit}"
    return f"{s}s"


def human_size(n: int) -> str:
    """``512 B``, ``20 KB``, ``1.5 MB``, ``25 MB`` (powers of 1024)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            if unit == "B":
                return f"{n} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _next_retry(e: QueueEntry) -> float | None:
    return min((r.next_attempt for r in e.recipients if r.state is State.DEFERRED),
               default=None)


def _entry_json(e: QueueEntry, now: float, *, full: bool = False) -> dict[str, Any]:
    states: dict[str, int] = {}
    for r in e.recipients:
        states[str(r.state)] = states.get(str(r.state), 0) + 1
    doc: dict[str, Any] = {
        "id": e.queue_id, "direction": e.direction, "size": e.size,
        "received_at": _iso(e.received_at), "age_s": round(now - e.received_at, 1),
        "sender_domain": e.mail_from_domain, "digest": e.digest if full else e.digest[:16],
        "states": states, "next_retry": _iso(_next_retry(e))}
    if full:
        doc["message_id"] = e.message_id
    doc["recipients"] = [
        {("rcpt" if full else "domain"): r.rcpt if full else r.rcpt.rpartition("@")[2],
         "state": str(r.state), "attempts": r.attempts,
         "next_attempt": _iso(r.next_attempt) if r.state is State.DEFERRED else None,
         "reason": r.reason} for r in e.recipients]
    return doc


def _print_json(command: str, **fields: Any) -> None:
    print(json.dumps({"schema": SCHEMA, "command": command, **fields}, indent=2,
                     ensure_ascii=False))


def _when(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    return "now" if t <= now else f"in {human_age(t - now)}"


def _list(spool: SqliteSpool, args: argparse.Namespace, f: QueueFilter, now: float) -> int:
    if args.limit < 1 or args.offset < 0 or (args.page is not None and args.page < 1):
        raise UsageError("--limit and --page start at 1, --offset at 0")
    offset = (args.page - 1) * args.limit if args.page else args.offset
    entries, total = spool.search(f, limit=args.limit, offset=offset)
    if args.json:
        _print_json("list", total=total, offset=offset, limit=args.limit,
                    messages=[_entry_json(e, now) for e in entries])
        return 0
    print(f"{'ID':20}  {'DIRECTION':9}  {'SIZE':>7}  {'AGE':>7}  {'STATE':18}  {'RCPT':>4}  "
          f"{'TO DOMAIN':24}  {'NEXT RETRY':10}  REASON")
    for e in entries:
        states = ",".join(sorted({str(r.state) for r in e.recipients}))
        domains = ",".join(dict.fromkeys(r.rcpt.rpartition("@")[2] for r in e.recipients))
        reason = next((r.reason for r in e.recipients if r.reason), "")
        reason = reason if len(reason) <= 60 else reason[:59] + "…"
        domains = domains if len(domains) <= 24 else domains[:23] + "…"
        print(f"{e.queue_id:20}  {e.direction:9}  {human_size(e.size):>7}  "
              f"{human_age(now - e.received_at):>7}  {states:18}  {len(e.recipients):>4}  "
              f"{domains:24}  {_when(_next_retry(e), now):10}  {reason}")
    shown = f"{offset + 1}–{offset + len(entries)}" if entries else "none"
    more = ""
    if offset + len(entries) < total:
        more = f"; next: --page {offset // args.limit + 2}" if offset % args.limit == 0 else \
            f"; next: --offset {offset + len(entries)}"
    hidden = "" if f.everything or f.state else " (delivered and bounced hidden: --all)"
    print(f"{total} message(s), showing {shown}{more}{hidden}", file=sys.stderr)
    return 0


def _show(spool: SqliteSpool, args: argparse.Namespace, now: float) -> int:
    entry, data = spool.show(args.queue_id)
    if args.raw:
        sys.stdout.buffer.write(data)
        return 0
    if args.json:
        _print_json("show", message=_entry_json(entry, now, full=True))
        return 0
    print(f"id:          {entry.queue_id}\ndirection:   {entry.direction}\n"
          f"message-id:  {entry.message_id}\nsender:      @{entry.mail_from_domain}\n"
          f"received:    {_iso(entry.received_at)} ({human_age(now - entry.received_at)} ago)"
          f"\nsize:        {human_size(entry.size)} ({entry.size} bytes)\n"
          f"sha-256:     {entry.digest}\nrecipients:")
    for r in entry.recipients:
        retry = f", next retry {_when(r.next_attempt, now)}" if r.state is State.DEFERRED \
            else ""
        print(f"  {r.rcpt}: {r.state}, {r.attempts} attempt(s){retry}")
        if r.reason:
            print(f"    reason: {r.reason}")
    return 0


def _summary(spool: SqliteSpool, args: argparse.Namespace, f: QueueFilter, now: float) -> int:
    s = spool.summary(f, now=now)
    labels = [f"{top // 60}m" for top in AGE_BUCKETS] + [f"{AGE_BUCKETS[-1] // 60}m+"]
    if args.json:
        _print_json("summary", messages=s.messages, recipients=s.recipients,
                    by_state=s.by_state, age_buckets_s=list(AGE_BUCKETS), by_age=s.by_age,
                    by_domain=[{"domain": d, "total": c[0], "by_age": c[1:]}
                               for d, c in s.by_domain.items()])
        return 0
    print(f"{s.messages} message(s), {s.recipients} recipient(s): " + (", ".join(
        f"{n} {state}" for state, n in sorted(s.by_state.items())) or "nothing queued"))
    width = max([len("TOTAL"), *(len(d) for d in s.by_domain)])
    print(f"{'':{width}}  {'T':>6}" + "".join(f" {'<' + x:>7}" for x in labels[:-1])
          + f" {labels[-1]:>7}")
    for name, counts in (("TOTAL", [s.recipients, *s.by_age]), *s.by_domain.items()):
        print(f"{name:>{width}}  {counts[0]:>6}" + "".join(f" {c:>7}" for c in counts[1:]))
    return 0


def _act(spool: SqliteSpool, args: argparse.Namespace, now: float,
         journal: Journal | None = None) -> int:
    """An action on one message or on those a filter matches; a release or a deletion is
    told in each message's trace and in the log (:mod:`gateway.spool.events`)."""
    action = "delete" if args.admin == "drop" else args.admin
    told = journal is not None and action in ("release", "delete")
    before: list[QueueEntry] = []
    if args.queue_id is not None:
        if _filtered(args):
            raise UsageError(f"{args.admin}: give an ID or a filter, not both")
        if told:
            before = [spool.entry(args.queue_id)]
        if action == "delete":
            spool.delete(args.queue_id)
            n = 1
        else:
            n = getattr(spool, action)(args.queue_id, now=now)
        ids = [args.queue_id]
    else:
        if not _filtered(args) and args.fixed_state is None:
            raise UsageError(f"{args.admin}: give an ID, a filter (see --help) or --all")
        f = _filter(args, now)
        ids = spool.search_ids(f)
        if ids and not _confirm(args, len(ids)):
            print(f"{args.admin}: nothing done", file=sys.stderr)
            return 1
        if told:
            before = _entries(spool, ids)
        with progress.bar(total=len(ids), unit="msg", desc=args.admin) as bar:
            n = spool.bulk(action, ids, f, now=now, progress=bar.update)
    if journal is not None and before:
        if action == "release":
            events.released(journal, before, operator=events.local_operator(), now=now)
        elif action == "delete":
            events.purged(journal, before, reason="operator", operator=events.local_operator(),
                          now=now)
    what = "message(s)" if action == "delete" else "recipient(s)"
    if args.json:
        _print_json(args.admin, messages=len(ids), changed=n, ids=ids)
    elif len(ids) == 1 and args.queue_id is not None:
        print(f"{args.admin}: {args.queue_id} ({n} {what})")
    else:
        print(f"{args.admin}: {len(ids)} message(s) matched, {n} {what} changed")
    return 0


def _entries(spool: SqliteSpool, ids: list[str]) -> list[QueueEntry]:
    """What the spool says of each of ``ids`` (those gone meanwhile left out)."""
    out = []
    for queue_id in ids:
        try:
            out.append(spool.entry(queue_id))
        except PasserelleError:
            continue
    return out


def _confirm(args: argparse.Namespace, n: int) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{args.admin}: {n} message(s) match; add --yes to act on them "
                         "(no terminal to ask)")
    print(f"{args.admin} {n} message(s)? [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")  # stdout stays the output


def _open(settings: config.Settings) -> SqliteSpool:
    """The spool of ``settings``, with its keyring (a key it lacks: exit 78)."""
    from gateway.atrest import open_sealer
    from gateway.spool import open_spool

    spool = open_spool(settings.journal_url, create=False, sealer=open_sealer(settings.keys_file))
    spool.check_keys()
    return spool


def run_purge(args: argparse.Namespace) -> int:
    from gateway.spool import open_journal
    from gateway.spool.retention import record_purges

    settings = _settings(args.config)
    spool = _open(settings)
    now = time.time()
    with progress.bar(unit="msg", desc="purge") as bar:
        purged = spool.purge(settings.retention, now=now, progress=bar.update)
    record_purges(open_journal(settings.journal_url, create=False), purged, now=now)
    content = sum(1 for p in purged if p.what == "content")
    rows = len(purged) - content
    if args.json:
        _print_json("purge", content=content, metadata=rows)
    else:
        print(f"purged the content of {content} message(s) and the rows of {rows}")
    return 0


def run_keys_new(args: argparse.Namespace) -> int:
    from gateway.atrest import Keyring

    if args.out.exists():
        raise UsageError(f"{args.out} exists: a keyring is never overwritten (keys rotate "
                         "adds a key to one)")
    ring = Keyring.generate()
    try:
        ring.save(args.out)
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {args.out} (key {ring.current}, mode 0600): give it as [keys] file or as "
          "the systemd credential passerelle-keys, and keep a copy apart from the backups")
    return 0


def run_keys_rotate(args: argparse.Namespace) -> int:
    from gateway import statedir
    from gateway.atrest import Keyring, Sealer, keyring_path

    settings = _settings(args.config)
    path = args.file or keyring_path(settings.keys_file)
    if path is None:
        raise ConfigError("no keyring to rotate: set [keys] file (or give --file)")
    spool = _open(settings)  # the old keyring opens what is there
    ring = Keyring.load(path).rotated()
    try:
        ring.save(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    print(f"{path}: key {ring.current} added and made current "
          f"({len(ring.keys)} keys in the ring)")
    if args.background or statedir.running_pid(settings.state_dir) is not None:
        # a running daemon must hold the new key before anything is sealed with it: it
        # seals the records itself once it has (now, or after a restart with a credential)
        print(statedir.reload_daemon(settings.state_dir) + "; it seals the stored messages "
              "with the new key once it has read it")
        return 0
    spool.sealer = Sealer(ring)
    with progress.bar(total=spool.unsealed(), unit="rec", desc="reseal") as bar:
        done, failed = spool.reseal(progress=bar.update)
    print(f"sealed {done} record(s) with key {ring.current}"
          + (f"; {failed} did not open (altered): their messages are set aside when worked on"
             if failed else ""))
    return 0


def run_admin(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    spool = _open(settings)
    now = time.time()
    if args.admin == "list":
        return _list(spool, args, _filter(args, now), now)
    if args.admin == "summary":
        return _summary(spool, args, _filter(args, now), now)
    if args.admin == "show":
        return _show(spool, args, now)
    if args.admin in (*BULK_ACTIONS, "drop"):
        from gateway.log import configure
        from gateway.spool import open_journal

        # the action's log lines, as the daemon writes them, on stderr (stdout is the output)
        configure(str(settings.raw.get("logging", {}).get("level", "info")), stream=sys.stderr)
        return _act(spool, args, now, open_journal(settings.journal_url))
    raise ConfigError(f"unknown action {args.admin}")


def run_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run

    return asyncio.run(run(keep_running=args.keep_running, directory=args.dir))
