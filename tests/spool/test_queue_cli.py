"""`passerelle queue` and `passerelle quarantine` as an operator uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.spool import Direction, SqliteSpool


def setup(tmp_path: Path) -> tuple[Path, str]:
    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n', "utf-8")
    spool = SqliteSpool(tmp_path / "state" / "spool.db")
    qid, _ = spool.accept(direction=Direction.TO_TRUST,
                          mail_from="jean.DUPONT@medical33.legacy.example",
                          rcpts=("dr.x@hopital-a.mssante.example",),
                          data=b"Subject: Mme PELISSIER\r\n\r\nCompte rendu confidentiel",
                          message_id="<q@x>", now=1000)
    spool.translate_failed(qid, fate="quarantine", reason="translation: no RES line", now=1001)
    return cfg, qid


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(cfg)],
                          capture_output=True, text=True, check=False)


def test_lists_show_no_patient_data_and_actions_work(tmp_path: Path) -> None:
    cfg, qid = setup(tmp_path)
    listing = cli(cfg, "quarantine", "list", "--json")
    assert listing.returncode == 0
    doc = json.loads(listing.stdout)["messages"]
    assert [e["id"] for e in doc] == [qid]
    assert doc[0]["recipients"][0]["state"] == "quarantined"
    for text in (listing.stdout, cli(cfg, "queue", "list").stdout):
        assert "PELISSIER" not in text and "confidentiel" not in text and "DUPONT" not in text
    raw = cli(cfg, "quarantine", "show", qid, "--raw")
    assert raw.returncode == 0 and "Compte rendu confidentiel" in raw.stdout
    assert cli(cfg, "quarantine", "release", qid).returncode == 0
    assert json.loads(cli(cfg, "queue", "list", "--json", "--state", "received").stdout)[
        "messages"]
    assert cli(cfg, "queue", "hold", qid).returncode == 0
    assert json.loads(cli(cfg, "queue", "show", qid, "--json").stdout)["message"][
        "recipients"][0]["state"] == "held"
    retry = cli(cfg, "queue", "retry", qid)
    assert retry.returncode == 65 and retry.stderr.count("\n") == 1
    assert cli(cfg, "queue", "delete", qid).returncode == 0
    missing = cli(cfg, "queue", "show", qid)
    assert missing.returncode == 65 and "no message" in missing.stderr
