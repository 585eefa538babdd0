"""Mail both ways through the running daemon, then every file of its state directory (and
the PostgreSQL tables) searched for the letters' text: only ciphertext before retention runs,
nothing at all once it has."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from gateway.atrest import Keyring
from gateway.crypto.world import World
from tests.daemon.harness import ADDR, TRUST, Overrides, start, until

LETTER = (b"Cher confrere,\r\nMme Pelissier presente une toux persistante depuis trois "
          b"semaines.\r\nBien a vous.\r\n")
REPLY = "Merci, Mme Pelissier sera vue en consultation de pneumologie jeudi.\n"
FRAGMENTS = (b"toux persistante", b"Mme Pelissier", b"consultation de pneumologie")


def state_files(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file())


def pg_tables(url: str) -> bytes:
    out = []
    with psycopg.connect(url) as db:
        for table in ("messages", "bodies", "outputs", "recipients", "accepted", "journal"):
            with db.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                out += [bytes(chunk) for chunk in copy]
    return b"".join(out)


def clear_text_in(data: bytes) -> list[bytes]:
    return [f for f in FRAGMENTS if f in data or f.hex().encode() in data]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_mail_both_ways_is_stored_sealed_then_purged(world: World, tmp_path: Path,
                                                      backend: str,
                                                      request: pytest.FixtureRequest) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    Keyring.generate().save(tmp_path / "keyring.json")
    state = tmp_path / "state"
    state.mkdir()
    overrides: Overrides = {"keys": {"file": str(tmp_path / "keyring.json")},
                            "retention": {"interval": 0.2}}
    url = ""
    if backend == "postgresql":
        url = str(request.getfixturevalue("pg_url"))
        overrides["spool"] = {"url": url}

    def stored() -> bytes:
        return state_files(state) + (pg_tables(url) if url else b"")

    async def main() -> None:
        h = await start(world, state, overrides=overrides, clock=clock)
        try:
            await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example", LETTER,
                                msgid="<rest-1@medical33.legacy.example>")
            got = await h.op_a.wait_for(1)
            await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["dupont"], REPLY,
                               msgid="<rest-2@hopital-a.mssante.example>")
            back = await h.hub.wait_for(1)
            assert back[0].rcpt_tos == (ADDR["dupont"],)
            # the search can fail: the trust peer got the letter with this text as it is
            assert b"toux persistante" in got[0].data
            spool = h.gateway.spool
            await until(lambda: spool.counts() == {"delivered": 2}, timeout=30)
            before = stored()
            assert clear_text_in(before) == []
            assert b"PSL1" in before or b"50534c31" in before  # the sealed records

            offset[0] = 8 * 86400.0  # a week and a day later: retention's purge runs
            await until(lambda: spool.unsealed() == 0 and not _has_content(spool), timeout=30)
            await asyncio.sleep(0.5)
            after = stored()
            assert clear_text_in(after) == []
            assert b"PSL1" not in after and b"50534c31" not in after  # the ciphertext too
            steps = [e.stage for e in h.gateway.journal.entries(
                "<rest-1@medical33.legacy.example>")]
            assert steps[-1] == "purged"
            assert spool.counts() == {"delivered": 2}  # what happened is still known
        finally:
            await h.stop()

    asyncio.run(main())


def _has_content(spool: object) -> bool:
    with spool._read() as db:  # type: ignore[attr-defined]
        return db.execute("SELECT COUNT(*) FROM bodies").fetchone()[0] + db.execute(
            "SELECT COUNT(*) FROM outputs").fetchone()[0] > 0  # type: ignore[no-any-return]
