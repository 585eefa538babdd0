"""The one table mapping every error to its exit code, SMTP reply and fate."""

from __future__ import annotations

import re

import pytest

from gateway import errors
from gateway.errors import Fate, PasserelleError, all_error_classes


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_consistent_reply(cls: type[PasserelleError]) -> None:
    err = cls("something went wrong")
    reply = err.smtp_reply()
    assert re.fullmatch(r"[45]\d\d [45]\.\d{1,3}\.\d{1,3} .+", reply)
    # the enhanced code's class agrees with the reply's class (RFC 3463)
    assert reply[0] == cls.enhanced[0]
    # transient errors are retried, never bounced (lesson 1 from peers)
    if err.transient:
        assert cls.fate is Fate.RETRY
        assert cls.exit_code in (errors.EX_TEMPFAIL, errors.EX_CONFIG, errors.EX_SOFTWARE,
                                 errors.EX_USAGE)
    else:
        assert cls.fate in (Fate.BOUNCE, Fate.QUARANTINE)
        assert cls.exit_code == errors.EX_DATAERR
    assert re.fullmatch(r"[a-z_]+", cls.kind)


def test_kinds_are_unique() -> None:
    kinds = [c.kind for c in all_error_classes()]
    assert len(kinds) == len(set(kinds))


def test_reply_never_spans_lines() -> None:
    err = errors.BadSignature("line one\r\nRCPT TO:<x@y>")
    assert "\n" not in err.smtp_reply() and "\r" not in err.smtp_reply()


def test_transient_internal_failures_are_4xx() -> None:
    for cls in (errors.SpoolUnavailable, errors.SpoolFull, errors.CryptoToolError,
                errors.ConfigError, errors.PeerTemporaryError):
        assert cls("x").smtp_reply().startswith("4")


def test_security_doc_lists_every_error() -> None:
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "security.md").read_text("utf-8")
    for cls in all_error_classes():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{cls.kind}` |")),
                   None)
        assert row is not None, f"docs/security.md misses {cls.kind}"
        if cls is not errors.UsageError:
            assert f"{cls.smtp_code} {cls.enhanced}" in row and cls.fate.value in row
