"""A running gateway with simulated peers, for end-to-end tests over real sockets."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from gateway import config
from gateway.crypto.world import USERS, World
from gateway.daemon import Gateway
from gateway.sim import SimLegacyHub, SimTrustOperator
from tests.conftest import legacy_client

ADDR = {u.key: u.legacy_address for u in USERS}
TRUST = {u.key: u.trust_address for u in USERS}


@dataclass
class Harness:
    world: World
    gateway: Gateway
    hub: SimLegacyHub
    op_a: SimTrustOperator
    op_b: SimTrustOperator
    config_path: Path

    @property
    def legacy_port(self) -> int:
        return self.gateway.listeners[0].port

    @property
    def trust_port(self) -> int:
        return self.gateway.listeners[1].port

    def tls(self, client: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.world.ca_cert))
        if client:
            ctx.load_cert_chain(str(self.world.cert(client)), str(self.world.key(client)))
        return ctx

    async def send_legacy(self, user: str, to: str, body: bytes, *, msgid: str,
                          subject: str = "Courrier") -> None:
        m = EmailMessage()
        m["From"] = ADDR[user]
        m["To"] = to
        m["Subject"] = subject
        m["Message-ID"] = msgid
        m.set_content(body, maintype="text", subtype="plain")
        data = legacy_client(self.world, user).seal(m.as_bytes(),
                                                    recipient=self.world.fingerprints["gateway"])
        await aiosmtplib.send(data, sender=ADDR[user], recipients=[to], hostname="127.0.0.1",
                              port=self.legacy_port, start_tls=True, tls_context=self.tls(),
                              timeout=30)

    async def send_trust(self, sender: str, to: str, body: str, *, msgid: str,
                         client: str = "hopital-a-client", extra: dict[str, str] | None = None
                         ) -> None:
        m = EmailMessage()
        m["From"] = sender
        m["To"] = to
        m["Subject"] = "Réponse"
        m["Message-ID"] = msgid
        for k, v in (extra or {}).items():
            m[k] = v
        m.set_content(body)
        await aiosmtplib.send(m.as_bytes(), sender=sender, recipients=[to],
                              hostname="127.0.0.1", port=self.trust_port, start_tls=True,
                              tls_context=self.tls(client), timeout=30)

    async def stop(self) -> None:
        await self.gateway.drain(grace=5)
        for peer in (self.hub, self.op_a, self.op_b):
            await peer.stop()


Overrides = dict[str, dict[str, object]]


async def start(world: World, state: Path, *, retry_initial: float = 0.3,
                overrides: Overrides | None = None,
                clock: Callable[[], float] = time.time) -> Harness:
    """Peers and a started gateway; ``overrides`` replaces keys of the generated tables or
    of the world's own (e.g. ``{"limits": {"max_recipients": 3}}``, ``{"legacy": {"adapter":
    "sop"}}``)."""
    hub = SimLegacyHub(cert=world.cert("gateway-server"), key=world.key("gateway-server"))
    op_a = SimTrustOperator(cert=world.cert("hopital-a-server"),
                            key=world.key("hopital-a-server"), anchors=[world.ca_cert])
    op_b = SimTrustOperator(cert=world.cert("clinique-b-server"),
                            key=world.key("clinique-b-server"), anchors=[world.ca_cert])
    for peer in (hub, op_a, op_b):
        await peer.start()
    tables: Overrides = {
        "ops": {"listen": "127.0.0.1:0"},
        "delivery": {"mx_lookup": False},
        "listen.legacy": {"port": 0},
        "listen.trust": {"port": 0},
        "retry": {"initial": retry_initial, "factor": 1, "max": retry_initial,
                  "delay_warning_after": 3600, "lifetime": 600},
        "workers": {"poll_interval": 0.1, "delivery_timeout": 5, "processes": 0},
        "routes": {".legacy.example": f"127.0.0.1:{hub.port}",
                   "hopital-a.mssante.example": f"127.0.0.1:{op_a.port}",
                   "clinique-b.mssante.example": f"127.0.0.1:{op_b.port}"},
    }
    for name, values in (overrides or {}).items():
        tables.setdefault(name, {}).update(values)
    cfg = world.write_config(state / "passerelle.toml", state, tables)
    gateway = Gateway(config.load(cfg), clock=clock)
    await gateway.start()
    return Harness(world, gateway, hub, op_a, op_b, cfg)


async def until(predicate: object, timeout: float = 20.0) -> None:
    """Wait for a condition the gateway makes true (polled on the event loop, bounded)."""
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)
