"""An operator's release or deletion, and the retention purge, each leave one step in the
message's trace and one log line — ids, digests, sizes, reason kinds, the operator; never
patient data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.spool import Direction, SqliteSpool, events, open_journal

SECRET = ("PELISSIER", "confidentiel", "DUPONT", "jean")


def setup(tmp_path: Path, n: int = 1) -> tuple[Path, SqliteSpool, list[str]]:
    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n', "utf-8")
    spool = SqliteSpool(tmp_path / "state" / "spool.db")
    ids = []
    for k in range(n):
        qid, _ = spool.accept(direction=Direction.TO_TRUST,
                              mail_from="jean.DUPONT@medical33.legacy.example",
                              rcpts=("dr.x@hopital-a.mssante.example",),
                              data=f"Subject: Mme PELISSIER\r\n\r\nCompte rendu confidentiel "
                                   f"{k}".encode(), message_id=f"<q{k}@x>", now=1000 + k)
        spool.translate_failed(qid, fate="quarantine", reason="translation: no RES line",
                               now=1001 + k)
        ids.append(qid)
    return cfg, spool, ids


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(cfg)],
                          capture_output=True, text=True, check=False)


def lines(text: str, event: str) -> list[dict[str, Any]]:
    return [r for r in (json.loads(ln) for ln in text.splitlines() if ln.startswith("{"))
            if r.get("event") == event]


def test_release_and_delete_are_traced_and_logged(tmp_path: Path) -> None:
    cfg, spool, (qid,) = setup(tmp_path)
    entry = spool.entry(qid)
    released = cli(cfg, "quarantine", "release", qid)
    assert released.returncode == 0, released.stderr
    assert released.stdout.startswith(f"release: {qid}")
    (line,) = lines(released.stderr, "message.released")
    assert line["queue_id"] == qid and line["state"] == "quarantined" and line["count"] == 1
    assert line["operator"].startswith("unix:") and line["digest"] == entry.digest
    assert cli(cfg, "queue", "hold", qid).returncode == 0
    again = cli(cfg, "queue", "release", qid)
    (line,) = lines(again.stderr, "message.released")
    assert line["state"] == "held"
    deleted = cli(cfg, "queue", "delete", qid)
    assert deleted.returncode == 0
    (line,) = lines(deleted.stderr, "message.purged")
    assert line["reason"] == "operator" and line["digest"] == entry.digest
    assert line["size"] == entry.size and line["count"] == 1 and line["direction"] == "to_trust"
    for text in (released.stderr, again.stderr, deleted.stderr):
        assert not any(word in text for word in SECRET)
    # the trace outlives the message: by its Message-ID or its queue id
    shown = cli(cfg, "trace", "show", qid)
    assert shown.returncode == 0, shown.stderr
    steps = [ln.split()[2] for ln in shown.stdout.splitlines()]
    assert steps == ["released", "released", "purged"]
    assert "was=quarantined" in shown.stdout and "was=held" in shown.stdout
    assert "reason=operator" in shown.stdout.splitlines()[-1]
    assert cli(cfg, "trace", "show", "q0@x").stdout == shown.stdout


def test_bulk_release_and_delete_tell_each_message(tmp_path: Path) -> None:
    cfg, _, ids = setup(tmp_path, 3)
    released = cli(cfg, "quarantine", "release", "--yes")
    assert released.returncode == 0, released.stderr
    assert sorted(r["queue_id"] for r in lines(released.stderr, "message.released")) == \
        sorted(ids)
    deleted = cli(cfg, "queue", "delete", "--all", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(r["queue_id"] for r in lines(deleted.stderr, "message.purged")) == sorted(ids)
    journal = open_journal(f"sqlite:///{tmp_path / 'state' / 'spool.db'}")
    for k, qid in enumerate(ids):
        assert [e.stage for e in journal.entries(f"<q{k}@x>")] == ["released", "purged"]
        assert journal.entries(f"<q{k}@x>")[1].record["queue_id"] == qid
    assert journal.verify().ok


def test_the_retention_purge_has_its_step_and_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """What the retention purge calls once a message is gone (and only with a known reason)."""
    from gateway.log import configure

    _, spool, (qid,) = setup(tmp_path)
    journal = open_journal(f"sqlite:///{tmp_path / 'state' / 'spool.db'}")
    entry = spool.entry(qid)
    spool.delete(qid)
    configure("info")
    (step,) = events.purged(journal, [entry], reason="retention", now=2000.0)
    assert step.message_id == "<q0@x>" and step.stage == "purged"
    assert step.record["reason"] == "retention" and step.record["states"] == ["quarantined"]
    assert step.at == datetime.fromtimestamp(2000.0, UTC).isoformat()
    (line,) = lines(capsys.readouterr().out, "message.purged")
    assert line["reason"] == "retention" and "operator" not in line
    with pytest.raises(ValueError):
        events.purged(journal, [entry], reason="because", now=2000.0)
