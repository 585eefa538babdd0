"""A process that never configures logging still writes redacted JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import structlog
from gateway.log import get_logger
get_logger("passerelle.test").info("first.line")
structlog.reset_defaults()  # what a test cleaning up after itself does
def translate(mail_from):
    raise RuntimeError("simulated bug")
try:
    translate("marie.martin@medical75.legacy.example")
except RuntimeError:
    get_logger("passerelle.test").exception("translation.crashed", queue_id="A1B2C3D4E5")
"""


def test_an_unconfigured_or_reset_process_logs_redacted_json_without_the_frames_locals() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["event"], r["level"], r.get("queue_id")) for r in lines] == [
        ("first.line", "info", None), ("translation.crashed", "error", "A1B2C3D4E5")]
    assert "marie.martin" not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
