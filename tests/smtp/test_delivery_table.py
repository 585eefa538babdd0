"""The one failure table of delivery: every failure → retry or bounce."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from gateway.errors import Fate
from gateway.smtp.delivery import NO_ROUTE, Router, classify
from gateway.spill import SpillError


@pytest.mark.parametrize(("exc", "fate", "status"), [
    (aiosmtplib.SMTPConnectError("refused"), Fate.RETRY, "4.4.1"),
    (ConnectionRefusedError(), Fate.RETRY, "4.4.1"),
    (aiosmtplib.SMTPTimeoutError("slow"), Fate.RETRY, "4.4.2"),
    (TimeoutError(), Fate.RETRY, "4.4.2"),
    (aiosmtplib.SMTPServerDisconnected("gone"), Fate.RETRY, "4.4.2"),
    (ssl.SSLCertVerificationError("untrusted"), Fate.RETRY, "4.7.5"),
    (aiosmtplib.SMTPException("server does not support STARTTLS"), Fate.RETRY, "4.7.4"),
    (aiosmtplib.SMTPResponseException(421, "4.3.2 closing"), Fate.RETRY, "4.3.2"),
    (aiosmtplib.SMTPResponseException(451, "busy"), Fate.RETRY, "4.0.0"),
    (aiosmtplib.SMTPResponseException(550, "5.1.1 no such user"), Fate.BOUNCE, "5.1.1"),
    (aiosmtplib.SMTPResponseException(554, "5.6.0 refused"), Fate.BOUNCE, "5.6.0"),
    (aiosmtplib.SMTPResponseException(-1, "lost"), Fate.RETRY, "4.4.2"),
    (OSError("network unreachable"), Fate.RETRY, "4.4.1"),
    (SpillError("altered"), Fate.RETRY, "4.3.0"),
    (RuntimeError("bug"), Fate.RETRY, "4.3.0"),
])
def test_failure_table(exc: BaseException, fate: Fate, status: str) -> None:
    outcome = classify(exc)
    assert (outcome.fate, outcome.status) == (fate, status)


def test_no_route_bounces() -> None:
    assert NO_ROUTE.fate is Fate.BOUNCE and NO_ROUTE.status == "5.4.4"


def test_routes_exact_suffix_and_default() -> None:
    r = Router({"a.example": "mx.a:2525", ".legacy.example": "hub:25"})
    assert r.route("A.example") is not None and r.route("a.example").port == 2525  # type: ignore[union-attr]
    assert r.route("medical33.legacy.example").host == "hub"  # type: ignore[union-attr]
    assert r.route("gmail.com") is None
    assert Router({"*": "smarthost:587"}).route("x.example").port == 587  # type: ignore[union-attr]


def test_unreadable_spill_file_is_not_called_a_network_error() -> None:
    outcome = classify(SpillError("spill file does not open"))
    assert "network" not in outcome.reason and "spill" in outcome.reason
