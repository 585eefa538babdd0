"""The log-line benchmark runs (a few messages, one round), alone and side by side with the
current commit, so that it cannot rot; it checks the report is complete, never how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {"per_line_message", "redact_only_message", "message.accepted", "message.translated",
           "delivery.attempt", "message.delivered", "rare_lines", "exception_line",
           "per_message_us"}


def test_logs_bench_smoke(tmp_path: Path) -> None:
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("--against needs the git checkout the benchmark runs from")
    out = tmp_path / "logs.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "logs.py"), "--n", "20",
                          "--rounds", "1", "--against", "HEAD", "--json", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "a message's four lines" in run.stdout
    columns = json.loads(out.read_text())
    assert set(columns) == {"HEAD", "this tree"}
    for figures in columns.values():
        assert set(figures) == FIGURES
        assert all(value > 0 for value in figures.values())
