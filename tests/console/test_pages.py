"""The console's other pages in a real browser (Debian chromium through chromedriver): a
message's delivery attempts one by one, the list of domains in force, the directory lookup."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto.world import OPERATORS, World
from gateway.directory.model import COLUMNS, HEADER
from gateway.directory.pgstore import open_directory
from gateway.spool.search import QueueFilter
from tests.console.scene import CHROMEDRIVER, TOKEN, browser, scene
from tests.console.test_browser import click, fetch, login, search, tls, ui
from tests.daemon.harness import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMEDRIVER) is None,
                       reason="chromium-driver not installed (.ci/run installs it)"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def spool_url(request: pytest.FixtureRequest) -> str:
    """The gateway's spool (and journal, and directory): SQLite, or a PostgreSQL database."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def main_text(d: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(d.find_element(By.TAG_NAME, "main").text)


def table_rows(d: Any, css: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[c.text for c in tr.find_elements(By.TAG_NAME, "td")]
            for tr in d.find_elements(By.CSS_SELECTOR, f"{css} tbody tr")]


def test_each_delivery_attempt_with_the_peers_reply(world: World, tmp_path: Path) -> None:
    async def main() -> None:
        s = await scene(world, tmp_path)
        spool = s.h.gateway.spool
        try:
            # the hospital's MX answers 451 twice, then takes the message
            s.h.op_a.behaviour.fail_times = 2
            await s.h.send_legacy("petit", "dr.x@hopital-a.mssante.example", b"Bonjour",
                                  msgid="<c4-third-time@medical59.legacy.example>")
            entry = None

            def delivered() -> bool:
                nonlocal entry
                found, _ = spool.search(QueueFilter(
                    message_id="c4-third-time@medical59.legacy.example", state="delivered"))
                entry = found[0] if found else None
                return entry is not None

            await until(delivered, timeout=60)
            assert entry is not None
            with browser(world) as d:
                await ui(login, d, s.url)
                await ui(d.get, f"{s.url}/messages/{entry.queue_id}")
                assert "Delivery attempts" in main_text(d)
                rows = table_rows(d, "table.attempts")
                # when, attempt, domain, relay, result, DSN, reply
                assert [r[1] for r in rows] == ["1", "2", "3"], rows
                assert [r[4] for r in rows] == ["deferred", "deferred", "sent"]
                assert [r[5] for r in rows] == ["4.3.0", "4.3.0", "2.0.0"]
                assert all(r[2] == "hopital-a.mssante.example" for r in rows)
                assert len({r[3] for r in rows}) == 1 and ":" in rows[0][3]  # the relay
                assert rows[0][6].startswith("451 4.3.0") and rows[1][6].startswith("451")
                assert rows[2][6].startswith("250")
                assert rows[0][0] <= rows[1][0] <= rows[2][0]  # in the order they happened
                # the recipients' table still says where it stands now
                assert "delivered" in main_text(d)
                # the timeline: the steps, the tool that verified the signature, the repair
                timeline = main_text(d).split("Timeline", 1)[1]
                for step in ("received", "open", "repair", "compose", "sign", "delivery"):
                    assert f" {step}\n" in timeline, step
                # (the tool is the world's adapter: librnp where it loads, else gpg)
                assert "result=good" in timeline
                assert "tools=rnp" in timeline or "tools=gpg" in timeline
                # a notice written about it (as the trace links one) leads to its page
                s.h.gateway.journal.append(
                    "<c4-third-time@medical59.legacy.example>", "notice",
                    {"queue_id": entry.queue_id, "kind": "delay",
                     "notice_queue_id": s.deferred}, at=datetime.now(UTC))
                await ui(d.get, f"{s.url}/messages/{entry.queue_id}")
                await ui(click, d, f"main a[href='/messages/{s.deferred}']")
                assert d.current_url.endswith(f"/messages/{s.deferred}")
                # in French too
                await ui(d.get, f"{s.url}/messages/{entry.queue_id}?lang=fr")
                assert "Tentatives de remise" in main_text(d)
                assert "Réponse du pair" in main_text(d)
                # the message being retried in the scene shows its attempts so far
                await ui(d.get, f"{s.url}/messages/{s.deferred}")
                rows = table_rows(d, "table.attempts")
                assert rows and all(r[4] == "deferred" and r[6].startswith("451")
                                    for r in rows)
                assert "dr.y@" not in d.page_source  # the domain, never the address
        finally:
            await s.h.stop()

    asyncio.run(main())


def extraction(path: Path, *rows: tuple[str, str, str, str, str]) -> Path:
    """The national extraction's format: (type, address, RPPS, family name, given name)."""
    lines = ["|".join(HEADER)]
    for kind, address, rpps, family, given in rows:
        values = [""] * COLUMNS
        values[0], values[1] = kind, address
        if rpps:
            values[2], values[3], values[4] = "8", rpps, f"8{rpps}"
        values[9], values[10], values[12] = family, given, "Médecin"
        lines.append("|".join(values))
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_directory_lookup_and_list_of_domains(world: World, tmp_path: Path,
                                              spool_url: str) -> None:
    from selenium.webdriver.common.by import By

    async def main() -> None:
        state = tmp_path / "state"
        state.mkdir()
        s = await scene(world, state, spool_url=spool_url)
        try:
            with browser(world) as d:
                await ui(login, d, s.url)

                def lookup(query: str, lang: str = "") -> str:
                    d.get(s.url + "/directory" + (f"?lang={lang}" if lang else ""))
                    field = d.find_element(By.ID, "f-q")
                    field.clear()
                    field.send_keys(query)
                    click(d, "form.search button")
                    return main_text(d)

                # nothing imported yet: said so, not a traceback
                text = await ui(lookup, "dr.x@hopital-a.mssante.example")
                assert "Directory unavailable: no directory imported" in text
                assert "Traceback" not in d.page_source
                store = open_directory(s.h.gateway.settings.directory_target)
                store.import_file(extraction(
                    tmp_path / "extraction.txt",
                    ("PER", "anne.leroy@hopital-a.mssante.example", "10000000011", "LEROY",
                     "Anne"),
                    ("PER", "a.leroy@clinique-b.mssante.example", "10000000011", "LEROY",
                     "Anne"),
                    ("PER", "jean.le-goff@hopital-a.mssante.example", "10000000022",
                     "LE GOFF", "Jean"),
                    ("ORG", "secretariat@clinique-b.mssante.example", "", "", "")))
                store.close()
                # by address (case aside), by RPPS (both mailboxes), by family name, by
                # family and given name, a name with a space
                text = await ui(lookup, "Anne.Leroy@Hopital-A.mssante.example")
                assert "anne.leroy@hopital-a.mssante.example" in text
                assert "a.leroy@clinique-b" not in text
                text = await ui(lookup, "10000000011")
                assert "anne.leroy@hopital-a" in text and "a.leroy@clinique-b" in text
                assert "le-goff" not in text
                assert len(table_rows(d, "main table")) == 2
                text = await ui(lookup, "Leroy")
                assert len(table_rows(d, "main table")) == 2 and "LEROY Anne" in text
                text = await ui(lookup, "leroy anne")
                assert len(table_rows(d, "main table")) == 2
                text = await ui(lookup, "Le Goff")
                assert "jean.le-goff@hopital-a.mssante.example" in text
                text = await ui(lookup, "secretariat@clinique-b.mssante.example")
                assert "ORG" in text
                text = await ui(lookup, "nobody@nowhere.example")
                assert "No entry." in text
                # the search box keeps the language of the page it is on
                text = await ui(lookup, "10000000022", "fr")
                assert "jean.le-goff" in text and "Adresse" in text
                assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
                label = d.find_element(By.CSS_SELECTOR, "label[for=f-q]").text
                assert "RPPS" in label

                # the list of domains in force: its date, age, signer and every domain
                listed = s.h.gateway.domains.current()  # the world's signed list
                await ui(d.get, s.url + "/domains")
                text = main_text(d)
                facts = {th.text: td.text for th, td in zip(
                    d.find_elements(By.CSS_SELECTOR, "main table.facts th"),
                    d.find_elements(By.CSS_SELECTOR, "main table.facts td"), strict=True)}
                assert facts["Generated at"] == listed.generated_at.astimezone(UTC).strftime(
                    "%Y-%m-%d %H:%M:%S UTC")
                hours = (datetime.now(UTC) - listed.generated_at).total_seconds() / 3600
                assert abs(float(facts["Age"].split()[0]) - hours) < 0.2
                assert listed.signed_by and facts["Signer"] == listed.signed_by
                assert facts["Domains listed"] == str(len(OPERATORS))
                rows = table_rows(d, "main table.domains")
                assert len(rows) == len(OPERATORS)
                for domain in OPERATORS.values():
                    assert domain in text, domain
                # the Unicode name with its ASCII form, and each operator's certificate DN
                assert any(r[0] == "médecins-c.mssante.example"
                           and r[1] == "médecins-c.mssante.example".encode("idna").decode()
                           for r in rows), rows
                assert all(r[2] for r in rows)
                await ui(d.get, s.url + "/domains?lang=fr")
                assert "Signataire" in main_text(d) and "Âge" in main_text(d)
        finally:
            await s.h.stop()

    asyncio.run(main())


def test_without_javascript_search_pages_queue_and_drop(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        spool_url: str) -> None:
    """With JavaScript off in the browser: search by each criterion and page through the
    results, read the queue's summary, drop a quarantined message behind its confirmation."""
    from selenium.webdriver.common.by import By

    from gateway.ops.console import app
    from tests.daemon.harness import ADDR

    monkeypatch.setattr(app, "PAGE_SIZE", 2)  # three messages: two pages

    async def main() -> None:
        s = await scene(world, tmp_path, spool_url=spool_url)
        spool = s.h.gateway.spool
        journal = s.h.gateway.journal
        try:
            with browser(world, javascript=False) as d:
                await ui(login, d, s.url)
                assert "Operator: alice" in d.page_source
                # every message, newest first, two a page; the next page by its link
                await ui(d.get, s.url + "/messages")
                text = main_text(d)
                assert "3 message(s)" in text and "Page 1 of 2" in text
                first = [r[0] for r in table_rows(d, "main table")]
                assert sorted(first) == sorted([s.quarantined, s.deferred])
                await ui(click, d, "a[rel=next]")
                assert "Page 2 of 2" in main_text(d)
                assert [r[0] for r in table_rows(d, "main table")] == [s.delivered]
                assert d.find_elements(By.CSS_SELECTOR, "a[rel=prev]")
                assert not d.find_elements(By.CSS_SELECTOR, "a[rel=next]")
                # by sender (an address, or a domain), by recipient
                text = await ui(search, d, s.url, sender=ADDR["petit"])
                assert s.deferred in text and "1 message(s)" in text
                text = await ui(search, d, s.url, sender="medical33.legacy.example")
                assert s.delivered in text and s.quarantined in text and s.deferred not in text
                text = await ui(search, d, s.url, recipient="DR.Y@clinique-b.mssante.example")
                assert s.deferred in text and "1 message(s)" in text
                text = await ui(search, d, s.url, recipient="dr.nobody@clinique-b.mssante"
                                ".example")
                assert "No message." in text
                # by date of arrival (the form's GET, as a browser sends it)
                today = datetime.now(UTC).strftime("%Y-%m-%d")
                await ui(d.get, f"{s.url}/messages?since={today}&until={today}")
                assert "3 message(s)" in main_text(d)
                await ui(d.get, f"{s.url}/messages?until=2020-01-01")
                assert "No message." in main_text(d)
                await ui(d.get, f"{s.url}/messages?since=yesterday")
                assert "Bad date: yesterday" in main_text(d)
                # the queue: per state, and what waits by destination domain and age
                await ui(d.get, s.url + "/queue")
                states = dict(r for r in table_rows(d, "main table.states"))
                assert states["deferred"] == "1" and states["quarantined"] == "1"
                shape = {tr.find_element(By.TAG_NAME, "th").text:
                         [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                         for tr in d.find_elements(By.CSS_SELECTOR, "table.shape tbody tr")}
                assert shape["All"][0] == "2"  # the deferred and the quarantined recipient
                assert shape["clinique-b.mssante.example"][:2] == ["1", "1"]  # < 5 min
                assert "hopital-a.mssante.example" in shape
                await ui(click, d, "table.shape a[href*=clinique-b]")
                assert s.deferred in main_text(d) and s.delivered not in main_text(d)
                # drop: a confirmation first; cancel keeps it; confirm drops it
                await ui(d.get, s.url + "/quarantine")
                assert "…@medical33.legacy.example" in main_text(d)  # the reason, masked
                assert "jean.DUPONT@" not in d.page_source
                await ui(click, d, f"a[href='/quarantine/{s.quarantined}/drop']")
                assert f"Drop message {s.quarantined} for good?" in main_text(d)
                assert spool.entry(s.quarantined) is not None  # asking is not doing
                await ui(click, d, "main form a")  # Cancel
                assert d.current_url.endswith("/quarantine") and s.quarantined in main_text(d)
                await ui(click, d, f"a[href='/quarantine/{s.quarantined}/drop']")
                await ui(click, d, "main form button")
                assert f"Message {s.quarantined} dropped." in main_text(d)
                assert "No message." in main_text(d)
                assert not spool.search(QueueFilter(everything=True, message_id=(
                    "c3-quarantined@medical33.legacy.example")))[0]
                steps = [e for e in journal.entries("<c3-quarantined@medical33.legacy.example>")
                         if e.stage == "console.drop"]
                assert len(steps) == 1 and steps[0].record["operator"] == "session:alice"
                assert steps[0].record["queue_id"] == s.quarantined
        finally:
            await s.h.stop()

    asyncio.run(main())


PAGES = ("/messages", "/messages/{delivered}", "/messages/{deferred}",
         "/messages/{quarantined}", "/queue", "/quarantine",
         "/quarantine/{quarantined}/release", "/domains", "/directory?q=10000000011")


def test_every_page_is_accessible_bilingual_scriptless_and_uncached(world: World,
                                                                   tmp_path: Path) -> None:
    """Each page, in French and in English: its language declared, one h1, a label for each
    field, headers scoped; no script, no inline style or handler (the CSP allows none), not
    cached, and no address's local part."""
    from selenium.webdriver.common.by import By

    async def main() -> None:
        s = await scene(world, tmp_path)
        ids = {"delivered": s.delivered, "deferred": s.deferred,
               "quarantined": s.quarantined}
        try:
            with browser(world, javascript=False) as d:
                await ui(d.get, s.url + "/login?lang=fr")
                assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
                d.find_element(By.ID, "token").send_keys("not-the-operator-token")
                await ui(click, d, "form button[type=submit]")
                assert "Jeton inconnu." in main_text(d) and "/login" in d.current_url
                await ui(login, d, s.url)
                for lang, word in (("fr", "Messages"), ("en", "Messages")):
                    for path in PAGES:
                        url = s.url + path.format(**ids)
                        url += ("&" if "?" in url else "?") + f"lang={lang}"
                        await ui(d.get, url)
                        source = d.page_source
                        where = f"{path} ({lang})"
                        html_el = d.find_element(By.TAG_NAME, "html")
                        assert html_el.get_attribute("lang") == lang, where
                        assert len(d.find_elements(By.TAG_NAME, "h1")) == 1, where
                        assert d.find_element(By.CSS_SELECTOR, "nav").text.startswith(word)
                        for field in d.find_elements(By.CSS_SELECTOR,
                                                     "input:not([type=hidden]), select"):
                            fid = field.get_attribute("id")
                            assert fid and d.find_elements(By.CSS_SELECTOR,
                                                           f"label[for='{fid}']"), where
                            assert d.find_element(By.CSS_SELECTOR,
                                                  f"label[for='{fid}']").text.strip(), where
                        for th in d.find_elements(By.CSS_SELECTOR, "th"):
                            assert th.get_attribute("scope") in ("col", "row"), where
                        low = source.lower()
                        assert "<script" not in low and " style=" not in low, where
                        assert " onclick=" not in low and " onload=" not in low, where
                        for local in ("dupont@", "petit@", "dr.x@", "dr.y@"):
                            assert local not in low, (where, local)
                    # the words of the page are the language's
                    await ui(d.get, f"{s.url}/queue?lang={lang}")
                    text = main_text(d)
                    assert ("File d'attente" in text and "différé" in text) if lang == "fr" \
                        else ("Queue" in text and "deferred" in text)
            # over HTTPS: no content page may be cached, and none may run a script
            ctx = tls(world)
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            for path in (*PAGES, "/login"):
                status, _, headers = await ui(fetch, s.url + path.format(**ids), ctx,
                                              headers=bearer)
                assert status == 200, path
                assert headers["Cache-Control"] == "no-store", path
                csp = headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "unsafe-inline" not in csp, path
            status, _, headers = await ui(fetch, s.url + "/static/console.css", ctx)
            assert status == 200 and headers["Content-Type"].startswith("text/css")
            # what is not there, and an action that does not apply, are said plainly
            status, body, headers = await ui(fetch, s.url + "/messages/0123456789ABCDEF0123",
                                             ctx, headers=bearer)
            assert status == 404 and "Not found." in body
            assert headers["Cache-Control"] == "no-store"
            _, page, _ = await ui(fetch, f"{s.url}/quarantine/{s.delivered}/release", ctx,
                                  headers=bearer)
            csrf = page.split('name="csrf" value="')[1].split('"')[0]
            status, body, _ = await ui(fetch, f"{s.url}/quarantine/{s.delivered}/release", ctx,
                                       headers=bearer, data=f"csrf={csrf}".encode())
            assert status == 409 and "Not done:" in body and "Traceback" not in body
            assert str(s.h.gateway.spool.entry(s.delivered).recipients[0].state) == "delivered"
            # a reveal is journaled under whoever asked: a token, a client certificate
            for who, ctx_, headers_ in (("token:alice", ctx, bearer),
                                        ("certificate:", tls(world, "hopital-a-client"), {})):
                _, page, _ = await ui(fetch, f"{s.url}/messages/{s.delivered}", ctx_,
                                      headers=headers_)
                assert "<pre>" not in page  # no content before the reveal
                csrf = page.split('name="csrf" value="')[1].split('"')[0]
                status, body, headers = await ui(
                    fetch, f"{s.url}/messages/{s.delivered}/reveal", ctx_, headers=headers_,
                    data=f"csrf={csrf}".encode())
                assert status == 200 and "<pre>" in body and "Subject:" in body
                assert headers["Cache-Control"] == "no-store"
                reveals = [e.record["operator"] for e in s.h.gateway.journal.entries(
                    "<c1-delivered@medical33.legacy.example>") if e.stage == "console.reveal"]
                assert reveals[-1].startswith(who) and reveals[-1] != "certificate:"
        finally:
            await s.h.stop()

    asyncio.run(main())
