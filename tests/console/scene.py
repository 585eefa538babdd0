"""A running gateway with the console on, and real mail in every state an operator looks at:
delivered, deferred (the clinic's MX answers 4xx), quarantined (a lab report from a doctor).
Used by the browser tests and by tools/console-screenshots.py."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.crypto.world import World
from tests.conftest import FIXTURES
from tests.daemon.harness import Harness, start, until

TOKEN = "console-test-token-0123456789abcdef"
OPERATOR = "alice"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Scene:
    h: Harness
    delivered: str  # queue ids
    deferred: str
    quarantined: str

    @property
    def url(self) -> str:
        assert self.h.gateway.console is not None
        return self.h.gateway.console.url


async def scene(world: World, state: Path, *, spool_url: str = "") -> Scene:
    """``spool_url``: a PostgreSQL spool (and so journal and directory) instead of SQLite."""
    tokens = state / "console-tokens"
    tokens.write_text(f"# operators\n{OPERATOR} {TOKEN}\n", "utf-8")
    tokens.chmod(0o600)
    overrides: dict[str, dict[str, object]] = {"console": {
        "enabled": True, "listen": "127.0.0.1:0",
        "tls_cert": str(world.cert("gateway-server")), "tls_key": str(world.key("gateway-server")),
        "client_ca": str(world.ca_cert), "tokens_file": str(tokens)}}
    if spool_url:
        overrides["spool"] = {"url": spool_url}
    h = await start(world, state, overrides=overrides)
    try:
        h.op_b.behaviour.mode = "tempfail"
        await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example", b"Bonjour",
                            msgid="<c1-delivered@medical33.legacy.example>")
        await h.send_legacy("petit", "dr.y@clinique-b.mssante.example", b"Bonjour",
                            msgid="<c2-deferred@medical59.legacy.example>")
        report = (FIXTURES / "hprim" / "04-nfs-crlf-13.hpr").read_bytes()
        await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example", report,
                            msgid="<c3-quarantined@medical33.legacy.example>")
        spool = h.gateway.spool
        await h.op_a.wait_for(1)
        await until(lambda: spool.counts().get("deferred", 0) >= 1
                    and spool.counts().get("quarantined", 0) >= 1
                    and spool.counts().get("delivered", 0) >= 1, timeout=60)

        def qid(state: str) -> str:
            return spool.list(state=state)[0].queue_id

        return Scene(h, qid("delivered"), qid("deferred"), qid("quarantined"))
    except BaseException:
        await h.stop()
        raise


def spki_pin(cert: Path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value for the console's certificate
    (the test CA is not in the browser's store; this trusts that one key, nothing else)."""
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    der = c.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextmanager
def browser(world: World, *, lang: str = "en", width: int = 1280, height: int = 900,
            javascript: bool = True) -> Iterator[object]:
    """A headless Debian chromium through its chromedriver, in a fresh profile (with
    ``javascript=False``, with JavaScript turned off for every page)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="console-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 f"--lang={lang}",
                 f"--ignore-certificate-errors-spki-list={spki_pin(world.cert('gateway-server'))}"):
        opts.add_argument(flag)
    prefs: dict[str, object] = {"intl.accept_languages": lang}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    opts.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=dict(os.environ)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
