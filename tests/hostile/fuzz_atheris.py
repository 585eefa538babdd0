"""Coverage-guided fuzzing (atheris / libFuzzer) of the readers of outside input.

    python -m tests.hostile.fuzz_atheris TARGET [CORPUS_DIR] [libFuzzer options]

TARGET is ``mime``, ``hprim``, ``text`` or ``xdm``.  Each reader may return or raise its typed
error from ``gateway/errors.py``; any other exception is a finding (libFuzzer prints it, saves
the input as ``crash-*`` and exits non-zero).  ``tests/hostile/test_fuzz.py`` runs a short
campaign of each in CI; run it longer by hand, e.g. ``-max_total_time=600``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["gateway"]):
    from gateway.documents import hprim, xdm
    from gateway.errors import DocumentError, MessageFormatError, PasserelleError, TextError
    from gateway.mail import mime
    from gateway.text import normalize


def _mime(data: bytes) -> None:
    try:
        msg = mime.parse(data)
        for name in ("From", "To", "Subject", "Message-ID", "Content-Type"):
            mime.header(msg, name)
        mime.leaves(msg)
    except MessageFormatError:
        pass


def _hprim(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parsed = hprim.parse(text)
        if parsed.documents:
            hprim.write(parsed)
    except DocumentError:
        pass


def _text(data: bytes) -> None:
    hint = (None, "cp1252", "mac_roman", "cp850", "utf-8")[data[0] % 5] if data else None
    with contextlib.suppress(TextError):
        normalize(data[1:], hint=hint)


def _xdm(data: bytes) -> None:
    xdm.verify(data)
    with contextlib.suppress(DocumentError):
        xdm.unpack(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "mime": _mime, "hprim": _hprim, "text": _text, "xdm": _xdm}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.hostile.fuzz_atheris {{{','.join(TARGETS)}}} ...")
    target = TARGETS[sys.argv.pop(1)]
    assert issubclass(MessageFormatError, PasserelleError)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
