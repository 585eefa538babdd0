"""Safe to start, configure and reload, with real `passerelle serve` processes: one daemon per
state directory, operating-system errors in one line with a sysexits code, typos refused by
`serve` and `config check` alike, one lookup order for the configuration, and imports that
tell the running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.errors import EX_CANTCREAT, EX_CONFIG, EX_NOPERM, EX_OSERR, EX_TEMPFAIL
from gateway.spool import SqliteSpool
from tests.conftest import ROOT
from tests.daemon.test_crash import Serve, free_port, serve_tables


def passerelle(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PASSERELLE_CONFIG"}
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd,
                          env={**environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def config_for(world: World, tmp_path: Path, name: str = "passerelle.toml",
               **tables: dict[str, object]) -> Path:
    base = serve_tables(free_port(), {})
    for key, values in tables.items():
        base.setdefault(key.replace("_", "."), {}).update(values)
    return world.write_config(tmp_path / name, tmp_path / "state", base)


@pytest.mark.slow
def test_a_second_serve_on_the_same_state_directory_is_refused_and_touches_nothing(
        world: World, tmp_path: Path) -> None:
    first = Serve(config_for(world, tmp_path))
    asyncio.run(first.start())
    try:
        assert first.proc is not None
        spill = tmp_path / "state" / "spill"
        spill.mkdir(exist_ok=True)
        marker = spill / "in-flight.eml"
        marker.write_bytes(b"a message the first daemon is handing to a worker")
        # same state directory, other ports: only the lock can stop it
        second = passerelle("serve", "--config", str(config_for(world, tmp_path, "b.toml")))
        assert second.returncode == EX_TEMPFAIL
        line = one_line(second)
        assert f"already running (pid {first.proc.pid})" in line and str(tmp_path) in line
        assert marker.exists(), "the refused start emptied the live daemon's spill folder"
        assert first.proc.poll() is None
    finally:
        first.stop()
    # the lock goes with the process: a new start after it works (kill -9 included)
    again = Serve(config_for(world, tmp_path))
    asyncio.run(again.start())
    again.kill9()
    after_kill = Serve(config_for(world, tmp_path))
    asyncio.run(after_kill.start())
    after_kill.stop()


def test_a_port_in_use_is_one_line_naming_it_exit_71(world: World, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = config_for(world, tmp_path, listen_legacy={"port": port})
        proc = passerelle("serve", "--config", str(cfg))
    assert proc.returncode == EX_OSERR
    line = one_line(proc)
    assert f"127.0.0.1 port {port}" in line and "already in use" in line


def test_an_output_folder_that_does_not_exist_is_exit_73(tmp_path: Path) -> None:
    hprim = ROOT / "fixtures" / "hprim" / "01-glycemie-crlf-12.hpr"
    cda = tmp_path / "cr.xml"
    made = passerelle("hprim", "to-cda", str(hprim))
    assert made.returncode == 0, made.stderr
    cda.write_text(made.stdout, "utf-8")
    target = tmp_path / "no" / "such" / "folder" / "IHE_XDM.ZIP"
    proc = passerelle("xdm", "pack", str(cda), "--out", str(target))
    assert proc.returncode == EX_CANTCREAT
    assert str(tmp_path / "no") in one_line(proc)


def test_a_path_under_proc_is_one_line(tmp_path: Path) -> None:
    hprim = ROOT / "fixtures" / "hprim" / "01-glycemie-crlf-12.hpr"
    made = passerelle("hprim", "to-cda", str(hprim))
    cda = tmp_path / "cr.xml"
    cda.write_text(made.stdout, "utf-8")
    proc = passerelle("xdm", "pack", str(cda), "--out", "/proc/self/passerelle.zip")
    assert proc.returncode in (EX_CANTCREAT, EX_NOPERM, EX_OSERR)
    assert "/proc/self/passerelle.zip" in one_line(proc)


def test_a_typo_is_refused_by_serve_and_config_check_alike(world: World, tmp_path: Path
                                                           ) -> None:
    cfg = config_for(world, tmp_path, retry={"lifetme": 600})
    with cfg.open("a", encoding="utf-8") as f:
        f.write("[worker]\nprocesses = 1\n")
    check = passerelle("config", "check", "--config", str(cfg))
    assert check.returncode == EX_CONFIG
    assert "ERROR retry.lifetme: unknown key in [retry]; did you mean 'lifetime'?" in check.stdout
    assert "ERROR worker: unknown table at the top level; did you mean 'workers'?" in check.stdout
    serve = passerelle("serve", "--config", str(cfg))
    assert serve.returncode == EX_CONFIG
    line = one_line(serve)
    assert "retry.lifetme" in line and "did you mean 'lifetime'" in line
    assert not (tmp_path / "state" / "spool.db").exists()


def test_every_command_finds_the_configuration_the_same_way(world: World, tmp_path: Path
                                                            ) -> None:
    cfg = config_for(world, tmp_path, name="elsewhere.toml")
    # $PASSERELLE_CONFIG, for config check as for the others
    by_env = passerelle("config", "check", env={"PASSERELLE_CONFIG": str(cfg)})
    assert by_env.returncode == 0 and f"{cfg}: ok" in by_env.stdout
    listed = passerelle("queue", "list", env={"PASSERELLE_CONFIG": str(cfg)})
    # that configuration's state directory: no spool there yet, and none made by a read
    assert listed.returncode == EX_CONFIG and "no spool at" in one_line(listed)
    assert str(tmp_path / "state" / "spool.db") in one_line(listed)
    SqliteSpool(tmp_path / "state" / "spool.db").close()  # as the daemon makes it
    listed = passerelle("queue", "list", env={"PASSERELLE_CONFIG": str(cfg)})
    assert listed.returncode == 0, listed.stderr
    # ./passerelle.toml when neither --config nor the variable is given
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(cfg, here / "passerelle.toml")
    found = passerelle("config", "check", cwd=here)
    assert found.returncode == 0 and "passerelle.toml: ok" in found.stdout
    # none at all: one line saying where it looked
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    missing = passerelle("queue", "list", cwd=nowhere)
    if not Path("/etc/passerelle/passerelle.toml").exists():
        assert missing.returncode == EX_CONFIG
        assert "PASSERELLE_CONFIG" in one_line(missing)


@pytest.mark.slow
def test_whitelist_import_tells_the_running_daemon(world: World, tmp_path: Path) -> None:
    store = tmp_path / "state" / "domains.xml"
    store.parent.mkdir(parents=True)
    shutil.copy(world.domain_list, store)
    cfg = config_for(world, tmp_path, trust={"domain_list": str(store)})
    without = passerelle("whitelist", "import", str(world.domain_list), "--config", str(cfg))
    assert without.returncode == 0 and "no daemon is running" in without.stdout
    serve = Serve(cfg)
    asyncio.run(serve.start())
    try:
        assert serve.proc is not None
        done = passerelle("whitelist", "import", str(world.domain_list), "--config", str(cfg))
        assert done.returncode == 0, done.stderr
        assert f"the running daemon (pid {serve.proc.pid}) was told to reload" in done.stdout
        log = next(tmp_path.glob("serve-*.log"))

        async def reloaded() -> None:
            for _ in range(200):
                if b"config.reloaded" in log.read_bytes():
                    return
                await asyncio.sleep(0.05)
            pytest.fail("the daemon did not reload: " + log.read_text()[-2000:])

        asyncio.run(reloaded())
    finally:
        serve.stop()


@pytest.mark.slow
def test_sigterm_mid_data_answers_421_and_keeps_nothing_half_received(
        world: World, tmp_path: Path) -> None:
    cfg = config_for(world, tmp_path)
    serve = Serve(cfg)
    asyncio.run(serve.start())
    assert serve.proc is not None
    port = int(re.search(r"\[listen\.legacy\]\nport = (\d+)", cfg.read_text())[1])  # type: ignore[index]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        f = s.makefile("rwb")

        def say(line: str) -> bytes:
            f.write(line.encode() + b"\r\n")
            f.flush()
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            return reply

        assert f.readline().startswith(b"220")
        assert say("EHLO hub.legacy.example").startswith(b"250")
        assert say("MAIL FROM:<paul.DURAND@medical13.legacy.example>").startswith(b"250")
        assert say("RCPT TO:<dr.x@hopital-a.mssante.example>").startswith(b"250")
        assert say("DATA").startswith(b"354")
        f.write(b"Subject: half\r\n\r\nthe first half of a letter\r\n")
        f.flush()
        serve.proc.send_signal(signal.SIGTERM)
        reply = f.readline()
        assert reply.startswith(b"421 4.3.2"), reply
        assert f.readline() == b""  # and the connection is closed
    assert serve.proc.wait(timeout=60) == 0
    listed = passerelle("queue", "list", "--config", str(cfg), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["messages"] == []


@pytest.mark.slow
def test_a_broken_address_book_on_reload_keeps_the_previous_one_in_daemon_and_workers(
        world: World, tmp_path: Path) -> None:
    """SIGHUP with a broken addresses.csv while mail flows: the reload is logged as failed,
    and a worker process started afterwards (here: the one there was, killed) is given the
    address book the daemon kept — mail goes on, nothing is deferred as "worker lost"."""
    import aiosmtplib

    from gateway.sim import SimTrustOperator
    from tests.daemon.test_crash import sealed
    from tests.daemon.test_workers import workers_of

    book = tmp_path / "addresses.csv"
    shutil.copy(world.addresses, book)

    async def main() -> None:
        op = SimTrustOperator(cert=world.cert("hopital-a-server"),
                              key=world.key("hopital-a-server"), anchors=[world.ca_cert])
        await op.start()
        port = free_port()
        tables = serve_tables(port, {"hopital-a.mssante.example": f"127.0.0.1:{op.port}"},
                              processes=1)
        tables["mappings"] = {"addresses": str(book)}
        cfg = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state", tables)
        serve = Serve(cfg)
        await serve.start()
        assert serve.proc is not None
        log = next(tmp_path.glob("serve-*.log"))

        async def send(n: int) -> None:
            await aiosmtplib.send(
                sealed(world, n), sender="paul.DURAND@medical13.legacy.example",
                recipients=["dr.x@hopital-a.mssante.example"], hostname="127.0.0.1", port=port,
                start_tls=True, timeout=30,
                tls_context=__import__("ssl").create_default_context(cafile=str(world.ca_cert)))

        try:
            await send(1)
            await op.wait_for(1, timeout=60)
            book.write_text("legacy_address,trust_address\nbroken,line,with,too,many\n")
            serve.proc.send_signal(signal.SIGHUP)
            for _ in range(400):
                if b"config.reload_failed" in log.read_bytes():
                    break
                await asyncio.sleep(0.05)
            events = [json.loads(line) for line in log.read_text().splitlines()
                      if line.startswith("{")]
            assert any(e.get("event") == "config.reload_failed" and e.get("stage") == "addresses"
                       for e in events)
            for pid in workers_of(serve.proc.pid):  # a worker lost: a new one starts
                os.kill(pid, signal.SIGKILL)
            await send(2)
            await op.wait_for(2, timeout=90)
            listed = passerelle("queue", "list", "--config", str(cfg), "--json")
            assert '"deferred"' not in listed.stdout, listed.stdout
        finally:
            serve.stop()
            await op.stop()

    asyncio.run(main())
