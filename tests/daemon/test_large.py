"""Large messages end to end, both ways, translated in a worker process: every stage hands
them on as files of the spill directory (gateway/spill.py), and the far side gets every
byte of the attachment; nothing is left in the spill directory afterwards, and while they
were there the spill files held no clear text (sealed: gateway/spill.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from gateway.mail import mime
from gateway.spill import LARGE
from tests.conftest import legacy_client
from tests.daemon.harness import ADDR, TRUST, Harness, start

SCAN = os.urandom(3 * LARGE)  # an incompressible attachment, three times the threshold
# what the clear messages hold of the attachments: their first base64 lines, some raw bytes
CLEAR = (base64.b64encode(SCAN[:57]), base64.b64encode(SCAN[::-1][:57]), SCAN[1000:1032],
         SCAN[::-1][1000:1032], b"Une ligne qui commence", b"Voici le compte rendu")


class SpillWatch:
    """Reads every file of the spill directory while the daemon works, as anyone able to
    read the disk could: for each file, the largest size seen and the clear fragments found."""

    def __init__(self, spill: Path) -> None:
        self.spill = spill
        self.seen: dict[str, tuple[int, list[bytes]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SpillWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in list(self.spill.iterdir()) if self.spill.is_dir() else []:
                try:
                    if path.stat().st_size <= self.seen.get(path.name, (0, []))[0]:
                        continue
                    data = path.read_bytes()
                except OSError:  # removed meanwhile: its step is over
                    continue
                found = [f for f in CLEAR if f in data]
                self.seen[path.name] = (len(data), found + self.seen.get(path.name, (0, []))[1])
            time.sleep(0.002)


def _attachment(data: bytes, name: str) -> bytes:
    found = [p.data for p in mime.leaves(mime.parse(data)) if p.filename == name]
    assert len(found) == 1, f"{name} not in the message"
    return found[0]


@pytest.mark.slow
def test_large_messages_cross_both_ways_through_files(world: World, tmp_path: Path) -> None:
    async def main() -> None:
        h = await start(world, tmp_path, overrides={"workers": {"processes": 1}})
        try:
            with SpillWatch(h.gateway.spill) as watch:
                await _scenario(h)
        finally:
            await h.stop()
        assert list(h.gateway.spill.iterdir()) == []
        # files were seen while their message was on its way, and none held clear text
        assert any(size > LARGE for size, _ in watch.seen.values()), watch.seen.keys()
        assert {name: found for name, (_, found) in watch.seen.items() if found} == {}

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
    assert CLEAR[0] in got[0].data  # what a clear spill file of it would show
    assert mime.parse(got[0].data).get_content_type() == "multipart/signed"

    reply = EmailMessage()
    reply["From"] = "dr.x@hopital-a.mssante.example"
    reply["To"] = TRUST["dupont"]
    reply["Subject"] = "Compte rendu"
    reply["Message-ID"] = "<large-2@hopital-a.mssante.example>"
    reply.set_content("Voici le compte rendu.")
    reply.add_attachment(SCAN[::-1], maintype="application", subtype="octet-stream",
                         filename="retour.bin")
    assert CLEAR[1] in reply.as_bytes()
    await aiosmtplib.send(reply.as_bytes(), sender=reply["From"], recipients=[reply["To"]],
                          hostname="127.0.0.1", port=h.trust_port, start_tls=True,
                          tls_context=h.tls("hopital-a-client"), timeout=60)
    back = await h.hub.wait_for(1, timeout=60)
    opened = legacy_client(h.world, "dupont").open(
        back[0].data, expected_signer=h.world.fingerprints["gateway"])
    assert _attachment(opened.message, "retour.bin") == SCAN[::-1]
