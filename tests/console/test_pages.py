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
from tests.console.scene import CHROMEDRIVER, browser, scene
from tests.console.test_browser import click, login, ui
from tests.daemon.harness import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMEDRIVER) is None,
                       reason="chromium-driver not installed (.ci/run installs it)"),
]


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


def test_directory_lookup_and_list_of_domains(world: World, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    async def main() -> None:
        state = tmp_path / "state"
        state.mkdir()
        s = await scene(world, state)
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
                assert "Directory unavailable" in text and "Traceback" not in d.page_source
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
