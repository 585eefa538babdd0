"""Simulated peers for the demo, the tests and operators' rehearsals (real SMTP + TLS).

* :class:`SimTrustOperator` — a trust-space operator's MX: STARTTLS required, client
  certificate verified against the anchors; records the client's subject.
* :class:`SimLegacyHub` — the legacy network's hub MTA: STARTTLS offered.

Both store what they receive and can be told to answer 4xx/5xx, to drop the connection in the
middle of DATA or to hang, for everyone or per recipient, and to fail N times then accept.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.smtp.dataread import PieceDataSMTP


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    client_subject: str | None
    tls_version: str | None
    connection: int = 0  # which TCP connection it came on (1, 2, …)


@dataclass
class Behaviour:
    mode: str = "accept"  # accept | tempfail | permfail | drop | hang
    fail_times: int = 0  # answer 4xx this many times, then accept
    per_recipient: dict[str, str] = field(default_factory=dict)


class SimPeer:
    def __init__(self, *, tls: ssl.SSLContext | None, require_starttls: bool,
                 hostname: str) -> None:
        self.tls = tls
        self.require_starttls = require_starttls
        self.hostname = hostname
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self.sessions = 0
        self._protocols: list[SMTP] = []
        self.max_concurrent = 0
        self._open = 0
        self._arrived = asyncio.Condition()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=host, port=port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_connections(self) -> None:
        """Close every open connection (a peer restarting, an idle timeout)."""
        for proto in self._protocols:
            transport = getattr(proto, "transport", None)
            if isinstance(transport, asyncio.BaseTransport):
                transport.close()
        self._protocols.clear()

    def _protocol(self) -> SMTP:
        self.sessions += 1  # one protocol per TCP connection
        proto = self._smtp()
        self._protocols.append(proto)
        return proto

    def _smtp(self) -> SMTP:
        return PieceDataSMTP(_Handler(self, self.sessions), tls_context=self.tls,
                    require_starttls=self.require_starttls,
                    hostname=self.hostname, decode_data=False, enable_SMTPUTF8=True,
                    timeout=60, data_size_limit=64 * 1024 * 1024)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.received) >= count)
        await asyncio.wait_for(enough(), timeout)
        return self.received

    async def _record(self, item: Received) -> None:
        async with self._arrived:
            self.received.append(item)
            self._arrived.notify_all()

    def message_ids(self) -> list[str]:
        import email

        out = []
        for r in self.received:
            msg = email.message_from_bytes(r.data)
            out.append(str(msg.get("Message-ID", "")))
        return out


class _Handler:
    def __init__(self, peer: SimPeer, connection: int = 0) -> None:
        self.peer = peer
        self.connection = connection

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        mode = self.peer.behaviour.per_recipient.get(address.lower())
        if mode == "permfail":
            return "550 5.1.1 No such user here"
        if mode == "tempfail":
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        b = self.peer.behaviour
        if b.fail_times > 0:
            b.fail_times -= 1
            return "451 4.3.0 Temporary failure, try again"
        if b.mode == "tempfail":
            return "451 4.3.0 Temporary failure, try again"
        if b.mode == "permfail":
            return "554 5.6.0 Message refused"
        if b.mode == "drop":
            transport = server.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            return "421 4.4.2 dropped"
        if b.mode == "hang":
            await asyncio.sleep(3600)
        ssl_info: dict[str, Any] = session.ssl or {}
        obj = ssl_info.get("ssl_object")
        subject = None
        version = None
        if isinstance(obj, ssl.SSLObject):
            version = obj.version()
            cert = obj.getpeercert()
            if cert:
                subject = ",".join(f"{pair[0]}={pair[1]}" for rdn in cert.get("subject", ())
                                   for pair in rdn)
        data = envelope.original_content or b""
        await self.peer._record(Received(envelope.mail_from or "", tuple(envelope.rcpt_tos),
                                         bytes(data), subject, version, self.connection))
        return "250 2.0.0 OK stored"


def _server_context(cert: Path, key: Path, anchors: list[Path] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if anchors:
        for a in anchors:
            ctx.load_verify_locations(cafile=str(a))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class SimTrustOperator(SimPeer):
    def __init__(self, *, cert: Path, key: Path, anchors: list[Path],
                 hostname: str = "mx.hopital-a.mssante.example") -> None:
        super().__init__(tls=_server_context(cert, key, anchors), require_starttls=True,
                         hostname=hostname)


class SimLegacyHub(SimPeer):
    def __init__(self, *, cert: Path, key: Path, hostname: str = "hub.legacy.example") -> None:
        super().__init__(tls=_server_context(cert, key, None), require_starttls=False,
                         hostname=hostname)
