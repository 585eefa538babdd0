"""What every hostile case shares: a running gateway, a raw SMTP session, the aftermath checks.

Each case runs against a real in-process gateway (``tests/daemon/harness.py``: real
listeners, real TLS with the test PKI, real gpg, simulated peers on 127.0.0.1) and ends with
:func:`still_serving`: one good message each way must still go through.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from gateway.crypto.world import USERS, World
from gateway.sim import Received, SimPeer
from gateway.spool import State
from tests.conftest import legacy_client
from tests.daemon.harness import ADDR, TRUST, Harness, Overrides, start, until

Scenario = Callable[[Harness], Awaitable[None]]
OP_A = "dr.x@hopital-a.mssante.example"


def run(world: World, tmp_path: Path, scenario: Scenario, *,
        overrides: Overrides | None = None, check_serving: bool = True,
        **gateway: Any) -> None:
    """Start a gateway (``gateway``: more of `start`'s arguments, e.g. its ``clock``), play
    the case, check the gateway still serves, stop."""
    async def main() -> None:
        h = await start(world, tmp_path, overrides=overrides, **gateway)
        try:
            await scenario(h)
            if check_serving:
                await still_serving(h)
        finally:
            await h.stop()
    asyncio.run(main())


_serial = iter(range(1_000_000))


async def still_serving(h: Harness) -> None:
    """One good letter each way is accepted and delivered after the case."""
    for peer in (h.hub, h.op_a, h.op_b):
        peer.behaviour.mode = "accept"
        peer.behaviour.fail_times = 0
        peer.behaviour.per_recipient.clear()
    n = next(_serial)
    to_trust = f"<after-{n}@medical75.legacy.example>"
    to_legacy = f"<after-{n}@hopital-a.mssante.example>"
    await h.send_legacy("martin", OP_A, b"Bonjour, tout va bien.", msgid=to_trust)
    await h.send_trust(OP_A, TRUST["durand"], "Bien reçu.", msgid=to_legacy)
    await arrived(h.op_a, to_trust)
    await arrived(h.hub, None, rcpt=ADDR["durand"])


async def arrived(peer: SimPeer, message_id: str | None, *, rcpt: str | None = None,
                  timeout: float = 20.0) -> Received:
    """Wait for a message (by Message-ID, or by recipient for sealed legacy mail)."""
    def hit() -> Received | None:
        for r in peer.received:
            if message_id is not None and message_id.encode() in r.data:
                return r
            if rcpt is not None and rcpt in r.rcpt_tos:
                return r
        return None
    await until(lambda: hit() is not None, timeout)
    found = hit()
    assert found is not None
    return found


def never_delivered(h: Harness, marker: bytes, *, to: str = "both") -> None:
    """No peer on that side (``legacy``, ``trust`` or ``both``) received anything carrying
    ``marker`` (a Message-ID or a body phrase)."""
    peers = {"legacy": [h.hub], "trust": [h.op_a, h.op_b]}.get(to, [h.hub, h.op_a, h.op_b])
    for peer in peers:
        assert not [r for r in peer.received if marker in r.data], "delivered anyway"


@dataclass
class Session:
    """The replies of one SMTP transaction, step by step ("" where the step was not reached)."""

    mail: str = ""
    rcpt: list[str] = field(default_factory=list)
    data: str = ""

    @property
    def queue_id(self) -> str:
        assert self.data.startswith("250 "), self.data
        return self.data.rsplit(" ", 1)[1]


def _path(address: str) -> bytes:
    return (address if address.startswith("<") else f"<{address}>").encode()


def _reply(code: int, message: str) -> str:
    return f"{code} {message}".strip()


async def transaction(h: Harness, side: str, sender: str, rcpts: list[str], data: bytes, *,
                      client: str | None = None, tls: ssl.SSLContext | None = None,
                      size_option: bool = True) -> Session:
    """MAIL, RCPT…, DATA over STARTTLS; records each reply instead of raising."""
    port = h.legacy_port if side == "legacy" else h.trust_port
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True,
                           tls_context=tls or h.tls(client), timeout=30)
    out = Session()
    await smtp.connect()
    await smtp.ehlo()
    try:
        # raw MAIL and RCPT lines: hostile addresses are sent as written, not tidied
        options = [f"SIZE={len(data)}".encode()] if size_option else []
        r = await smtp.execute_command(b"MAIL", b"FROM:" + _path(sender), *options)
        out.mail = _reply(r.code, r.message)
        if r.code != 250:
            return out
        for rcpt in rcpts:
            r = await smtp.execute_command(b"RCPT", b"TO:" + _path(rcpt))
            out.rcpt.append(_reply(r.code, r.message))
        if not any(r.startswith("250") for r in out.rcpt):
            return out
        try:
            r = await smtp.data(data)
            out.data = _reply(r.code, r.message)
        except aiosmtplib.SMTPResponseException as exc:
            out.data = _reply(exc.code, exc.message)
    finally:
        try:
            await smtp.quit()
        except aiosmtplib.SMTPException:
            smtp.close()
    return out


def letter(sender: str, to: str, body: bytes | str, *, msgid: str,
           subject: str = "Courrier") -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = msgid
    if isinstance(body, bytes):
        m.set_content(body, maintype="text", subtype="plain")
    else:
        m.set_content(body)
    return m


def sealed(world: World, user: str, message: bytes) -> bytes:
    """What the user's own legacy software sends: signed by them, encrypted to the gateway."""
    return legacy_client(world, user).seal(message, recipient=world.fingerprints["gateway"])


def gpg(world: World, user: str, *args: str, data: bytes) -> bytes:
    """Run the user's own gpg (for messages legacy software would never build)."""
    return subprocess.run(
        ["gpg", "--homedir", world.gnupg_users[user], "--batch", "--trust-model", "always",
         *args], input=data, capture_output=True, check=True).stdout


def inline(sender: str, to: str, armored: bytes, *, msgid: str) -> bytes:
    """A legacy message whose body is one inline-armoured OpenPGP block."""
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = "Courrier"
    m["Message-ID"] = msgid
    m.set_content(armored, maintype="text", subtype="plain", cte="8bit")
    return m.as_bytes(policy=email.policy.SMTP)


def states(h: Harness, queue_id: str) -> list[State]:
    entry, _ = h.gateway.spool.show(queue_id)
    return [r.state for r in entry.recipients]


def reasons(h: Harness, queue_id: str) -> list[str]:
    entry, _ = h.gateway.spool.show(queue_id)
    return [r.reason for r in entry.recipients]


async def settled(h: Harness, queue_id: str, state: State, timeout: float = 20.0) -> None:
    await until(lambda: states(h, queue_id) and all(s is state for s in states(h, queue_id)),
                timeout)


def opened_notice(h: Harness, user: str, r: Received) -> str:
    """The text of a notice the gateway sealed for a legacy user."""
    from gateway.mail import mime

    opened = legacy_client(h.world, user).open(r.data,
                                               expected_signer=h.world.fingerprints["gateway"])
    charset = next(u.charset for u in USERS if u.key == user)  # notices use the user's own
    return mime.leaves(mime.parse(opened.message))[0].data.decode(charset)


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
