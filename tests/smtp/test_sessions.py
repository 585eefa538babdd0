"""Delivery reuses an idle SMTP session per destination, and never trusts a dead one."""

from __future__ import annotations

import asyncio

from gateway.crypto.pki import TrustAnchors, client_tls_context
from gateway.crypto.world import World
from gateway.sim import SimTrustOperator
from gateway.smtp.delivery import DELIVERED, Route, SessionCache, deliver


def message(n: int) -> bytes:
    return (f"From: a@legacy.mssante.example\r\nTo: dr.x@hopital-a.mssante.example\r\n"
            f"Message-ID: <s{n}@x>\r\nSubject: test\r\n\r\nbody {n}\r\n").encode()


def test_sessions_are_reused_then_replaced_when_the_peer_dropped_them(world: World) -> None:
    async def main() -> None:
        op = SimTrustOperator(cert=world.cert("hopital-a-server"),
                              key=world.key("hopital-a-server"), anchors=[world.ca_cert])
        await op.start()
        tls = client_tls_context(world.cert("gateway-client"), world.key("gateway-client"),
                                 anchors=TrustAnchors.load([world.ca_cert], []))
        route = Route("127.0.0.1", op.port)
        cache = SessionCache(idle=30)

        async def send(n: int) -> None:
            got = await deliver(message(n), mail_from="a@legacy.mssante.example",
                                rcpts=["dr.x@hopital-a.mssante.example"], route=route,
                                tls=tls, timeout=10, helo="gw.example", cache=cache)
            assert list(got) == ["dr.x@hopital-a.mssante.example"]
            outcome = got["dr.x@hopital-a.mssante.example"]
            # delivered, with the peer's own reply to DATA kept (for the log and the trace)
            assert outcome.fate is None and outcome.reason.startswith("250 ")
            assert outcome != DELIVERED

        try:
            for n in range(5):
                await send(n)
            assert [r.connection for r in op.received] == [1] * 5  # one TLS handshake
            # the peer closes the idle session: it is not reused, the message goes on a new one
            op.drop_connections()
            await asyncio.sleep(0.1)
            await send(5)
            assert len(op.received) == 6 and op.received[-1].connection == op.sessions
            # a session idle too long is closed, not reused
            cache.idle = 0
            await asyncio.sleep(0.01)
            await send(6)
            assert op.received[-1].connection == op.sessions
            assert len({r.connection for r in op.received}) == op.sessions
        finally:
            cache.close_all()
            await op.stop()
    asyncio.run(main())
