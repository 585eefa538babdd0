"""`passerelle queue …` on a spool of thousands of messages, on SQLite and on PostgreSQL:
filters, paging with a total, final states hidden, summary, bulk actions, the JSON schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.spool import Direction, SqliteSpool, State, open_spool
from gateway.spool.search import QueueFilter

N = 3000  # messages: 1,000 delivered, 1,000 deferred, 500 held, 400 quarantined, 100 received
NOW = time.time()
DOMAINS = ("hopital-a.mssante.example", "clinique-b.mssante.example", "labo-c.mssante.example")


def fill(spool: SqliteSpool) -> dict[str, list[str]]:
    """N messages through the spool's own API, in a few group commits; ids by fate."""
    global NOW
    NOW = time.time()
    items = []
    for i in range(N):
        rcpt = f"dr.{i}@{DOMAINS[i % 3]}"
        items.append((Direction.TO_TRUST if i % 2 else Direction.TO_LEGACY,
                      f"sender.{i % 7}@medical{i % 5}.legacy.example", (rcpt,),
                      f"Subject: Mme PATIENTE-{i}\r\n\r\nresultat".encode(), f"<m{i}@x>", "",
                      State.TRANSLATED, ""))
    ids: list[str] = []
    for at in range(0, N, 1000):
        ids += [qid for qid, _ in spool.accept_many(items[at:at + 1000], now=NOW)]
    fates: dict[str, list[str]] = {"delivered": [], "deferred": [], "held": [],
                                   "quarantined": [], "received": []}
    with spool._tx() as db:  # message i is N - i minutes old
        for i, qid in enumerate(ids):
            fate = ("delivered" if i < 1000 else "deferred" if i < 2000 else "held"
                    if i < 2500 else "quarantined" if i < 2900 else "received")
            fates[fate].append(qid)
            db.execute("UPDATE messages SET received_at=? WHERE queue_id=?",
                       (NOW - (N - i) * 60, qid))
            db.execute("UPDATE recipients SET state=?, next_attempt=?, reason=? "
                       "WHERE queue_id=?", (fate, NOW + 600, "451 4.4.1 " + "x" * 200
                                            if fate == "deferred" else "", qid))
    return fates


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, SqliteSpool,
                                                                    dict[str, list[str]]]:
    if request.param == "sqlite":
        url = str(tmp_path / "state" / "spool.db")
        cfg_spool = ""
    else:
        url = request.getfixturevalue("pg_url")
        cfg_spool = f'[spool]\nurl = "{url}"\n'
    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n{cfg_spool}', "utf-8")
    spool = open_spool(url)
    return cfg, spool, fill(spool)


def cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(cfg)],
                          capture_output=True, text=True, check=False, input=stdin)


def listing(cfg: Path, *args: str) -> dict[str, object]:
    out = cli(cfg, "queue", "list", "--json", *args)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "passerelle.queue/1" and doc["command"] == "list"
    return doc  # type: ignore[no-any-return]


def test_search_filters_and_pages(world: tuple[Path, SqliteSpool, dict[str, list[str]]]
                                  ) -> None:
    _, spool, fates = world
    rows, total = spool.search(QueueFilter(), limit=50, offset=0)
    assert total == N - 1000  # delivered hidden
    assert {str(r.state) for e in rows for r in e.recipients} <= {"deferred", "held",
                                                                 "quarantined", "received"}
    assert spool.search(QueueFilter(everything=True), 1, 0)[1] == N
    rows, total = spool.search(QueueFilter(state="deferred"), limit=100, offset=950)
    assert total == 1000 and len(rows) == 50
    assert [e.queue_id for e in rows] == fates["deferred"][950:]  # oldest first
    _, total = spool.search(QueueFilter(state="deferred", domain=DOMAINS[0]))
    assert total == len([i for i in range(1000, 2000) if i % 3 == 0])
    _, total = spool.search(QueueFilter(rcpt="DR.1500@" + DOMAINS[0]))
    assert total == 1
    _, total = spool.search(QueueFilter(sender="medical3.legacy.example", everything=True))
    assert total == len([i for i in range(N) if i % 5 == 3])
    _, total = spool.search(QueueFilter(direction="to_trust", state="held"))
    assert total == 250
    _, total = spool.search(QueueFilter(since=NOW - 100 * 60 - 1))
    assert total == 100  # the 100 newest
    rows, total = spool.search(QueueFilter(message_id="m2950@x"))
    assert total == 1 and rows[0].message_id == "<m2950@x>"
    _, total = spool.search(QueueFilter(domain="%"))  # a LIKE wildcard is a character
    assert total == 0


def test_list_cli_pages_hides_finals_and_keeps_patients_out(
        world: tuple[Path, SqliteSpool, dict[str, list[str]]]) -> None:
    cfg, _, fates = world
    doc = listing(cfg, "--state", "deferred", "--page", "3", "--limit", "100")
    assert doc["total"] == 1000 and doc["offset"] == 200
    messages = doc["messages"]
    assert isinstance(messages, list) and len(messages) == 100
    assert [m["id"] for m in messages] == fates["deferred"][200:300]
    first = messages[0]
    assert first["next_retry"] and first["recipients"][0]["next_attempt"]
    assert set(first) >= {"id", "direction", "size", "received_at", "age_s",
                          "sender_domain", "digest", "states", "recipients"}
    assert listing(cfg)["total"] == N - 1000
    assert listing(cfg, "--all")["total"] == N
    text = cli(cfg, "queue", "list", "--state", "deferred", "--limit", "10")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "DIRECTION", "SIZE", "AGE"] and len(lines) == 11
    assert " B " in lines[1] and "1d 9h" in lines[1] and re.search(r"in [89]m", lines[1])
    assert "1000 message(s), showing 1–10; next: --page 2" in text.stderr
    everything = cli(cfg, "queue", "list", "--all", "--limit", "5000").stdout
    assert "PATIENTE" not in everything and "dr." not in everything
    assert "sender." not in everything


def test_show_has_the_full_reason(world: tuple[Path, SqliteSpool, dict[str, list[str]]]
                                  ) -> None:
    cfg, _, fates = world
    qid = fates["deferred"][0]
    text = cli(cfg, "queue", "show", qid)
    assert text.returncode == 0 and "451 4.4.1 " + "x" * 200 in text.stdout
    doc = json.loads(cli(cfg, "queue", "show", qid, "--json").stdout)
    assert doc["command"] == "show" and doc["message"]["id"] == qid
    assert doc["message"]["recipients"][0]["reason"].endswith("x" * 200)


def test_summary_counts_by_state_domain_and_age(
        world: tuple[Path, SqliteSpool, dict[str, list[str]]]) -> None:
    cfg, _, _ = world
    doc = json.loads(cli(cfg, "queue", "summary", "--json").stdout)
    assert doc["by_state"] == {"deferred": 1000, "held": 500, "quarantined": 400,
                               "received": 100}
    assert doc["recipients"] == 2000 and sum(doc["by_age"]) == 2000
    assert {d["domain"] for d in doc["by_domain"]} == set(DOMAINS)
    assert sum(d["total"] for d in doc["by_domain"]) == 2000
    # message i is N - i minutes old: the 100 received are 1..100 minutes old
    assert doc["by_age"][:5] == [4, 5, 10, 20, 40]
    text = cli(cfg, "queue", "summary", "--state", "deferred")
    assert text.returncode == 0 and "1000 deferred" in text.stdout
    assert "TOTAL" in text.stdout and DOMAINS[0] in text.stdout


def test_bulk_actions_ask_unless_yes(world: tuple[Path, SqliteSpool, dict[str, list[str]]]
                                     ) -> None:
    cfg, spool, fates = world
    refused = cli(cfg, "queue", "hold", "--state", "deferred", "--domain", DOMAINS[1])
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--yes" in refused.stderr
    assert spool.search(QueueFilter(state="held"))[1] == 500  # nothing done
    nothing = cli(cfg, "queue", "retry")
    assert nothing.returncode == 2 and "--all" in nothing.stderr
    held = cli(cfg, "queue", "hold", "--state", "deferred", "--domain", DOMAINS[1], "--yes",
               "--json")
    assert held.returncode == 0, held.stderr
    doc = json.loads(held.stdout)
    n = len([i for i in range(1000, 2000) if i % 3 == 1])
    assert doc["command"] == "hold" and doc["messages"] == n and doc["changed"] == n
    assert spool.search(QueueFilter(state="held"))[1] == 500 + n
    assert spool.search(QueueFilter(state="deferred", domain=DOMAINS[1]))[1] == 0
    retry = cli(cfg, "queue", "retry", "--all", "--yes")
    assert retry.returncode == 0 and f"{1000 - n} recipient(s) changed" in retry.stdout
    rows, _ = spool.search(QueueFilter(state="deferred"), limit=5000)
    assert all(r.next_attempt <= time.time() for e in rows for r in e.recipients)
    released = cli(cfg, "quarantine", "release", "--yes", "--json")
    assert json.loads(released.stdout)["changed"] == 400
    assert spool.search(QueueFilter(state="quarantined"))[1] == 0
    deleted = cli(cfg, "queue", "delete", "--state", "held", "--yes")
    assert deleted.returncode == 0 and f"{500 + n} message(s) changed" in deleted.stdout
    assert spool.search(QueueFilter(everything=True))[1] == N - 500 - n
    with pytest.raises(Exception, match="no message"):
        spool.show(fates["held"][0])
    both = cli(cfg, "queue", "delete", fates["received"][0], "--state", "received")
    assert both.returncode == 2


def test_on_a_terminal_a_bulk_action_asks_first(tmp_path: Path) -> None:
    """stdin a terminal: `queue delete --state held` asks; "n" leaves everything, "y" acts."""
    import os
    import pty

    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n', "utf-8")
    spool = SqliteSpool(tmp_path / "state" / "spool.db")
    for i in range(3):
        qid, _ = spool.accept(direction=Direction.TO_TRUST, mail_from="a@legacy.example",
                              rcpts=(f"b{i}@{DOMAINS[0]}",), data=b"Subject: x\r\n\r\ny",
                              message_id=f"<t{i}@x>", now=time.time())
        spool.hold(qid, now=time.time())
    for answer, left in ((b"n\n", 3), (b"y\n", 0)):
        master, slave = pty.openpty()
        os.write(master, answer)
        proc = subprocess.run([sys.executable, "-m", "gateway", "queue", "delete", "--state",
                               "held", "--config", str(cfg)], stdin=slave,
                              capture_output=True, text=True, check=False)
        os.close(slave)
        os.close(master)
        assert spool.search(QueueFilter(state="held"))[1] == left
        assert "delete 3 message(s)? [y/N]" in proc.stderr
        if left:
            assert proc.returncode == 1 and "nothing done" in proc.stderr
        else:
            assert proc.returncode == 0 and "3 message(s) changed" in proc.stdout
