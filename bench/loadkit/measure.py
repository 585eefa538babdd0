"""What the load bench reads from the kernel: CPU and memory of processes and of the
machine (``/proc``), percentiles, and a description of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HZ = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own CPU seconds, reaped children's CPU seconds) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the command: state(3) ... utime(14) stime(15) cutime(16) cstime(17)
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / HZ, (cutime + cstime) / HZ


def tree_cpu(pid: int) -> tuple[float, float]:
    """proc_cpu summed over a process and its live descendants (the gateway's translation
    worker processes): (own CPU seconds, reaped children's CPU seconds — gpg)."""
    own = children = 0.0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            o, c = proc_cpu(p)
            own += o
            children += c
    return own, children


def tree_mem(pid: int) -> dict[str, int]:
    """proc_mem summed over a process and its live descendants (the translation workers):
    the sum of each process's peak — an upper bound of the tree's peak."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, KeyError):
            m = proc_mem(p)
            out["VmRSS"] += m["VmRSS"]
            out["VmHWM"] += m["VmHWM"]
    return out


def tree_pids(pid: int) -> set[int]:
    """A process and its live descendants."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry.name)] = int(stat[1])
    tree, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        todo.extend(kids)
    return tree


def worker_processes(pid: int) -> dict[int, tuple[str, int]]:
    """The translation worker processes of the gateway ``pid`` — its children started by
    multiprocessing's spawn (``spawn_main`` in their command line; the resource tracker,
    also a child, is not one) — each with its scheduler state (R running or runnable, S
    asleep, D in the disk…) and its CPU ticks so far."""
    out: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or b"spawn_main" not in (entry / "cmdline").read_bytes():
                continue
            out[int(entry.name)] = (fields[0], int(fields[11]) + int(fields[12]))
    return out


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value, _ = line.split()
                out[key.rstrip(":")] = int(value) * 1024
    return out


def agent_cpu(home: Path) -> float:
    """CPU seconds of the gpg-agent serving ``home`` (a daemon: not a reaped child)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"gpg-agent") and str(home).encode() in cmd:
            with contextlib.suppress(OSError):
                total += proc_cpu(int(entry.name))[0]
    return total


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (own + reaped children: the
    postmaster inherits the backends that exit), whoever they serve."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if (entry / "comm").read_text().strip() == "postgres":
                total += sum(proc_cpu(int(entry.name)))
    return total


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest* already in user)
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / HZ


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (ms), 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return round(ordered[rank] * 1000, 1)


def dist(values: Sequence[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "max": pct(values, 100)}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                     "")
    gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True).stdout
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "gpg": gpg.split()[2], "libgcrypt": gpg.splitlines()[1].split()[-1],
            "kernel": platform.release()}
