"""The delivery stage against simulated peers over real SMTP with TLS: each recipient ends
where the peer's answer puts it (delivered, deferred then warned then bounced, bounced), the
sender hears of it, and a send that may have reached the peer before is flagged."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.crypto.pki import client_tls_context
from gateway.sim import SimLegacyHub, SimTrustOperator
from gateway.smtp.delivery import Router
from gateway.spool import Direction, State
from gateway.stages.dispatch import Dispatch
from gateway.translate.factory import trust_anchors
from tests.stages.conftest import (
    ADDR,
    LIFETIME,
    TRUST,
    Parts,
    as_time_passes,
    drive_stage,
    run,
)

DR_X = "dr.x@hopital-a.mssante.example"
DR_Z = "dr.z@hopital-a.mssante.example"
BODY = b"Subject: Resultats\r\nMessage-ID: <d-1@x>\r\n\r\nSigned and sealed already.\r\n"


@dataclass
class Peers:
    hub: SimLegacyHub
    op_a: SimTrustOperator
    stage: Dispatch


@asynccontextmanager
async def peers(p: Parts) -> AsyncIterator[Peers]:
    w = p.world
    hub = SimLegacyHub(cert=w.cert("gateway-server"), key=w.key("gateway-server"))
    op_a = SimTrustOperator(cert=w.cert("hopital-a-server"), key=w.key("hopital-a-server"),
                            anchors=[w.ca_cert])
    for peer in (hub, op_a):
        await peer.start()
    t = p.settings.trust
    legacy_tls = ssl.create_default_context()
    legacy_tls.check_hostname = False
    legacy_tls.verify_mode = ssl.CERT_NONE
    stage = Dispatch(
        spool=p.spool, db=p.db, clock=p.clock, book=lambda: p.translator.book,
        metrics=p.metrics, notices=p.notices, settings=p.settings.daemon, name="test",
        spill=p.settings.state_dir / "spill",
        router=Router({".legacy.example": f"127.0.0.1:{hub.port}",
                       "hopital-a.mssante.example": f"127.0.0.1:{op_a.port}"},
                      mx_lookup=False),
        trust_tls=client_tls_context(t.client_cert, t.client_key,
                                     anchors=trust_anchors(p.settings), ciphers=t.ciphers),
        legacy_tls=legacy_tls, wake_deliver=p.wake_deliver, inflight=p.inflight)
    try:
        yield Peers(hub, op_a, stage)
    finally:
        stage.close()
        for peer in (hub, op_a):
            await peer.stop()


async def deliver(s: Peers, p: Parts, done: Callable[[], bool]) -> None:
    stage = s.stage
    stage.stopping = False
    await drive_stage(stage.loop, stage.stop, p.inflight, done)


def states(p: Parts, direction: Direction) -> dict[str, tuple[str, str]]:
    """rcpt -> (state, reason) of the messages of ``direction``."""
    return {r.rcpt: (str(r.state), r.reason) for e in p.spool.list()
            if e.direction == str(direction) for r in e.recipients}


async def translated(p: Parts, direction: Direction, mail_from: str, rcpts: tuple[str, ...],
                     data: bytes = BODY) -> str:
    """A message as the translation stage leaves it: ready for delivery."""
    queue_id, _ = p.spool.accept(direction=direction, mail_from=mail_from, rcpts=rcpts,
                                 data=data, message_id="", now=p.clock(),
                                 state=State.TRANSLATED)
    return queue_id


def test_delivered_to_the_trust_operator_over_mutual_tls(parts: Parts) -> None:
    async def main() -> None:
        async with peers(parts) as s:
            await translated(parts, Direction.TO_TRUST, ADDR["dupont"], (DR_X,))
            await deliver(s, parts, lambda: parts.counts() == {"delivered": 1})
            [got] = s.op_a.received
            assert got.rcpt_tos == (DR_X,) and got.data == BODY
            assert got.client_subject is not None  # our client certificate, verified
            assert s.stage.peer_status == {f"127.0.0.1:{s.op_a.port}": True}
            assert parts.metric("passerelle_messages_total", event="delivered",
                                direction="to_trust", reason="ok") == 1
    run(main())


def test_a_legacy_recipient_gets_it_at_the_hub_and_the_sender_an_mdn_when_asked(
        parts: Parts) -> None:
    asked = b"Disposition-Notification-To: " + DR_X.encode() + b"\r\n" + BODY

    async def main() -> None:
        async with peers(parts) as s:
            await translated(parts, Direction.TO_LEGACY, DR_X, (TRUST["dupont"],), asked)
            await deliver(s, parts, lambda: states(parts, Direction.TO_LEGACY) == {
                TRUST["dupont"]: ("delivered", "")})
            [got] = s.hub.received
            assert got.rcpt_tos == (ADDR["dupont"],)  # the legacy address behind the alias
            [(rcpt, mdn)] = parts.notices_queued()
            assert rcpt == DR_X and b"disposition-notification" in mdn
    run(main())


def test_a_refused_recipient_is_bounced_the_others_delivered_the_sender_told(
        parts: Parts) -> None:
    async def main() -> None:
        async with peers(parts) as s:
            s.op_a.behaviour.per_recipient[DR_Z] = "permfail"
            await translated(parts, Direction.TO_TRUST, ADDR["dupont"], (DR_X, DR_Z))
            await deliver(s, parts, lambda: parts.counts().get("bounced") == 1)
            got = states(parts, Direction.TO_TRUST)
            assert got[DR_X] == ("delivered", "")
            assert got[DR_Z][0] == "bounced" and "No such user" in got[DR_Z][1]
            [(rcpt, _)] = parts.notices_queued()  # a sealed letter to Dr Dupont
            assert rcpt == ADDR["dupont"]
    run(main())


def test_a_recipient_without_a_route_is_bounced(parts: Parts) -> None:
    async def main() -> None:
        async with peers(parts) as s:
            await translated(parts, Direction.TO_LEGACY, DR_X, ("someone@unrouted.example",))
            await deliver(s, parts, lambda: parts.counts().get("bounced") == 1)
            [(rcpt, dsn)] = parts.notices_queued()
            assert rcpt == DR_X and b"someone@unrouted.example" in dsn
            # nothing was sent anywhere but the DSN itself (which the loop may deliver)
            assert s.hub.received == []
            assert all(r.rcpt_tos == (DR_X,) for r in s.op_a.received)
    run(main())


def test_a_peer_answering_4xx_defers_then_a_delay_notice_then_a_bounce(parts: Parts) -> None:
    delay = parts.spool.policy.delay_warning_after

    async def main() -> None:
        async with peers(parts) as s:
            s.hub.behaviour.mode = "tempfail"
            await translated(parts, Direction.TO_LEGACY, DR_X, (TRUST["dupont"],))
            await deliver(s, parts, lambda: parts.counts().get("deferred") == 1)
            assert "4.3.0" in states(parts, Direction.TO_LEGACY)[TRUST["dupont"]][1]
            assert parts.notices_queued() == []
            assert parts.metric("passerelle_retries_total", direction="to_legacy") == 1
            # still failing after delay_warning_after: warned once
            await deliver(s, parts, as_time_passes(parts, lambda: len(parts.notices_queued())
                                                   == 1))
            assert parts.clock.now >= delay
            [(rcpt, warning)] = parts.notices_queued()
            assert rcpt == DR_X and b"Action: delayed" in warning
            # the lifetime is over: bounced, and told so
            await deliver(s, parts, as_time_passes(parts, lambda: parts.counts().get(
                "bounced") == 1))
            assert parts.clock.now >= LIFETIME
            assert states(parts, Direction.TO_LEGACY)[TRUST["dupont"]][1].startswith(
                "lifetime over")
            notices = parts.notices_queued()
            assert len(notices) == 2 and b"Status: 4.4.7" in notices[1][1]
    run(main())


def test_a_send_cut_off_after_the_peer_may_have_taken_it_is_flagged(parts: Parts) -> None:
    async def main() -> None:
        async with peers(parts) as s:
            queue_id = await translated(parts, Direction.TO_TRUST, ADDR["dupont"], (DR_X,))
            # a delivery that died between the peer's answer and our record of it
            assert parts.spool.lease_deliver("dead", now=parts.clock(), duration=10)
            parts.clock.now += 11
            await deliver(s, parts, lambda: parts.counts() == {"delivered": 1})
            [got] = s.op_a.received
            assert got.data.startswith(b"X-Passerelle-Possible-Duplicate: " +
                                       queue_id.encode() + b"\r\n")
            assert got.data.endswith(BODY)
            assert parts.metric("passerelle_messages_total", event="delivered",
                                direction="to_trust", reason="in_doubt") == 1
    run(main())
