"""The spool cannot vanish under the daemon: a deleted or replaced database stops acceptance.

The gateway holds its spool's random id (written when the spool was created) and, for SQLite,
the device and inode of its file.  When ``spool.db`` is deleted or another database is put at
its path while the daemon runs, every accept's transaction sees it before its commit: the
sender gets ``451 4.3.0`` (and tries again later), never a ``250`` for mail written where
nobody will read it; ``/readyz`` fails with the reason and ``spool.identity_lost`` is logged
once.  The command line's reads never create a spool where there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import log as ops_logging
from gateway.crypto.world import World
from gateway.spool import SqliteSpool, open_spool
from tests.daemon.harness import ADDR, TRUST, Harness, until
from tests.hostile.support import OP_A, arrived, letter, run, sealed, transaction


@contextlib.contextmanager
def json_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    ops_logging.configure("info", stream=buffer)
    try:
        yield buffer
    finally:
        ops_logging.configure("info")


def events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, buffer.getvalue().splitlines()) if r.get("event") == name]


def readyz(h: Harness) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(h.gateway.ops.url + "/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def both_sides(h: Harness, n: str) -> tuple[str, str]:
    """One letter on each listener: their DATA replies."""
    trust = letter(OP_A, TRUST["dupont"], "Bonjour", msgid=f"<id-{n}@hopital-a.mssante.example>")
    t = await transaction(h, "trust", OP_A, [TRUST["dupont"]], trust.as_bytes(),
                          client="hopital-a-client")
    body = letter(ADDR["martin"], OP_A, b"Bonjour", msgid=f"<id-{n}@medical75.legacy.example>")
    legacy = sealed(h.world, "martin", body.as_bytes())
    s = await transaction(h, "legacy", ADDR["martin"], [OP_A], legacy)
    return t.data, s.data


def _replace_with_another_spool(path: Path) -> None:
    """Another passerelle spool (a backup of another instance, a fresh one) moved over,
    as a restore by hand does: the old database's files gone, the other one's in place."""
    other = path.with_name("other.db")
    SqliteSpool(other).close()
    for old in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        old.unlink(missing_ok=True)
    os.replace(other, path)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_spool_deleted_or_replaced_under_the_daemon_stops_acceptance(
        world: World, tmp_path: Path, how: str) -> None:
    async def scenario(h: Harness) -> None:
        path = h.gateway.spool.path
        trust, legacy = await both_sides(h, "before")
        assert trust.startswith("250 ") and legacy.startswith("250 ")
        await arrived(h.op_a, "<id-before@medical75.legacy.example>")
        assert (await asyncio.to_thread(readyz, h))[0] == 200
        if how == "deleted":
            path.unlink()
        else:
            _replace_with_another_spool(path)
        replies = await both_sides(h, "after")
        assert all(r.startswith("451 4.3.0") for r in replies), replies
        code, body = await asyncio.to_thread(readyz, h)
        assert code == 503 and f"spool {path}" in body and how in body, body
        await until(lambda: events(buffer, "spool.identity_lost"), 10)
        assert len(events(buffer, "spool.identity_lost")) == 1
        # nothing of the refused letters anywhere: not in the file now at the path
        if how == "replaced":
            assert SqliteSpool(path, create=False).counts() == {}
        else:
            assert not path.exists()  # and no empty spool made in its place

    with json_log() as buffer:
        run(world, tmp_path, scenario, check_serving=False)


def test_a_pg_spool_whose_identity_changed_stops_acceptance(world: World, tmp_path: Path,
                                                             pg_url: str) -> None:
    """PostgreSQL: the spool's tables dropped and made again by another instance (a restore,
    a wrong database): the spool id differs and nothing is accepted."""
    async def scenario(h: Harness) -> None:
        trust, legacy = await both_sides(h, "pg-before")
        assert trust.startswith("250 ") and legacy.startswith("250 ")
        with contextlib.closing(open_spool(pg_url)) as other, other._tx() as db:
            db.execute("UPDATE spool_identity SET spool_id = 'restored-elsewhere'")
        replies = await both_sides(h, "pg-after")
        assert all(r.startswith("451 4.3.0") for r in replies), replies
        code, body = await asyncio.to_thread(readyz, h)
        assert code == 503 and "spool id differs" in body, body

    run(world, tmp_path, scenario, check_serving=False, overrides={"spool": {"url": pg_url}})


READ_ONLY = [["queue", "list"], ["queue", "summary"], ["queue", "show", "0123456789ABCDEF0123"],
             ["quarantine", "list"], ["quarantine", "summary"], ["trace", "verify"],
             ["trace", "show", "<x@example>"], ["queue", "retry", "--all", "--yes"]]


@pytest.mark.parametrize("command", READ_ONLY, ids=[" ".join(c[:2]) for c in READ_ONLY])
def test_commands_never_create_a_spool(world: World, tmp_path: Path,
                                       command: list[str]) -> None:
    state = tmp_path / "state"
    config = world.write_config(tmp_path / "passerelle.toml", state, {})
    done = subprocess.run([sys.executable, "-m", "gateway", *command, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ("no spool at" in lines[0] or "no journal at" in lines[0]), lines
    assert "Traceback" not in done.stderr
    assert not (state / "spool.db").exists() and not state.exists()


def test_a_file_that_is_no_spool_is_not_made_one(world: World, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with contextlib.closing(sqlite3.connect(state / "spool.db")) as db:
        db.execute("CREATE TABLE notes (x)")
    config = world.write_config(tmp_path / "passerelle.toml", state, {})
    done = subprocess.run([sys.executable, "-m", "gateway", "queue", "list", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 78 and "not a passerelle spool" in done.stderr, done.stderr
    with contextlib.closing(sqlite3.connect(state / "spool.db")) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}
