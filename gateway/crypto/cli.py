"""`passerelle pki demo` and `passerelle whitelist import`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway import config
from gateway.errors import BadInputError, ConfigError, TrustListError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    pki = sub.add_parser("pki", help="test PKI and keys", description="Test PKI and keys.")
    pki_sub = pki.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    demo = pki_sub.add_parser(
        "demo", help="build a complete test world (CA, CRL, certificates, list, OpenPGP keys)",
        description=(
            "Build in DIR a complete, self-consistent test world: a national-style CA with its "
            "CRL; the gateway's server, client and S/MIME signing certificates; two other "
            "operators' and an IDN operator's; revoked, expired, foreign-CA and unlisted "
            "certificates for failure tests; a signed list of domains; OpenPGP keys for the "
            "gateway and legacy users (GnuPG homes); the address book and a passerelle.toml. "
            "For tests, the demo and rehearsals only — never production."))
    demo.add_argument("--out", required=True, type=Path, help="an empty or new directory")
    demo.add_argument("--json", action="store_true", help="print world.json")
    demo.set_defaults(handler=run_demo)

    wl = sub.add_parser("whitelist", help="the list of trust-space domains",
                        description="The list of trust-space domains (liste blanche).")
    wl_sub = wl.add_subparsers(dest="whitelist_command", metavar="ACTION", required=True)
    imp = wl_sub.add_parser(
        "import", help="verify and install a new list of domains",
        description=(
            "Verify FILE (XML of the national list: its enveloped signature, made by the "
            "configured publisher and chaining to the trust anchors; only what the signature "
            "covers is read) and install it atomically as the list in force, then tell the "
            "running daemon. A list older than the newest installed, unsigned, badly signed, "
            "signed by anyone else or malformed is refused (exit 65) and the previous list "
            "stays in force."))
    imp.add_argument("file", type=Path)
    imp.add_argument("--config", type=Path, help="passerelle.toml (gives the store and anchors)")
    imp.add_argument("--store", type=Path, help="where the list in force lives")
    imp.add_argument("--anchors", type=Path, nargs="*", default=None, help="trust anchors (PEM)")
    imp.add_argument("--signer-cert", type=Path, metavar="PEM",
                     help="the publisher's certificate (default: trust.list_signer_cert)")
    imp.add_argument("--allow-unsigned", action="store_true",
                     help="read a list without signature (tests only; never in production)")
    imp.set_defaults(handler=run_whitelist_import)


def run_demo(args: argparse.Namespace) -> int:
    from gateway.crypto.world import build_world

    world = build_world(args.out)
    if args.json:
        print(json.dumps(world.to_json(), indent=2))
    else:
        print(f"test world written to {world.root} (configuration: {world.config})")
    return 0


def run_whitelist_import(args: argparse.Namespace) -> int:
    from gateway.crypto.domainlist import DomainListStore, Publisher

    found = config.find(args.config)
    settings = config.load(found) if found else None
    store_path = args.store or (settings.trust.domain_list if settings else None)
    if store_path is None:
        raise ConfigError("no list store: give --store or --config with trust.domain_list")
    anchors = args.anchors if args.anchors is not None else (
        list(settings.trust.anchors) if settings else [])
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {args.file}: {exc.strerror}") from None
    t = settings.trust if settings else None
    publisher = Publisher(args.signer_cert) if args.signer_cert else Publisher(
        t.list_signer_cert, t.list_signer_subject, t.list_signer_issuer) if t else Publisher()
    store = DomainListStore(store_path, anchors=anchors, publisher=publisher,
                            require_signature=not (args.allow_unsigned
                                                   or (t is not None and t.accept_unsigned_list)))
    try:
        installed = store.install(data)
    except TrustListError as exc:
        raise TrustListError(f"{args.file}: {exc}") from None
    print(f"installed: {len(installed.entries)} domains, generated "
          f"{installed.generated_at:%Y-%m-%d %H:%M}"
          + (f", signed by {installed.signed_by}" if installed.signed_by else ", unsigned"),
          file=sys.stdout)
    if settings is not None and store_path == settings.trust.domain_list:
        from gateway.statedir import reload_daemon

        print(reload_daemon(settings.state_dir))
    return 0
