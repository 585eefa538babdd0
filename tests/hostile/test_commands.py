"""Arbitrary SMTP command lines on both listeners: every one gets a reply of the gateway's own
(or aiosmtpd's protocol replies), never aiosmtpd's "500 Error: (SomeException) …" — which
means an exception escaped a handler, with its text echoed and a traceback logged."""

from __future__ import annotations

import random
from pathlib import Path

import aiosmtplib

from gateway.crypto.world import World
from tests.daemon.harness import ADDR, Harness
from tests.hostile.support import OP_A, run, still_serving, transaction

ATOMS = ["<", ">", "@", ".", ":", "[", "]", "(", ")", '"', "\\", " ", "=", ",", ";", "a", "Z",
         "é", "SIZE=", "BODY=8BITMIME", "SMTPUTF8", "1", "-1", "99999999999999999999",
         "NOTIFY=", "RET=", "ORCPT=rfc822;", "AUTH=<>", "xtext+2B", "=?utf-8?q?x?="]
VERBS = ["MAIL FROM:", "RCPT TO:", "EHLO ", "HELO ", "VRFY ", "EXPN ", "HELP ", "NOOP ",
         "RSET ", "AUTH ", "BDAT ", "XYZ "]


async def _session(h: Harness, side: str, rnd: random.Random, errors: list[str]) -> None:
    port = h.legacy_port if side == "legacy" else h.trust_port
    client = None if side == "legacy" else "hopital-a-client"
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True,
                           tls_context=h.tls(client), timeout=10)
    await smtp.connect()
    await smtp.ehlo()
    try:
        if rnd.random() < 0.5:  # some sessions past MAIL, to reach RCPT's checks
            sender = ADDR["dupont"] if side == "legacy" else OP_A
            await smtp.execute_command(b"MAIL", b"FROM:<" + sender.encode() + b">")
        for _ in range(12):
            line = rnd.choice(VERBS) + "".join(
                rnd.choice(ATOMS) for _ in range(rnd.randint(0, 7)))
            verb, _, arg = line.partition(" ")
            if line.startswith(("MAIL", "RCPT")):
                verb, arg = line[:4], line[5:]
            args = [verb.encode()] + ([arg.encode("utf-8")] if arg else [])
            reply = await smtp.execute_command(*args)
            if reply.code == 500 and reply.message.startswith("Error: ("):
                errors.append(f"{side}: {line!r} -> {reply.code} {reply.message}")
    except aiosmtplib.SMTPServerDisconnected:
        pass  # "421 Too many unrecognized commands": aiosmtpd's own limit
    finally:
        smtp.close()


def test_no_command_line_escapes_the_handlers(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        rnd = random.Random(20261130)
        errors: list[str] = []
        for side in ("legacy", "trust"):
            for _ in range(60):
                await _session(h, side, rnd, errors)
        assert errors == []
        await still_serving(h)
    run(world, tmp_path, scenario)


def test_a_trust_sender_path_without_an_address_is_553(world: World, tmp_path: Path) -> None:
    """``MAIL FROM:a`` — a path aiosmtpd parses, but no e-mail address: 553 5.1.7 (bad sender
    address syntax), where the domain check used to let the error escape as a 500."""
    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", "a", [ADDR["dupont"]], b"x", client="hopital-a-client",
                              size_option=False)
        assert s.mail.startswith("553 5.1.7"), s.mail
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)
