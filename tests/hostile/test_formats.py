"""Addresses that would get in and then stall (issue 21, class 6): an internationalised
recipient domain is written in A-labels at RCPT (IDNA 2008), or refused there with a reason —
never accepted and then deferred for its whole lifetime."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.crypto.world import World
from tests.daemon.harness import ADDR, Harness
from tests.hostile.support import letter, run, sealed, transaction

IDN = "médecins-c.mssante.example"  # listed, in U-labels
A_LABEL = "xn--mdecins-c-b4a.mssante.example"


@pytest.mark.parametrize("domain", [IDN, IDN.upper(), "ＭÉDECINS-C.mssante.example"],
                         ids=["u-label", "upper-case", "full-width"])
def test_idn_recipient_is_stored_in_a_labels(world: World, tmp_path: Path,
                                             domain: str) -> None:
    """A listed domain written in U-labels (any case or width UTS #46 folds) is accepted
    and stored as its A-label, the form the next hop and the list know."""
    async def scenario(h: Harness) -> None:
        rcpt = f"dr.z@{domain}"
        raw = sealed(world, "martin", letter(ADDR["martin"], rcpt, b"Bonjour.",
                                             msgid="<idn@x.example>").as_bytes())
        s = await transaction(h, "legacy", ADDR["martin"], [rcpt], raw)
        assert s.rcpt[0].startswith("250"), s.rcpt
        assert s.data.startswith("250"), s.data
        entry, _ = h.gateway.spool.show(s.queue_id)
        assert [r.rcpt for r in entry.recipients] == [f"dr.z@{A_LABEL}"]
    run(world, tmp_path, scenario, check_serving=False)


@pytest.mark.parametrize(("rcpt", "reply"), [
    ("dr.z@m\u200ddecins-c.mssante.example", "553 5.1.3"),  # a joiner IDNA 2008 refuses
    ("dr.z@-médecins-c.mssante.example", "553 5.1.3"),  # a hyphen where none may be
    ("dr.z@\u0301medecins.mssante.example", "553 5.1.3"),  # a label starting with a mark
    ("dr.z@hôpital-a.mssante.example", "550 5.7.1"),  # valid, but not the listed domain
    ("dr.x@h\u043epital-a.mssante.example", "550 5.7.1"),  # a homograph of a listed one
], ids=["joiner", "leading-hyphen", "combining-mark", "unlisted", "homograph"])
def test_idn_recipient_that_cannot_be_served_is_refused_at_rcpt(
        world: World, tmp_path: Path, rcpt: str, reply: str) -> None:
    async def scenario(h: Harness) -> None:
        raw = sealed(world, "martin", letter(ADDR["martin"], "x@x.example", b"Bonjour.",
                                             msgid="<idn-bad@x.example>").as_bytes())
        s = await transaction(h, "legacy", ADDR["martin"], [rcpt], raw)
        assert s.rcpt[0].startswith(reply), s.rcpt
        assert s.data == ""
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)
