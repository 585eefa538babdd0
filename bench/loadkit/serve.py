"""The gateway under test: `passerelle serve` processes (`Serve`, `Fleet`), their spools
(`PgSchemas` for PostgreSQL), and py-spy sampling them (`Spy`)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gateway import config
from gateway.crypto.world import World
from loadkit import ROOT
from loadkit.measure import agent_cpu, proc_cpu, tree_cpu, tree_mem, worker_processes


class PgSchemas:
    """Fresh schemas in the database of ``url``, one per spool, dropped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []
        self.tag = f"bench_{os.getpid()}_{random.randrange(16**6):06x}"

    def new(self, name: str) -> str:
        """Create schema ``<tag>_<name>``; the spool URL whose search_path is that schema
        (any ``options`` of the given URL is replaced)."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        import psycopg

        schema = f"{self.tag}_{name}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as db:
            db.execute(f"CREATE SCHEMA {schema}")
        self.made.append(schema)
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
        query.append(("options", f"-csearch_path={schema}"))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=10) as db:
            row = db.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else ""

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as db:
            for schema in self.made:
                db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.made.clear()


def pg_schema_bytes(url: str) -> int:
    """Tables, indexes and TOAST of the schema the spool URL points to."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as db:
        row = db.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')").fetchone()
    return int(row[0]) if row else 0


def free_port() -> int:
    """A port from the OS for the gateway's listener, kept from any other ``bind(0)`` while
    the gateway starts (the test suite runs benchmarks beside other servers): a connection to
    it closed from the server side leaves it in TIME_WAIT, which only a server that sets
    SO_REUSEADDR (the daemon's asyncio listeners) may bind."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = int(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: TIME_WAIT is on its side
            client.recv(1)
    return port


class Serve:
    """`python -m gateway serve` on a configuration derived from the world's."""

    def __init__(self, world: World, state: Path, sink_ports: dict[str, int], *, workers: int,
                 spool_url: str = "", processes: int = 0, adapter: str = "auto") -> None:
        self.world = world
        self.state = state
        self.spool_url = spool_url
        self.legacy_port = free_port()
        self.trust_port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        tables: dict[str, dict[str, object]] = {
            "ops": {"listen": "127.0.0.1:0"},
            "delivery": {"mx_lookup": False},
            "listen.legacy": {"port": self.legacy_port},
            "listen.trust": {"port": self.trust_port},
            "retry": {"initial": 1, "factor": 1, "max": 1},
            "workers": {"translate": workers, "delivery_timeout": 30,
                        **({"processes": processes} if processes else {})},
            "routes": {".legacy.example": f"127.0.0.1:{sink_ports['legacy']}",
                       "hopital-a.mssante.example": f"127.0.0.1:{sink_ports['trust']}"},
            "legacy": {"adapter": adapter},
        }
        if spool_url:
            tables["spool"] = {"url": spool_url}
        self.cfg = world.write_config(state.parent / f"{state.name}.toml", state, tables)
        self.log = state.parent / f"{state.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup: dict[str, float] = {}
        """Seconds from start to "serving on" and to its workers ready; worker processes."""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        """Start the gateway; return once it serves and its translation workers are ready."""
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(self.cfg)]
        t0 = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        for _ in range(1200):
            if b"serving on" in self.log.read_bytes():
                break
            self._check_alive()
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("passerelle serve did not start")
        self.startup["serving_s"] = round(time.monotonic() - t0, 2)
        self.startup["worker_processes"] = await self._workers_ready()
        self.startup["workers_ready_s"] = round(time.monotonic() - t0, 2)

    async def _workers_ready(self, timeout: float = 120) -> int:
        """Wait until the translation worker processes have finished starting; their number.

        The daemon says "serving on" while its worker processes are still importing the
        translation stack and building their translators (about a second each, more on a busy
        machine): a phase begun then would count that work as the messages' and wait for it.
        Ready: as many worker processes as the configuration asks (``[workers] processes``; 0
        — translation on the daemon's threads — is ready at once), each asleep (waiting for
        work, state S) and not one CPU tick further for 150 ms (four looks 50 ms apart).  A worker
        held back by a busy machine is runnable (R), not asleep: it does not pass for ready."""
        expected = config.load(self.cfg).daemon.processes
        end = time.monotonic() + timeout
        calm = 0
        last: dict[int, tuple[str, int]] = {}
        while expected and calm < 3:
            await asyncio.sleep(0.05)
            self._check_alive()
            if time.monotonic() > end:
                raise TimeoutError(f"the gateway's {expected} translation worker processes "
                                   f"were not ready after {timeout:.0f} s")
            now = worker_processes(self.pid)
            idle = (len(now) == expected and now == last
                    and all(state == "S" for state, _ in now.values()))
            calm, last = (calm + 1 if idle else 0), now
        return expected

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"passerelle serve exited:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_peak(self) -> int:
        return tree_mem(self.pid)["VmHWM"]

    def spool_bytes(self) -> int:
        if self.spool_url:
            return pg_schema_bytes(self.spool_url)
        return sum(p.stat().st_size for p in self.state.glob("spool.db*"))

    def cpu(self) -> dict[str, float]:
        own, children = tree_cpu(self.pid)  # with its translation worker processes
        return {"gateway": own, "gpg_children": children,
                "gpg_agent": agent_cpu(self.world.gnupg_gateway)}

    def daemon_cpu(self) -> float:
        """The daemon process's own CPU seconds (not its translation workers')."""
        return proc_cpu(self.pid)[0]


class Fleet:
    """N `passerelle serve` on one spool (N > 1: a PostgreSQL spool), each with its own
    ports and state directory; one gpg home, so one gpg-agent for all of them."""

    def __init__(self, world: World, state: Path, sink_ports: dict[str, int], *, workers: int,
                 instances: int = 1, spool_url: str = "", processes: int = 0,
                 adapter: str = "auto") -> None:
        if instances > 1 and not spool_url:
            raise ValueError("several instances need a PostgreSQL spool (--spool-url)")
        self.members = [Serve(world, state if instances == 1 else
                              state.with_name(f"{state.name}-{k}"), sink_ports,
                              workers=workers, spool_url=spool_url, processes=processes,
                              adapter=adapter)
                        for k in range(instances)]
        self.world = world

    @property
    def pid(self) -> int:
        return self.members[0].pid

    @property
    def legacy_ports(self) -> list[int]:
        return [m.legacy_port for m in self.members]

    @property
    def trust_ports(self) -> list[int]:
        return [m.trust_port for m in self.members]

    async def start(self) -> None:
        try:
            for m in self.members:  # one after the other: each migrates the schema at start
                await m.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            m.stop()

    def spool_bytes(self) -> int:
        return self.members[0].spool_bytes()

    def startup(self) -> list[dict[str, float]]:
        """Each instance's start: seconds to "serving on" and to its workers ready."""
        return [m.startup for m in self.members]

    def rss_peak(self) -> int:
        return max(tree_mem(m.pid)["VmHWM"] for m in self.members)

    def cpu(self) -> dict[str, float]:
        """Summed over the instances and their reaped gpg children; the shared agent once."""
        own = children = 0.0
        for m in self.members:
            o, c = tree_cpu(m.pid)
            own += o
            children += c
        return {"gateway": own, "gpg_children": children,
                "gpg_agent": agent_cpu(self.world.gnupg_gateway)}

    def daemon_cpu(self) -> float:
        """The daemon processes' own CPU seconds (not their translation workers')."""
        return sum(proc_cpu(m.pid)[0] for m in self.members)

    def cpu_each(self) -> list[float]:
        return [sum(tree_cpu(m.pid)) for m in self.members]


class Spy:
    """py-spy sampling every thread of the gateway and its worker processes (collapsed
    stacks), summarised per process.  Only samples of a thread holding the GIL are kept
    (``--gil``): Python at work, not a thread waiting on a lock, a socket, a child or the
    disk (which py-spy's own idle test counted as busy).  C code that lets the GIL go while
    it works — SQLite's I/O, zlib on large buffers — is left out, as is libuv's TLS."""

    def __init__(self, pid: int, out: Path) -> None:
        exe = Path(sys.executable).with_name("py-spy")
        self.out = out
        self.proc = subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record",
                                      "--pid", str(pid), "--format", "raw", "--rate", "100",
                                      "--gil", "--subprocesses", "-o", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, top: int = 25) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        inclusive: dict[str, dict[str, int]] = {}
        own: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for line in self.out.read_text("utf-8", "replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            parts = stack.split(";")
            # first the processes ("process N:"<command line>""): the daemon, then the
            # translation worker process the sample is from, if any; then the frames
            procs = [p for p in parts if p.startswith("process ")]
            who = "workers" if len(procs) > 1 else "daemon"
            frames = [_frame(f) for f in parts[len(procs):]]
            totals[who] = totals.get(who, 0) + n
            for f in set(frames):
                inclusive.setdefault(who, {})[f] = inclusive.get(who, {}).get(f, 0) + n
            if frames:
                own.setdefault(who, {})[frames[-1]] = own.get(who, {}).get(frames[-1], 0) + n

        def share(d: dict[str, int], total: int) -> dict[str, float]:
            best = sorted(d.items(), key=lambda kv: -kv[1])[:top]
            return {k: round(v / max(1, total), 3) for k, v in best}

        return {"samples": totals, "file": str(self.out), "holding_gil_only": True,
                "inclusive": {w: share(inclusive.get(w, {}), t) for w, t in totals.items()},
                "self": {w: share(own.get(w, {}), t) for w, t in totals.items()}}


def _frame(text: str) -> str:
    """'fn (path/to/file.py:12)' → 'fn (file.py)'."""
    name, _, where = text.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name
