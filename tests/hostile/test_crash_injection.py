"""kill -9 of `passerelle serve` at random points of a mixed load, 20 seeded runs.

One spool, one real `passerelle serve` started again after each kill.  Each run sends a load
of letters and HPRIM reports both ways plus messages bound to be bounced or quarantined, and
kills the gateway at a random instant (seeded) — in the middle of that load, or of what
earlier runs left in flight (translations, deliveries, notices); the senders retry whatever
got no 250.  Then, for every message the senders saw accepted: exactly one fate — delivered,
bounced or quarantined, the one expected — and at the peers at most one copy without the
X-Passerelle-Possible-Duplicate flag (SMTP cannot rule out a copy taken in the instant between
the peer's 250 and our record of it, RFC 5321 §6.1: such a copy must say so)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import ssl
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from gateway.sim import SimLegacyHub, SimTrustOperator
from tests.conftest import FIXTURES, QUIET, legacy_client
from tests.daemon.harness import ADDR, TRUST
from tests.daemon.test_crash import Serve, free_port, serve_tables
from tests.hostile.support import OP_A, gpg, inline

RUNS = 20
SEED = 20261130
FLAG = b"X-Passerelle-Possible-Duplicate: "
HPRIM = sorted((FIXTURES / "hprim").glob("*.hpr"))


@dataclass(frozen=True)
class Item:
    """One message of the load: how it is sent and the fate it must end in."""

    msgid: str
    side: str  # the listener it is sent to
    sender: str
    rcpt: str
    data: bytes
    fate: str  # delivered | bounced | quarantined


@dataclass
class Tally:
    accepted: int = 0
    delivered: int = 0
    bounced: int = 0
    quarantined: int = 0
    flagged_copies: int = 0
    unflagged_duplicates: int = 0


def _load(world: World, run: int) -> list[Item]:
    gw = world.fingerprints["gateway"]
    out: list[Item] = []

    def legacy(user: str, n: int, body: bytes, fate: str = "delivered") -> None:
        msgid = f"<ci{run}-{n}@{ADDR[user].split('@')[1]}>"
        m = EmailMessage()
        m["From"], m["To"], m["Subject"], m["Message-ID"] = ADDR[user], OP_A, "Courrier", msgid
        m.set_content(body, maintype="text", subtype="plain")
        sealed = legacy_client(world, user).seal(m.as_bytes(), recipient=gw)
        out.append(Item(msgid, "legacy", ADDR[user], OP_A, sealed, fate))

    def trust(user: str, n: int, fate: str = "delivered", attachment: bytes | None = None,
              ) -> None:
        msgid = f"<ci{run}-{n}@hopital-a.mssante.example>"
        m = EmailMessage()
        m["From"], m["To"], m["Subject"], m["Message-ID"] = OP_A, TRUST[user], "Réponse", msgid
        m.set_content(f"Réponse numéro {n} : bien reçu.")
        if attachment is not None:
            m.add_attachment(attachment, maintype="application", subtype="zip",
                             filename="IHE_XDM.ZIP")
        out.append(Item(msgid, "trust", OP_A, TRUST[user], m.as_bytes(), fate))

    for n in range(4):
        legacy(("durand", "martin")[n % 2], n, f"Lettre {n} : résultats normaux.\n".encode())
    for n, path in enumerate(HPRIM[run % len(HPRIM):][:2], start=4):
        legacy("biolab", n, path.read_bytes().decode("utf-8").encode("cp850", "replace"))
    for n, user in enumerate(("dupont", "martin", "durand"), start=6):
        trust(user, n)
    # bound to be bounced: a letter its sender forgot to sign; a recipient the hub refuses
    msgid = f"<ci{run}-9@medical33.legacy.example>"
    out.append(Item(msgid, "legacy", ADDR["dupont"], OP_A, inline(
        ADDR["dupont"], OP_A, gpg(world, "dupont", "--armor", "--encrypt", "-r", gw,
                                  data=b"Lettre non signee"), msgid=msgid), "bounced"))
    trust("petit", 10, fate="bounced")
    # bound to quarantine: a report whose IHE_XDM.ZIP is not a package at all
    trust("durand", 11, fate="quarantined", attachment=b"PK\x03\x04 not a zip")
    return out


def _config(world: World, state: Path, hub: int, op: int) -> tuple[Path, int, int]:
    legacy_port = free_port()
    tables = serve_tables(legacy_port, {".legacy.example": f"127.0.0.1:{hub}",
                                        "hopital-a.mssante.example": f"127.0.0.1:{op}"},
                          retry=0.3, poll_interval=0.05)
    trust_port = int(str(tables["listen.trust"]["port"]))
    return world.write_config(state / "passerelle.toml", state, tables), legacy_port, trust_port


FINAL = ("delivered", "bounced", "quarantined")


def _fates(db: Path) -> dict[str, list[str]]:
    """Message-ID → the states of its recipients, notices left out (read-only)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT m.message_id, r.state FROM messages m JOIN recipients r ON "
                           "r.queue_id = m.queue_id WHERE m.direction != 'notice'").fetchall()
    out: dict[str, list[str]] = {}
    for msgid, state in rows:
        out.setdefault(msgid, []).append(state)
    return out


@dataclass
class Gateway:
    """One `passerelle serve` lineage: one spool, killed and started again run after run."""

    serve: Serve
    legacy_port: int
    trust_port: int
    tls: dict[str, ssl.SSLContext]
    db: Path


async def _one_run(world: World, gw: Gateway, run: int, rng: random.Random) -> list[Item]:
    """Send a mixed load and kill -9 the gateway at a random instant; start it again and let
    the senders retry what got no 250.  Returns the load (every item accepted)."""
    items = _load(world, run)
    rng.shuffle(items)
    kill_after = round(rng.uniform(0.0, 1.2), 3)
    restarted = asyncio.Event()
    accepted: set[str] = set()

    async def send(item: Item) -> None:
        port = gw.legacy_port if item.side == "legacy" else gw.trust_port
        while True:
            try:
                await aiosmtplib.send(item.data, sender=item.sender, recipients=[item.rcpt],
                                      hostname="127.0.0.1", port=port, start_tls=True,
                                      tls_context=gw.tls[item.side], timeout=10)
                accepted.add(item.msgid)
                return
            except (aiosmtplib.SMTPException, OSError):
                await restarted.wait()  # the gateway is down: wait for it, then send again

    async def sender(share: list[Item]) -> None:
        for item in share:
            await send(item)

    senders = [asyncio.create_task(sender(items[k::3])) for k in range(3)]
    await asyncio.sleep(kill_after)
    gw.serve.kill9()
    RECORD.append((run, kill_after, len(accepted)))
    await gw.serve.start()
    restarted.set()
    await asyncio.wait_for(asyncio.gather(*senders), 60)
    assert accepted == {i.msgid for i in items}
    return items


RECORD: list[tuple[int, float, int]] = []  # (run, kill after s, accepted before the kill)


def _tally(items: list[Item], fates: dict[str, list[str]],
           peers: tuple[SimLegacyHub, SimTrustOperator]) -> Tally:
    tally = Tally(accepted=len(items))
    copies: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    wanted = {i.msgid.encode(): i.msgid for i in items}
    for peer in peers:
        for r in peer.received:
            if r.mail_from in ("", "<>"):
                continue  # notices: counted with their originals' fates
            head = r.data[:4096]
            for key, msgid in wanted.items():
                if key in head:
                    (flagged if r.data.startswith(FLAG) else copies)[msgid] += 1
    for item in items:
        got = fates.get(item.msgid, [])
        assert got == [item.fate], f"{item.msgid}: {got}, expected {item.fate}"
        setattr(tally, item.fate, getattr(tally, item.fate) + 1)
        assert copies[item.msgid] <= 1, f"{item.msgid} delivered {copies[item.msgid]}× unflagged"
        if item.fate == "delivered":
            assert copies[item.msgid] + flagged[item.msgid] >= 1, f"{item.msgid} lost"
        else:
            assert copies[item.msgid] + flagged[item.msgid] == 0, f"{item.msgid} delivered"
    tally.flagged_copies = sum(flagged.values())
    tally.unflagged_duplicates = sum(n - 1 for n in copies.values() if n > 1)
    return tally


@QUIET
@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_and_flags_every_duplicate(
        world: World, tmp_path: Path) -> None:
    """20 runs on one spool: each run's load meets a kill, and so does whatever earlier runs
    left in flight (translations, deliveries, notices)."""
    rng = random.Random(SEED)
    RECORD.clear()

    async def main() -> list[Tally]:
        hub = SimLegacyHub(cert=world.cert("gateway-server"), key=world.key("gateway-server"))
        op = SimTrustOperator(cert=world.cert("hopital-a-server"),
                              key=world.key("hopital-a-server"), anchors=[world.ca_cert])
        await hub.start()
        await op.start()
        hub.behaviour.per_recipient[ADDR["petit"].lower()] = "permfail"
        cfg, legacy_port, trust_port = _config(world, tmp_path, hub.port, op.port)
        tls = {"legacy": ssl.create_default_context(cafile=str(world.ca_cert)),
               "trust": ssl.create_default_context(cafile=str(world.ca_cert))}
        tls["trust"].load_cert_chain(str(world.cert("hopital-a-client")),
                                     str(world.key("hopital-a-client")))
        gw = Gateway(Serve(cfg), legacy_port, trust_port, tls, tmp_path / "spool.db")
        await gw.serve.start()
        try:
            loads = [await _one_run(world, gw, run, rng) for run in range(RUNS)]
            expected = [i.msgid for load in loads for i in load]
            loop = asyncio.get_running_loop()
            end = loop.time() + 90
            while loop.time() < end:  # every accepted message reaches its fate
                fates = _fates(gw.db)
                if all(fates.get(m) and all(s in FINAL for s in fates[m]) for m in expected):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # a late duplicate would arrive now
        finally:
            gw.serve.stop()
            await hub.stop()
            await op.stop()
        fates = _fates(gw.db)
        return [_tally(load, fates, (hub, op)) for load in loads]

    tallies = asyncio.run(main())
    total = Tally()
    for t in tallies:
        for name in ("accepted", "delivered", "bounced", "quarantined", "flagged_copies",
                     "unflagged_duplicates"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
    print(f"crash injection, {RUNS} runs (seed {SEED}): accepted={total.accepted} "
          f"delivered={total.delivered} bounced={total.bounced} "
          f"quarantined={total.quarantined} flagged_copies={total.flagged_copies} "
          f"unflagged_duplicates={total.unflagged_duplicates}; (run, kill after s, accepted "
          f"before the kill): {RECORD}")
    assert total.accepted == total.delivered + total.bounced + total.quarantined
    assert total.unflagged_duplicates == 0
