"""`passerelle config check --config FILE [--json]`: one line per problem, exit 78 on errors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway import config
from gateway.errors import EX_CONFIG, EX_OK
from gateway.ops.configcheck import check, legacy_adapter


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "config",
        help="check a configuration file and everything it names",
        description="Work with passerelle's configuration file.",
    )
    inner = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = inner.add_parser(
        "check",
        help="validate the configuration: files, keys, certificates, lists, mappings",
        description=(
            "Load FILE and check everything it names: files readable; certificates parse, are "
            "valid today (a warning under 30 days) and match their private keys; anchors and "
            "CRLs parse; the list of domains parses and is fresh; the address book and mapping "
            "tables load; gnupg_home exists (with legacy.adapter = \"sop\": the sop command "
            "runs and the gateway's key has no passphrase; with \"rnp\" or \"auto\", the "
            "default: librnp loads and can use the gateway's key, else \"auto\" warns that "
            "gpg is used). The file is validated exactly as `serve` validates it: a wrong value "
            "or an unknown key (a typo) is an error, with a \"did you mean\" hint. Prints one "
            "line per problem (ERROR or WARNING), then which legacy adapter is used. Exit 0 "
            "when there is no ERROR, 78 otherwise."
        ),
    )
    c.add_argument("--config", type=Path, metavar="FILE",
                   help="the TOML configuration file (default: $PASSERELLE_CONFIG, else "
                        "./passerelle.toml, else /etc/passerelle/passerelle.toml)")
    c.add_argument(
        "--json", action="store_true",
        help='print {"ok": bool, "problems": [{"level", "key", "message"}], '
             '"legacy_adapter": the adapter used ("" when not ok)}',
    )  # fmt: skip
    c.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    args.config = config.locate(args.config)
    problems = check(args.config)
    ok = not any(p.level == "ERROR" for p in problems)
    adapter = legacy_adapter(args.config) if ok else ""
    if args.json:
        doc = {"ok": ok, "problems": [p.to_json() for p in problems],
               "legacy_adapter": adapter}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    else:
        for p in problems:
            print(p)
        if ok:
            print(f"{args.config}: ok" + (f" ({len(problems)} warning(s))" if problems else "")
                  + f"; legacy adapter: {adapter}")
    return EX_OK if ok else EX_CONFIG
