"""bench/memory.py runs end to end on small messages (1 MB): world, both directions, both
ways of measuring.  It checks that the report is complete, never how much memory was used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import short_dir
from tests.conftest import QUIET

ROOT = Path(__file__).resolve().parents[2]


@QUIET
@pytest.mark.slow
def test_memory_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--mb", "1", "--json", str(out),
         "--workdir", str(short_dir())],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tracemalloc" in proc.stdout  # the printed table
    report = json.loads(out.read_text("utf-8"))
    for direction, stages in (("to_trust", {"open", "compose", "sign"}),
                              ("to_legacy", {"verify", "compose", "seal"})):
        r = report[direction]
        assert r["message_bytes"] > 1_000_000 and r["output_bytes"] > 1_000_000
        for way in ("rss", "traced"):
            assert set(r[way]["stages"]) == stages
            assert r[way]["peak"] >= 0 and r[way]["seconds"] >= 0
