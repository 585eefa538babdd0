"""Ops against the running daemon: metrics move, logs hold no patient data, readiness."""

from __future__ import annotations

import asyncio
import io
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway import config
from gateway import log as ops_logging
from gateway.crypto.world import World
from gateway.daemon import Gateway
from gateway.sim import SimTrustOperator
from tests.conftest import FIXTURES
from tests.daemon.harness import ADDR, TRUST, Harness, start, until
from tests.ops.logscan import assert_clean, forbidden_terms_from_fixtures
from tests.ops.scrape import E2E_FAMILIES, parse, scrape, still_families

STATIC = ("passerelle_expiry_timestamp_seconds", "passerelle_domain_list_timestamp_seconds",
          "passerelle_crl_timestamp_seconds")


async def traffic(h: Harness, untrusted_port: int) -> None:
    """Everything the families count: garbled text, a lab report, a reply, a forgery,
    a 4xx retry, a TLS failure towards a peer with an untrusted certificate."""
    h.op_a.behaviour.fail_times = 1
    mac = (FIXTURES / "text" / "corpus" / "garbled" / "p01-macroman-cr.bin").read_bytes()
    await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example", mac, msgid="<o1@m33>",
                        subject="Mme Pélissier")
    report = (FIXTURES / "hprim" / "04-nfs-crlf-13.hpr").read_bytes()
    await h.send_legacy("biolab", "dr.x@hopital-a.mssante.example", report, msgid="<o2@m69>")
    await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["dupont"], "Bien reçu.",
                       msgid="<o3@hopital-a>")
    # a forgery: Dr Martin's message sent with Dr Dupont's envelope
    from email.message import EmailMessage

    import aiosmtplib

    from tests.conftest import legacy_client

    forged = EmailMessage()
    forged["From"] = ADDR["dupont"]
    forged["To"] = "dr.x@hopital-a.mssante.example"
    forged.set_content(b"Ordonnance falsifiee", maintype="text", subtype="plain")
    data = legacy_client(h.world, "martin").seal(forged.as_bytes(),
                                                 recipient=h.world.fingerprints["gateway"])
    await aiosmtplib.send(data, sender=ADDR["dupont"], recipients=[
        "dr.x@hopital-a.mssante.example"], hostname="127.0.0.1", port=h.legacy_port,
        start_tls=True, tls_context=h.tls(), timeout=30)
    # the clinic's MX presents a certificate we do not trust
    h.gateway.router.routes["clinique-b.mssante.example"] = f"127.0.0.1:{untrusted_port}"
    await h.send_legacy("petit", "dr.y@clinique-b.mssante.example", b"Bonjour",
                        msgid="<o4@m59>")
    await h.op_a.wait_for(2)
    await h.hub.wait_for(2)  # the reply, and the notice about the forgery
    await until(lambda: h.gateway.spool.counts().get("deferred", 0) >= 1)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_metrics_move_and_logs_stay_clean(world: World, tmp_path: Path) -> None:
    buffer = io.StringIO()
    ops_logging.configure("debug", stream=buffer)

    async def main() -> None:
        untrusted = SimTrustOperator(cert=world.cert("evil-client"), key=world.key("evil-client"),
                                     anchors=[world.ca_cert])
        await untrusted.start()
        h = await start(world, tmp_path)
        try:
            empty = parse("")
            before = await asyncio.to_thread(scrape, h.gateway.ops.url)
            assert still_families(empty, before, STATIC) == set()
            await traffic(h, untrusted.port)
            await asyncio.sleep(0.6)  # let the periodic gauges run once more
            after = await asyncio.to_thread(scrape, h.gateway.ops.url)
            moving = [f for f in E2E_FAMILIES if f not in STATIC]
            assert still_families(before, after, moving) == set()
            events = {dict(k[1]).get("event") for k in after["passerelle_messages_total"]}
            assert {"received", "translated", "delivered", "deferred", "bounced"} <= events
            for path in ("/healthz", "/readyz"):
                assert await asyncio.to_thread(status, h.gateway.ops.url + path) == 200
        finally:
            await h.stop()
            await untrusted.stop()

    try:
        asyncio.run(main())
    finally:
        ops_logging.configure("info")
    lines = buffer.getvalue().splitlines()
    assert len(lines) > 20 and any('"message.delivered"' in ln for ln in lines)
    assert_clean(lines, forbidden_terms_from_fixtures(FIXTURES) | {"Pélissier", "falsifiee"})


def test_readyz_turns_unready_when_the_list_is_stale(world: World, tmp_path: Path) -> None:
    async def main() -> None:
        cfg = tmp_path / "p.toml"
        cfg.write_text(world.config.read_text("utf-8").replace(
            'state_dir = "state"', f'state_dir = "{tmp_path}"') + (
            '[ops]\nlisten = "127.0.0.1:0"\n[listen.legacy]\nport = 0\n'
            '[listen.trust]\nport = 0\n'), "utf-8")
        shift = [0.0]
        gateway = Gateway(config.load(cfg), clock=lambda: time.time() + shift[0])
        await gateway.start()
        try:
            url = gateway.ops.url + "/readyz"
            assert await asyncio.to_thread(status, url) == 200
            shift[0] = 49 * 3600

            def body() -> str:
                try:
                    urllib.request.urlopen(url, timeout=5)
                except urllib.error.HTTPError as err:
                    return f"{err.code} {err.read().decode()}"
                return "200"
            answer = await asyncio.to_thread(body)
            assert answer.startswith("503") and "domain list stale: 49 h old" in answer
        finally:
            await gateway.drain(grace=1)
    asyncio.run(main())
