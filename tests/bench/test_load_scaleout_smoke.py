"""`bench/load.py --scaleout` runs end to end (N = 20): one gateway on SQLite, one on
PostgreSQL, two on one PostgreSQL database, real gpg and TLS.

A smoke run so that the several-instances harness cannot rot; like the other bench smoke test
it checks that the report is complete and sane, never how fast anything was.  It needs the
test PostgreSQL (`pg_url`: skipped without it, except in CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.bench import short_dir
from tests.conftest import QUIET

ROOT = Path(__file__).resolve().parents[2]



@QUIET
@pytest.mark.slow
def test_load_bench_scaleout_smoke(tmp_path: Path, pg_url: str) -> None:
    out = tmp_path / "scaleout.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--scaleout", "--spool-url", pg_url,
         "--instances", "2", "--n", "20", "--concurrency", "4", "--workers", "2", "--quiet",
         "--json", str(out), "--workdir", str(short_dir())],
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text("utf-8"))
    assert "2 × PostgreSQL" in proc.stdout  # the printed table

    assert report["mode"] == "scaleout" and report["n"] == 20
    assert report["transport_floor"]["legacy_to_trust"]["forwarded"] == 20
    runs = report["scaleout"]
    assert list(runs) == ["sqlite_1", "postgresql_1", "postgresql_2"]
    for key, phase in runs.items():
        assert phase["accepted"] == phase["forwarded"] == 20, (key, phase)
        assert phase["spool"] == ("sqlite" if key == "sqlite_1" else "postgresql")
        assert phase["instances"] == int(key[-1])
        assert phase["forwarded_per_s"] > 0
        d = phase["forward_ms"]
        assert 0 < d["p50"] <= d["p95"] <= d["p99"] <= d["max"]
        assert phase["cpu_ms_per_msg"]["total"] > 0 and phase["spool_mb"] > 0
        assert 0 < phase["cores_busy"] <= report["machine"]["nproc"] + 0.5
        assert phase["other_cores"] < phase["cores_busy"]
        assert phase["cpu_x_physical_floor"]["total"] > 0
        assert all(s["workers_ready_s"] >= s["serving_s"] > 0
                   for s in report["gateway_start"][key])
    two = runs["postgresql_2"]
    assert sum(two["accepted_by_instance"]) == 20 and min(two["accepted_by_instance"]) > 0
    assert all(ms > 0 for ms in two["cpu_ms_per_msg_by_instance"])  # both did work
    assert report["scaleout_gain"] > 0
    assert report["machine"]["postgresql"]
    # the script dropped the schemas it made
    with psycopg.connect(pg_url) as db:
        left = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s",
                          (report["schema_tag"] + "%",)).fetchone()
    assert left == (0,)
