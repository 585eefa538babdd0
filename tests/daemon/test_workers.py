"""`passerelle serve` with translation in worker processes (the default on a machine with
several cores): the workers are up before the first message, a worker that dies is replaced
without losing the message, and none outlives the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from tests.bench import short_dir
from tests.conftest import require_library, require_tool
from tests.daemon.harness import ADDR
from tests.daemon.test_crash import operator_and_serve, sealed

PROCESSES = 2


def workers_of(pid: int) -> set[int]:
    """The translation worker processes of daemon ``pid`` (not its resource tracker)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            out.add(int(entry.name))
    return out


async def until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_worker_processes_start_with_the_daemon_and_a_dead_one_is_replaced(
        world: World, tmp_path: Path) -> None:
    async def main() -> None:
        op, serve, port = await operator_and_serve(world, tmp_path, processes=PROCESSES)
        assert serve.proc is not None
        tls = ssl.create_default_context(cafile=str(world.ca_cert))

        async def send(n: int) -> None:
            await aiosmtplib.send(sealed(world, n), sender=ADDR["durand"],
                                  recipients=["dr.x@hopital-a.mssante.example"],
                                  hostname="127.0.0.1", port=port, start_tls=True,
                                  tls_context=tls, timeout=10)

        try:
            # up before any message: the first one does not wait for them to start
            await until(lambda: len(workers_of(serve.proc.pid)) == PROCESSES)  # type: ignore[union-attr]
            first = workers_of(serve.proc.pid)
            await send(1)
            await op.wait_for(1, timeout=30)
            assert workers_of(serve.proc.pid) == first  # the same ones did the work

            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            await until(lambda: victim not in workers_of(serve.proc.pid))  # type: ignore[union-attr]
            await send(2)
            await op.wait_for(2, timeout=60)  # translated again by new workers
            await until(lambda: len(workers_of(serve.proc.pid)) == PROCESSES)  # type: ignore[union-attr]
            assert sorted(op.message_ids()) == ["<crash-1@medical13.legacy.example>",
                                                "<crash-2@medical13.legacy.example>"]
            workers = workers_of(serve.proc.pid)
        finally:
            serve.stop()
            await op.stop()
        for pid in workers:  # none outlives the daemon
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(
                f"/proc/{pid}/status").read_bytes().lower()

    asyncio.run(main())


@pytest.mark.slow
def test_workers_of_a_daemon_killed_while_they_start_do_not_outlive_it(
        world: World, tmp_path: Path) -> None:
    """kill -9 of the daemon as soon as its worker processes exist, while they are still
    importing: every one of them exits (before, each took init for the daemon and stayed for
    ever — hundreds piled up under repeated kill -9 tests)."""
    from tests.daemon.test_crash import Serve, free_port, serve_tables

    async def main() -> set[int]:
        cfg = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state", serve_tables(
            free_port(), {}, processes=PROCESSES))
        serve = Serve(cfg)
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            serve.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve",
                                           "--config", str(cfg)], stdout=out,
                                          stderr=subprocess.STDOUT)
        pid = serve.proc.pid
        await until(lambda: len(workers_of(pid)) == PROCESSES, timeout=60)
        started = workers_of(pid)
        serve.kill9()  # the workers are still importing the translation stack
        await until(lambda: not any(_alive(w) for w in started), timeout=20)
        return started

    assert len(asyncio.run(main())) == PROCESSES


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["sop", "rnp"])
def test_a_workers_sop_fallback_is_logged_in_the_daemons_stream(world: World,
                                                                tmp_path: Path,
                                                                adapter: str) -> None:
    """With legacy.adapter = "sop" (or "rnp") and worker processes: a part sqop (librnp)
    refuses (signed with SHA-1) is opened by gpg and delivered, and the worker's event reaches
    the daemon's log, redacted like the daemon's own (ids and words, nothing of the letter)."""
    if adapter == "sop":
        require_tool("sqop")
    else:
        require_library("rnp")
    from email.message import EmailMessage

    from gateway.sim import SimTrustOperator
    from tests.daemon.test_crash import Serve, free_port, serve_tables

    armored = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["durand"], "--batch", "--trust-model", "always",
         "--armor", "--digest-algo", "SHA1", "--sign", "--encrypt", "-r",
         world.fingerprints["gateway"]], input="Lettre signée en SHA-1.\n".encode(),
        capture_output=True, check=True).stdout
    m = EmailMessage()
    m["From"] = ADDR["durand"]
    m["To"] = "dr.x@hopital-a.mssante.example"
    m["Subject"] = "Résultats"
    m["Message-ID"] = "<sha1-1@medical13.legacy.example>"
    m.set_content(armored.decode("ascii"))

    async def main() -> None:
        op = SimTrustOperator(cert=world.cert("hopital-a-server"),
                              key=world.key("hopital-a-server"), anchors=[world.ca_cert])
        await op.start()
        port = free_port()
        tables = serve_tables(port, {"hopital-a.mssante.example": f"127.0.0.1:{op.port}"},
                              processes=PROCESSES)
        cfg = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state",
                                 {**tables, "legacy": {"adapter": adapter}})
        serve = Serve(cfg)
        await serve.start()
        try:
            await aiosmtplib.send(
                m.as_bytes(), sender=ADDR["durand"], recipients=["dr.x@hopital-a.mssante.example"],
                hostname="127.0.0.1", port=port, start_tls=True,
                tls_context=ssl.create_default_context(cafile=str(world.ca_cert)), timeout=10)
            await op.wait_for(1, timeout=30)
        finally:
            serve.stop()
            await op.stop()

    asyncio.run(main())
    (log,) = tmp_path.glob("serve-*.log")
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    refused = [e for e in events if e.get("event") == f"legacy.{adapter}_not_accepted"]
    why = {"exit_code": 3} if adapter == "sop" else {"reason": "signature_not_good"}
    assert refused == [{"logger": f"passerelle.crypto.{adapter}", "stage": "open", **why,
                        "level": "info", "timestamp": refused[0]["timestamp"],
                        "event": f"legacy.{adapter}_not_accepted"}]
    assert "SHA-1" not in log.read_text() and "Résultats" not in log.read_text()


@pytest.mark.slow
def test_the_demo_reaches_every_outcome_with_worker_processes_and_the_default_adapter(
        ) -> None:
    """`passerelle demo` (worker processes, legacy.adapter left to its default: rnp here):
    its bounce is a notice sealed for the legacy sender in a worker process — sealing there
    once failed with the rnp adapter, which cannot be sent to a worker."""
    # a short directory: the GnuPG homes' agent sockets must fit in 108 bytes, which an xdist
    # worker's temporary path (…/popen-gwN/test_the_demo_…/world/gnupg/…) exceeds
    demo = subprocess.run([sys.executable, "-m", "gateway", "demo", "--dir", str(short_dir())],
                          capture_output=True, text=True, timeout=300, check=False)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "ok: bounced, notice sealed to sender" in demo.stdout
    assert "all messages reached the outcome they should" in demo.stdout
