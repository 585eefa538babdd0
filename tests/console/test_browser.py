"""The operator console in a real browser (Debian chromium through chromedriver) against a
running gateway with real mail: find, read a timeline, release from quarantine; refused
without credentials and on a forged CSRF token."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.crypto.world import World
from tests.console.scene import CHROMEDRIVER, OPERATOR, TOKEN, Scene, browser, scene
from tests.daemon.harness import until

T = TypeVar("T")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMEDRIVER) is None,
                       reason="chromium-driver not installed (.ci/run installs it)"),
]


def ui(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
    return asyncio.to_thread(fn, *args, **kwargs)


def click(d: Any, css: str) -> None:
    """Submit or follow, then wait until the next page is there."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.CSS_SELECTOR, css).click()

    def replaced(_: Any) -> bool:
        # chromedriver says the old page is gone either way: a stale reference, or (while
        # the next document loads) "node does not belong to the document"
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    WebDriverWait(d, 30).until(replaced)
    WebDriverWait(d, 30).until(lambda drv: drv.execute_script(
        "return document.readyState") == "complete")


def follow(d: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    href = d.find_element(By.LINK_TEXT, text).get_attribute("href")
    d.get(href)


def login(d: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    d.get(url + "/login")
    d.find_element(By.ID, "token").send_keys(TOKEN)
    click(d, "form button[type=submit]")


def search(d: Any, url: str, **fields: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d.get(url + "/messages")
    for name, value in fields.items():
        if name == "state":
            Select(d.find_element(By.ID, "f-state")).select_by_value(value)
        else:
            d.find_element(By.ID, f"f-{name}").send_keys(value)
    click(d, "form.search button")
    assert "<main>" in d.page_source, d.page_source[:2000]
    return str(d.find_element(By.TAG_NAME, "main").text)


def tls(world: World, client: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(world.ca_cert))
    ctx.check_hostname = False
    if client:
        ctx.load_cert_chain(str(world.cert(client)), str(world.key(client)))
    return ctx


def fetch(url: str, ctx: ssl.SSLContext, *, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_operator_finds_reads_and_releases_in_a_browser(world: World, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    async def main() -> None:
        s: Scene = await scene(world, tmp_path)
        journal = s.h.gateway.journal
        try:
            with browser(world) as d:
                # without credentials: the sign-in page, never a message
                await ui(d.get, s.url + "/quarantine")
                assert d.current_url.endswith("/login")
                assert s.quarantined not in d.page_source
                await ui(login, d, s.url)
                assert "Operator: alice" in d.page_source
                # find each by state, by Message-ID, by domain
                text = await ui(search, d, s.url, state="delivered")
                assert s.delivered in text and s.quarantined not in text
                text = await ui(search, d, s.url, state="deferred")
                assert s.deferred in text and s.delivered not in text
                text = await ui(search, d, s.url,
                                message_id="c3-quarantined@medical33.legacy.example")
                assert s.quarantined in text and "1 message(s)" in text
                text = await ui(search, d, s.url, domain="clinique-b.mssante.example")
                assert s.deferred in text and s.delivered not in text
                # no patient data on the pages: the listing shows domains, not addresses
                assert "dr.y@clinique-b" not in d.page_source
                # a timeline: the delivered message's journal steps; the deferred one's reply
                await ui(follow, d, s.deferred)
                main_text = d.find_element(By.TAG_NAME, "main").text
                assert "deferred" in main_text and "451" in main_text
                await ui(d.get, f"{s.url}/messages/{s.delivered}")
                main_text = d.find_element(By.TAG_NAME, "main").text
                assert "Timeline" in main_text and "No step recorded" not in main_text
                assert "Bonjour" not in d.page_source  # content only after "reveal"
                # French by ?lang=
                await ui(d.get, f"{s.url}/messages/{s.delivered}?lang=fr")
                assert "Chronologie" in d.page_source
                # a forged CSRF token is refused, and nothing is released
                await ui(d.get, f"{s.url}/quarantine/{s.quarantined}/release")
                d.execute_script("document.querySelector('main input[name=csrf]').value = 'f' + "
                                 "'0'.repeat(63)")
                await ui(click, d, "main form button")
                assert "bad CSRF token" in d.page_source
                assert s.h.gateway.spool.entry(s.quarantined).recipients[0].state == \
                    "quarantined"
                # the real confirmation releases it, and the journal names the operator
                await ui(d.get, s.url + "/quarantine")
                await ui(follow, d, "Release")
                assert "will be translated again" in d.page_source
                await ui(click, d, "main form button")
                assert f"Message {s.quarantined} released" in d.page_source
                steps = [e for e in journal.entries("<c3-quarantined@medical33.legacy.example>")
                         if e.stage == "console.release"]
                assert steps and steps[0].record["operator"] == f"session:{OPERATOR}"
                # and the message's trace has its released step, as the CLI writes it
                released = [e for e in journal.entries_of_queue(s.quarantined)
                            if e.stage == "released"]
                assert [e.record["operator"] for e in released] == [f"session:{OPERATOR}"]
                # reveal is explicit and journaled
                await ui(d.get, f"{s.url}/messages/{s.delivered}")
                await ui(click, d, "main form button")
                assert "Message-ID" in d.find_element(By.TAG_NAME, "pre").text
                assert any(e.stage == "console.reveal" for e in journal.entries(
                    "<c1-delivered@medical33.legacy.example>"))
        finally:
            await s.h.stop()

    asyncio.run(main())


def test_headers_certificates_and_refusals_over_https(world: World, tmp_path: Path) -> None:
    async def main() -> None:
        s = await scene(world, tmp_path)
        try:
            anon = tls(world)
            # no credentials: a browser is sent to sign in; a POST is refused outright
            status, _, headers = await ui(fetch, s.url + "/messages", anon)
            assert status == 303 and headers["Location"].startswith("/login")
            assert headers["Cache-Control"] == "no-store"  # a refusal has the headers too
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            status, _, headers = await ui(fetch, f"{s.url}/quarantine/{s.quarantined}/drop",
                                          anon, data=b"csrf=x")
            assert status == 401 and headers["X-Frame-Options"] == "DENY"
            # a wrong bearer token is refused; the right one is let in, with the headers
            status, _, _ = await ui(fetch, s.url + "/queue", anon, headers={
                "Authorization": "Bearer not-the-token-at-all"})
            assert status == 401
            status, body, headers = await ui(fetch, s.url + "/queue", anon, headers={
                "Authorization": f"Bearer {TOKEN}"})
            assert status == 200 and "quarantined" in body
            assert "script-src" not in headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            assert headers["Cache-Control"] == "no-store"
            assert headers["X-Frame-Options"] == "DENY"
            assert headers["Referrer-Policy"] == "no-referrer"
            # a client certificate from the operators' CA is an operator
            status, body, _ = await ui(fetch, s.url + "/quarantine",
                                       tls(world, "hopital-a-client"))
            assert status == 200 and s.quarantined in body
            # a POST without its CSRF token is refused even with a good certificate
            status, _, _ = await ui(fetch, f"{s.url}/quarantine/{s.quarantined}/drop",
                                    tls(world, "hopital-a-client"), data=b"confirm=yes")
            assert status == 403
            await until(lambda: s.h.gateway.spool.entry(s.quarantined) is not None)
        finally:
            await s.h.stop()

    asyncio.run(main())
