"""Large messages end to end, both ways, translated in a worker process: every stage hands
them on as files of the spill directory (gateway/spill.py), and the far side gets every
byte of the attachment; nothing is left in the spill directory afterwards."""

from __future__ import annotations

import asyncio
import os
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from gateway.crypto.world import World
from gateway.mail import mime
from gateway.spill import LARGE
from tests.conftest import legacy_client
from tests.daemon.harness import ADDR, TRUST, Harness, start

SCAN = os.urandom(3 * LARGE)  # an incompressible attachment, three times the threshold


def _attachment(data: bytes, name: str) -> bytes:
    found = [p.data for p in mime.leaves(mime.parse(data)) if p.filename == name]
    assert len(found) == 1, f"{name} not in the message"
    return found[0]


def test_large_messages_cross_both_ways_through_files(world: World, tmp_path: Path) -> None:
    async def main() -> None:
        h = await start(world, tmp_path, overrides={"workers": {"processes": 1}})
        try:
            await _scenario(h)
        finally:
            await h.stop()
        assert list(h.gateway.spill.iterdir()) == []

    asyncio.run(main())


async def _scenario(h: Harness) -> None:
    m = EmailMessage()
    m["From"] = ADDR["dupont"]
    m["To"] = "dr.x@hopital-a.mssante.example"
    m["Subject"] = "Imagerie"
    m["Message-ID"] = "<large-1@medical33.legacy.example>"
    m.set_content(".Une ligne qui commence par un point.\r\n", cte="8bit")
    m.add_attachment(SCAN, maintype="application", subtype="octet-stream",
                     filename="scanner.bin")
    sealed = legacy_client(h.world, "dupont").seal(
        m.as_bytes(), recipient=h.world.fingerprints["gateway"])
    assert len(sealed) > 4 * LARGE
    await aiosmtplib.send(sealed, sender=ADDR["dupont"], recipients=[m["To"]],
                          hostname="127.0.0.1", port=h.legacy_port, start_tls=True,
                          tls_context=h.tls(), timeout=60)
    got = await h.op_a.wait_for(1, timeout=60)
    assert _attachment(got[0].data, "scanner.bin") == SCAN
    assert mime.parse(got[0].data).get_content_type() == "multipart/signed"

    reply = EmailMessage()
    reply["From"] = "dr.x@hopital-a.mssante.example"
    reply["To"] = TRUST["dupont"]
    reply["Subject"] = "Compte rendu"
    reply["Message-ID"] = "<large-2@hopital-a.mssante.example>"
    reply.set_content("Voici le compte rendu.")
    reply.add_attachment(SCAN[::-1], maintype="application", subtype="octet-stream",
                         filename="retour.bin")
    await aiosmtplib.send(reply.as_bytes(), sender=reply["From"], recipients=[reply["To"]],
                          hostname="127.0.0.1", port=h.trust_port, start_tls=True,
                          tls_context=h.tls("hopital-a-client"), timeout=60)
    back = await h.hub.wait_for(1, timeout=60)
    opened = legacy_client(h.world, "dupont").open(
        back[0].data, expected_signer=h.world.fingerprints["gateway"])
    assert _attachment(opened.message, "retour.bin") == SCAN[::-1]
