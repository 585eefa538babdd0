"""The load benchmark runs end to end (N = 20): real gateway, real gpg, real TLS.

A smoke run so that the harness cannot rot; it checks that the report is complete and sane,
never how fast anything was (a benchmark measures, a test does not assert wall-clock limits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import short_dir
from tests.conftest import QUIET, require_library, require_tool

ROOT = Path(__file__).resolve().parents[2]



@QUIET
@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["openpgp", "sop", "rnp"])
def test_load_bench_smoke(tmp_path: Path, adapter: str) -> None:
    """With the gpg legacy adapter and the memory check; with the sop and rnp ones, without."""
    if adapter == "sop":
        require_tool("sqop")
    if adapter == "rnp":
        require_library("rnp")
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--n", "20", "--n-reverse", "10",
         "--concurrency", "4", "--workers", "2", "--big-mb", "2" if adapter == "openpgp" else "0",
         "--legacy-adapter", adapter, "--quiet",
         "--json", str(out), "--workdir", str(short_dir())],
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text("utf-8"))
    assert "gateway legacy" in proc.stdout  # the printed table

    for direction, n in (("legacy_to_trust", 20), ("trust_to_legacy", 10)):
        phase = report["gateway"][direction]
        assert phase["accepted"] == n and phase["forwarded"] == n, phase
        assert phase["forwarded_per_s"] > 0 and phase["accepted_per_s"] > 0
        for key in ("accept_ms", "forward_ms"):
            d = phase[key]
            assert 0 < d["p50"] <= d["p95"] <= d["p99"] <= d["max"]
        assert phase["cpu_ms_per_msg"]["total"] > 0
        assert phase["rss_peak_mb"] > 0 and phase["spool_mb"] > 0
        floor = report["transport_floor"][direction]
        assert floor["forwarded"] == n and floor["forwarded_per_s"] > 0
        assert report["crypto_floor"][direction]["per_s"] > 0
        assert report["ratios"][direction]["of_crypto_floor"] > 0
        assert report["ratios"][direction]["of_transport_floor"] > 0
        # the physical floor, measured in the same run, and the gateway's CPU against it
        assert report["physical_floor"][direction]["ms_per_msg"] > 0
        x = phase["cpu_x_physical_floor"]
        assert x["total"] >= x["daemon_and_workers"] > 0
        assert report["ratios"][direction]["cpu_x_physical_floor"] == x["total"]
    half = report["gateway"]["legacy_to_trust_half_load"]
    assert half["forwarded"] == half["n"] == 10 and half["offered_per_s"] > 0
    assert half["cpu_x_physical_floor"]["total"] > 0
    assert "CPU÷floor" in proc.stdout and "physical floor" in proc.stdout
    assert all(us > 0 for us in report["physical_floor"]["op_us"].values())
    # the phases began once the gateway's translation worker processes were ready
    (start,) = report["gateway_start"]
    assert start["worker_processes"] == min(4, os.cpu_count() or 1)  # the gateway's default
    assert start["workers_ready_s"] >= start["serving_s"] > 0
    assert report["message_mix"]["legacy"] == {"letter": 10, "hprim": 10}
    assert report["legacy_adapter"] == adapter
    if adapter != "openpgp":
        assert "memory" not in report
        return
    mem = report["memory"]
    assert mem["forwarded"] and mem["message_bytes"] > 2_000_000
    assert mem["hwm_after_mb"] >= mem["rss_before_mb"] > 0
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["gpg"] and machine["python"]
