"""Open-relay attempts on both listeners, unlisted domains, unmapped recipients."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    letter,
    never_delivered,
    run,
    sealed,
    settled,
    still_serving,
    transaction,
)

GW = "legacy.mssante.example"


@pytest.mark.parametrize(("sender", "rcpt", "step", "reply"), [
    # an Internet host tries the legacy listener as a relay
    ("stranger@gmail.example", OP_A, "mail", "550 5.7.1"),
    # a legacy user writes outside the trust space, or back into the legacy network
    (ADDR["dupont"], "someone@gmail.example", "rcpt", "550 5.7.1"),
    (ADDR["dupont"], ADDR["martin"], "rcpt", "554 5.7.1"),
    # relay tricks on the gateway's own domain: percent hack, quoted local part, source route
    (ADDR["dupont"], f"someone%gmail.example@{GW}", "rcpt", "550 5.1.1"),
    (ADDR["dupont"], f'"someone@gmail.example"@{GW}', "rcpt", "550 5.1.1"),
    (ADDR["dupont"], f"<@{GW}:someone@gmail.example>", "rcpt", "550 5.7.1"),
], ids=["stranger-sender", "unlisted-domain", "back-to-legacy", "percent-hack",
        "quoted-local-part", "source-route"])
def test_legacy_listener_is_no_open_relay(world: World, tmp_path: Path, sender: str, rcpt: str,
                                          step: str, reply: str) -> None:
    async def scenario(h: Harness) -> None:
        raw = sealed(world, "dupont", letter(ADDR["dupont"], rcpt, b"relay me",
                                             msgid="<relay@x.example>").as_bytes())
        s = await transaction(h, "legacy", sender, [rcpt], raw)
        got = s.mail if step == "mail" else s.rcpt[0]
        assert got.startswith(reply), got
        assert s.data == ""  # never reached DATA
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<relay@x.example>")
    run(world, tmp_path, scenario)


def test_a_null_sender_on_the_legacy_side_carries_only_reports_on_our_messages(
        world: World, tmp_path: Path) -> None:
    """The hub's own delivery reports come with a null sender: anything else sent that way
    (a message, or a report on a message this gateway never carried) is refused at DATA."""
    async def scenario(h: Harness) -> None:
        raw = sealed(world, "dupont", letter(ADDR["dupont"], OP_A, b"relay me",
                                             msgid="<relay@x.example>").as_bytes())
        s = await transaction(h, "legacy", "<>", [OP_A], raw)
        assert s.mail.startswith("250") and s.data.startswith("554 5.7.1"), s
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<relay@x.example>")
    run(world, tmp_path, scenario)


@pytest.mark.parametrize(("sender", "rcpt", "step", "reply"), [
    # an operator tries to relay through us to another operator or outside
    (OP_A, "dr.y@clinique-b.mssante.example", "rcpt", "554 5.7.1"),
    (OP_A, "someone@gmail.example", "rcpt", "554 5.7.1"),
    (OP_A, f"someone%gmail.example@{GW}", "rcpt", "550 5.1.1"),
    # unlisted sender domain, even with a good certificate
    ("x@gmail.example", TRUST["dupont"], "mail", "550 5.7.1"),
    # unmapped recipient on our domain
    (OP_A, f"nobody@{GW}", "rcpt", "550 5.1.1"),
], ids=["to-other-operator", "to-internet", "percent-hack", "unlisted-sender-domain",
        "unmapped-recipient"])
def test_trust_listener_is_no_open_relay(world: World, tmp_path: Path, sender: str, rcpt: str,
                                         step: str, reply: str) -> None:
    async def scenario(h: Harness) -> None:
        raw = letter(sender, rcpt, "relay me", msgid="<relay@y.example>").as_bytes()
        s = await transaction(h, "trust", sender, [rcpt], raw, client="hopital-a-client")
        got = s.mail if step == "mail" else s.rcpt[0]
        assert got.startswith(reply), got
        assert s.data == ""
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<relay@y.example>")
    run(world, tmp_path, scenario)


def test_unmapped_legacy_recipient_among_good_ones_is_refused_alone(world: World,
                                                                    tmp_path: Path) -> None:
    """One recipient refused (550 5.1.1), the others accepted and delivered, once each."""
    async def scenario(h: Harness) -> None:
        rcpts = [TRUST["dupont"], f"nobody@{GW}", TRUST["martin"]]
        raw = letter(OP_A, ", ".join(rcpts), "Résultats", msgid="<mixed@y.example>").as_bytes()
        s = await transaction(h, "trust", OP_A, rcpts, raw, client="hopital-a-client")
        assert [r[:9] for r in s.rcpt] == ["250 2.1.5", "550 5.1.1", "250 2.1.5"]
        assert s.data.startswith("250 2.0.0")
        await arrived(h.hub, None, rcpt=ADDR["dupont"])
        await arrived(h.hub, None, rcpt=ADDR["martin"])
        await settled(h, s.queue_id, State.DELIVERED)
        assert sorted(r for m in h.hub.received for r in m.rcpt_tos) == sorted(
            [ADDR["dupont"], ADDR["martin"]])
    run(world, tmp_path, scenario)


@pytest.mark.parametrize(("sender", "rcpt", "step"), [
    ("<", OP_A, "mail"), (ADDR["dupont"], "<", "rcpt"), ("<@[ ", OP_A, "mail"),
    (ADDR["dupont"], "<.b@[\\[<", "rcpt"),
], ids=["mail-lone-bracket", "rcpt-lone-bracket", "mail-unbound-local", "rcpt-attribute"])
def test_envelope_path_the_address_parser_chokes_on_is_553(world: World, tmp_path: Path,
                                                            sender: str, rcpt: str,
                                                            step: str) -> None:
    """A path that makes the email package's address parser fail (``MAIL FROM:<`` raises
    IndexError, others UnboundLocalError or AttributeError): a plain 553 5.1.3, as for any
    malformed address — not aiosmtpd's "500 Error: (IndexError) …" with a traceback logged."""
    async def scenario(h: Harness) -> None:
        raw = letter(ADDR["dupont"], OP_A, "x", msgid="<path@y.example>").as_bytes()
        s = await transaction(h, "legacy", sender, [rcpt], raw, size_option=False)
        got = s.mail if step == "mail" else s.rcpt[0]
        assert got.startswith("553 5.1.3"), got
        assert h.gateway.spool.counts() == {}
        await still_serving(h)
    run(world, tmp_path, scenario)
