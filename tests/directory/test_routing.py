"""Directory resolution in the running gateway: RPPS aliases and HPRIM recipient lines."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from gateway.crypto.world import World
from gateway.directory.model import COLUMNS, HEADER
from gateway.directory.store import DirectoryStore
from gateway.mail import mime
from tests.conftest import legacy_client
from tests.daemon.harness import ADDR, Harness, start, until

BERNARD = "10000000011"  # two mailboxes: a practice (CAB) at clinique-b, a personal one (PER)
SIMON = "10000000022"  # one mailbox at clinique-b
NOBODY = "10000000099"  # not in the directory


def _row(kind: str, address: str, rpps: str, family: str, given: str) -> str:
    values = [""] * COLUMNS
    values[:5] = [kind, address, "8", rpps, f"8{rpps}"]
    values[9], values[10], values[29] = family, given, "33"
    return "|".join(values)


def _import(state: Path) -> None:
    src = state / "extraction.txt"
    src.write_text("\n".join([
        "|".join(HEADER),
        _row("CAB", "cabinet.bernard@clinique-b.mssante.example", BERNARD, "Bernard", "Anne"),
        _row("PER", "anne.bernard@hopital-a.mssante.example", BERNARD, "Bernard", "Anne"),
        _row("PER", "jean.simon@clinique-b.mssante.example", SIMON, "Simon", "Jean"),
    ]) + "\n", "utf-8")
    DirectoryStore(state / "directory.db").import_file(src)


async def send(h: Harness, user: str, rcpts: list[str], body: bytes, msgid: str) -> None:
    m = EmailMessage()
    m["From"] = ADDR[user]
    m["To"] = ", ".join(rcpts)
    m["Subject"] = "Courrier"
    m["Message-ID"] = msgid
    m.set_content(body, maintype="text", subtype="plain")
    data = legacy_client(h.world, user).seal(m.as_bytes(),
                                             recipient=h.world.fingerprints["gateway"])
    await aiosmtplib.send(data, sender=ADDR[user], recipients=rcpts, hostname="127.0.0.1",
                          port=h.legacy_port, start_tls=True, tls_context=h.tls(), timeout=30)


def run(world: World, tmp_path: Path, scenario: object) -> None:
    async def main() -> None:
        _import(tmp_path)
        h = await start(world, tmp_path)
        try:
            assert callable(scenario)
            await scenario(h)
        finally:
            await h.stop()
    asyncio.run(main())


def hprim_report(recipient_line: str) -> str:
    return "\r".join([
        "P0100", "MOREAU", "Agnès", "12 rue des Lilas", "", "33000 BORDEAUX", "01/02/1950",
        "", "24-000777", "05/04/2024", "BIOLAB     Laboratoire Biolab", recipient_line,
        "Compte rendu : glycémie à jeun", "****LAB****",
        "RES|GLYCEMIE à jeun|glyc33|N|0.91|g/l|0.74|1.06|N|F|5.05|mmol/l|4.11|5.88",
        "****FIN****", "****FINFICHIER****", ""])


def test_an_rpps_alias_reaches_the_preferred_mailbox(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        alias = f"rpps-{BERNARD}@legacy.mssante.example"
        await send(h, "dupont", [alias], b"Bonjour consoeur", "<dir-1@medical33.legacy.example>")
        got = (await h.op_a.wait_for(1))[0]  # PER before CAB: hopital-a, not clinique-b
        assert got.rcpt_tos == ("anne.bernard@hopital-a.mssante.example",)
        msg = email.message_from_bytes(got.data, policy=email.policy.default)
        assert msg["To"] == "Anne Bernard <anne.bernard@hopital-a.mssante.example>"
        await until(lambda: h.gateway.spool.counts() == {"delivered": 1})
        entry = h.gateway.spool.list()[0]
        assert entry.recipients[0].rcpt == alias  # the sender's own words stay on record
        assert h.op_b.received == []
    run(world, tmp_path, scenario)


def test_the_hprim_recipient_line_routes_a_lab_report(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        body = hprim_report(f"{SIMON} Dr Jean Simon").encode("cp850")
        await send(h, "biolab", ["hprim@legacy.mssante.example"], body,
                   "<dir-2@medical69.legacy.example>")
        got = (await h.op_b.wait_for(1))[0]
        assert got.rcpt_tos == ("jean.simon@clinique-b.mssante.example",)
        names = [p.filename for p in mime.leaves(mime.parse(got.data)) if p.filename]
        assert "IHE_XDM.ZIP" in names
    run(world, tmp_path, scenario)


def test_no_mailbox_for_the_rpps_bounces_in_the_senders_format(world: World,
                                                               tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await send(h, "petit", [f"rpps-{NOBODY}@legacy.mssante.example",
                                "jean.simon@clinique-b.mssante.example"],
                   "Données confidentielles".encode("cp1252"), "<dir-3@medical59.legacy.example>")
        delivered = (await h.op_b.wait_for(1))[0]  # the other recipient still gets it
        assert delivered.rcpt_tos == ("jean.simon@clinique-b.mssante.example",)
        notice = (await h.hub.wait_for(1))[0]
        assert notice.rcpt_tos == (ADDR["petit"],)
        opened = legacy_client(h.world, "petit").open(
            notice.data, expected_signer=h.world.fingerprints["gateway"])
        text = mime.leaves(mime.parse(opened.message))[0].data.decode("cp1252")
        assert "n'a pas pu être remis" in text
        assert f"rpps-{NOBODY}@legacy.mssante.example" in text
        assert f"aucune messagerie sécurisée connue pour le RPPS {NOBODY}" in text
        assert "confidentielles" not in text
        # the alias bounced; delivered: Dr Simon's copy and the notice
        await until(lambda: h.gateway.spool.counts() == {"delivered": 2, "bounced": 1})
    run(world, tmp_path, scenario)


def test_a_report_naming_no_rpps_is_bounced_not_guessed(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        body = hprim_report("DRSIMON    Dr Jean Simon").encode("cp850")
        await send(h, "biolab", ["hprim@legacy.mssante.example"], body,
                   "<dir-4@medical69.legacy.example>")
        notice = (await h.hub.wait_for(1))[0]
        opened = legacy_client(h.world, "biolab").open(
            notice.data, expected_signer=h.world.fingerprints["gateway"])
        text = mime.leaves(mime.parse(opened.message))[0].data.decode("cp850")
        assert "names no RPPS" in text
        await until(lambda: h.gateway.spool.counts() == {"delivered": 1, "bounced": 1})
        assert h.op_a.received == [] and h.op_b.received == []
    run(world, tmp_path, scenario)
