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


class _Peer:
    """A plain SMTP peer on 127.0.0.1 (no TLS) that logs every command it reads; on its
    first connection it answers the second MAIL with ``421`` and hangs up (its idle timeout
    running out just as the next message comes)."""

    def __init__(self) -> None:
        self.commands: list[tuple[int, str]] = []
        self.delivered: list[int] = []
        self.connections = 0
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self.session, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn, mails = self.connections, 0
        writer.write(b"220 peer.example ESMTP\r\n")
        while line := await reader.readline():
            verb = line.decode().split(" ")[0].split(":")[0].strip().upper()
            self.commands.append((conn, verb))
            if verb == "EHLO":
                writer.write(b"250-peer.example\r\n250 8BITMIME\r\n")
            elif verb == "MAIL":
                mails += 1
                if conn == 1 and mails == 2:
                    writer.write(b"421 4.4.2 idle timeout, closing\r\n")
                    await writer.drain()
                    writer.close()
                    return
                writer.write(b"250 2.1.0 ok\r\n")
            elif verb == "DATA":
                writer.write(b"354 go on\r\n")
                while (await reader.readline()) != b".\r\n":
                    pass
                self.delivered.append(conn)
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                writer.close()
                return
            else:
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()


def test_a_busy_destination_goes_straight_to_mail_and_a_421_there_means_a_new_session() -> None:
    async def main() -> None:
        peer = _Peer()
        server = await peer.start()
        route = Route("127.0.0.1", peer.port, require_tls=False)
        cache = SessionCache(idle=30, check_after=30)

        async def send(n: int) -> str:
            got = await deliver(message(n), mail_from="a@legacy.mssante.example",
                                rcpts=["dr.x@hopital-a.mssante.example"], route=route,
                                tls=None, timeout=10, helo="gw.example", cache=cache)
            return got["dr.x@hopital-a.mssante.example"].reason

        try:
            assert (await send(1)).startswith("250 ")
            # reused at once: no NOOP; the peer's 421 to MAIL is not the message's fate,
            # the message goes on a new session at once
            assert (await send(2)).startswith("250 ")
            assert peer.delivered == [1, 2]
            assert ("NOOP" not in {verb for _, verb in peer.commands})
            # (that one-off session is closed after); the next is kept, and when it has
            # been idle longer than check_after it is asked first
            assert (await send(3)).startswith("250 ")
            cache.check_after = 0
            await asyncio.sleep(0.01)
            assert (await send(4)).startswith("250 ")
            assert peer.delivered == [1, 2, 3, 3]
            assert (3, "NOOP") in peer.commands
        finally:
            cache.close_all()
            await asyncio.sleep(0.05)  # the goodbyes
            server.close()
    asyncio.run(main())
