"""The `passerelle` command: parses arguments and hands each subcommand to its module.

Each area of the code base registers its own subcommands (a ``register(subparsers)``
function in its ``cli`` module); this module only assembles them and turns errors into one
line on stderr and an exit code (see ``gateway.errors``).  No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gateway import __version__
from gateway.errors import EX_SOFTWARE, PasserelleError, os_error

Handler = Callable[[argparse.Namespace], int]

# Modules that contribute subcommands, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.text.cli",
    "gateway.documents.cli",
    "gateway.crypto.cli",
    "gateway.translate.cli",
    "gateway.spool.cli",
    "gateway.directory.cli",
    "gateway.ops.cli",
)

DESCRIPTION = """\
passerelle bridges a legacy encrypted health-mail network (Apicrypt-style) and the MSSanté
trust space: it decrypts and verifies legacy mail, repairs garbled text, translates HPRIM Net
to CDA R2 CR-BIO in IHE XDM and back, re-signs with a traceability record, and forwards over
mutually authenticated TLS.

exit codes: 0 ok, 2 usage, 65 bad input, 70 internal error, 71 system error (a port in
use), 73 cannot create a file, 75 transient (or already running), 77 permission denied,
78 configuration
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"passerelle: usage: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="passerelle",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"passerelle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except PasserelleError as exc:
        print(f"passerelle: {args.command}: {exc or exc.kind}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("passerelle: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the system said no: name the port or path, a sysexits code
        err = os_error(exc)
        print(f"passerelle: {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as exc:  # last line of defence: one clear line, never a traceback
        print(
            f"passerelle: {args.command}: internal error ({type(exc).__name__}); "
            "please report it with the command that caused it",
            file=sys.stderr,
        )
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
