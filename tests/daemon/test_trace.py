"""The trace tells the whole story of a message, through the running gateway over real SMTP
with TLS: every step from ``received`` to the last delivery attempt, each at its own time with
the digests of what it read and wrote; the notices linked to their message both ways; the
quarantine and the operator's release; and the log lines that go with them."""

from __future__ import annotations

import asyncio
import email
import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import log as ops_logging
from gateway.crypto.world import World
from gateway.journal import JournalEntry
from tests.conftest import FIXTURES
from tests.daemon.harness import ADDR, TRUST, Harness, start, until
from tests.ops.logscan import assert_clean, forbidden_terms_from_fixtures

EMPTY = hashlib.sha256(b"").hexdigest()
TRANSLATION = {"received", "open", "verify", "resolve", "repair", "documents", "compose", "sign",
               "seal"}


def stages(entries: list[JournalEntry]) -> list[str]:
    return [e.stage for e in entries]


def when(e: JournalEntry) -> datetime:
    return datetime.fromisoformat(str(e.record["at"]))


def assert_well_formed(entries: list[JournalEntry], queue_id: str) -> None:
    """Each step names its message, carries its own time (the journal's too), and no digest
    of nothing; the translation's steps follow each other in time."""
    for e in entries:
        assert e.record["queue_id"] == queue_id, e.stage
        assert e.at == e.record["at"], e.stage  # the entry is dated by its step
        for key in ("input_sha256", "output_sha256", "digest"):
            assert e.record.get(key) != EMPTY, (e.stage, key)
    times = [when(e) for e in entries]
    assert times == sorted(times)  # recorded in the order they happened


def cli(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config",
                           str(h.config_path)], capture_output=True, text=True, check=False)


def json_lines(text: str, event: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                out.append(record)
    return out


@pytest.mark.slow
def test_a_delivered_message_is_traced_from_received_to_its_last_attempt(
        world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        h.op_a.behaviour.fail_times = 1  # deferred once, then sent
        await h.send_legacy("dupont", "dr.x@hopital-a.mssante.example",
                            "Hémoglobine à 11,8 g/dL".encode("cp1252"),
                            msgid="<t-sent@medical33.legacy.example>")
        got = await h.op_a.wait_for(1)
        await until(lambda: h.gateway.spool.counts() == {"delivered": 1})
        await asyncio.sleep(0.2)
        (entry,) = h.gateway.spool.list()
        trace = h.gateway.journal.entries("<t-sent@medical33.legacy.example>")
        assert stages(trace) == ["received", "open", "repair", "documents", "compose", "sign",
                                 "delivery", "delivery"]
        assert_well_formed(trace, entry.queue_id)
        step = {e.stage: e for e in trace}
        # received: what the listener stored, when it stored it
        assert step["received"].record["input_sha256"] == entry.digest
        assert when(step["received"]).timestamp() == pytest.approx(entry.received_at, abs=1e-3)
        # each step reads what the one before wrote
        assert step["open"].record["input_sha256"] == step["received"].record["output_sha256"]
        assert step["repair"].record["output_sha256"] == \
            step["documents"].record["input_sha256"]
        assert "output_sha256" not in step["documents"].record  # a letter: no documents made
        assert step["documents"].record["details"]["documents"] == 0
        assert step["compose"].record["output_sha256"] == step["sign"].record["input_sha256"]
        stored = h.gateway.spool.show(entry.queue_id)[0]
        assert stored.digest == entry.digest
        # the signed message is what the peer got (its line ends as on the wire)
        assert step["sign"].record["output_sha256"] in {
            hashlib.sha256(got[0].data).hexdigest(),
            hashlib.sha256(got[0].data.replace(b"\r\n", b"\n")).hexdigest()}
        # real times: the translation's steps do not share one
        assert len({e.record["at"] for e in trace[:6]}) >= 5
        assert when(step["sign"]) > when(step["open"]) > when(step["received"])
        # each attempt: status, relay, DSN code, the peer's reply
        attempts = [e.record for e in trace if e.stage == "delivery"]
        assert [a["status"] for a in attempts] == ["deferred", "sent"]
        assert [a["attempt"] for a in attempts] == [1, 2]
        assert attempts[0]["dsn"] == "4.3.0" and attempts[0]["reply"].startswith("451 4.3.0")
        assert attempts[1]["dsn"].startswith("2.") and attempts[1]["reply"].startswith("250")
        assert all(a["relay"] == f"127.0.0.1:{h.op_a.port}" for a in attempts)
        assert all(a["recipient_domain"] == "hopital-a.mssante.example" for a in attempts)
        assert h.gateway.journal.verify().ok
        # the operator reads the same, by Message-ID or by queue id
        for key in ("t-sent@medical33.legacy.example", entry.queue_id):
            shown = await asyncio.to_thread(cli, h, "trace", "show", key)
            assert shown.returncode == 0, shown.stderr
            lines = shown.stdout.splitlines()
            assert [ln.split()[2] for ln in lines] == stages(trace)
            assert "status=deferred" in lines[-2] and "status=sent" in lines[-1]
            assert f"relay=127.0.0.1:{h.op_a.port}" in lines[-1]
            assert "moglobine" not in shown.stdout  # steps, never the letter's words

    run(world, tmp_path, scenario)


@pytest.mark.slow
def test_a_bounced_message_and_its_notice_are_traced_and_linked(world: World,
                                                                 tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        h.hub.behaviour.per_recipient[ADDR["durand"].lower()] = "permfail"
        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["durand"], "Résultats",
                           msgid="<t-bounced@hopital-a.mssante.example>")
        dsn = (await h.op_a.wait_for(1))[0]
        await until(lambda: h.gateway.spool.counts().get("bounced") == 1
                    and h.gateway.spool.counts().get("delivered") == 1)
        await asyncio.sleep(0.2)
        original = next(e for e in h.gateway.spool.list() if e.direction == "to_legacy")
        notice_entry = next(e for e in h.gateway.spool.list() if e.direction == "notice")
        trace = h.gateway.journal.entries("<t-bounced@hopital-a.mssante.example>")
        assert stages(trace) == ["received", "verify", "documents", "compose", "seal",
                                 "delivery", "notice"]
        assert_well_formed(trace, original.queue_id)
        step = {e.stage: e for e in trace}
        assert step["received"].record["input_sha256"] == original.digest
        assert step["compose"].record["output_sha256"] == step["seal"].record["input_sha256"]
        attempt = step["delivery"].record
        assert attempt["status"] == "bounced" and attempt["dsn"] == "5.1.1"
        assert attempt["reply"].startswith("550 5.1.1") and attempt["relay"] != "none"
        # the message names its notice; the notice's trace names the message
        notice_id = str(email.message_from_bytes(dsn.data)["Message-ID"]).strip()
        assert notice_id.endswith("@mx.legacy.mssante.example>")  # folded on the wire
        linked = step["notice"].record
        assert linked["kind"] == "bounce" and linked["notice"] == notice_id
        assert linked["notice_queue_id"] == notice_entry.queue_id
        notice = h.gateway.journal.entries(notice_id)
        assert stages(notice) == ["written", "delivery"]
        assert_well_formed(notice, notice_entry.queue_id)
        written = notice[0].record
        assert written["about"] == "<t-bounced@hopital-a.mssante.example>"
        assert written["about_queue_id"] == original.queue_id
        assert written["digest"] == notice_entry.digest and written["size"] == notice_entry.size
        assert notice[1].record["status"] == "sent"
        assert h.gateway.journal.verify().ok

    run(world, tmp_path, scenario)


def test_a_message_bounced_by_its_translation_is_traced_and_its_notice_linked(
        world: World, tmp_path: Path) -> None:
    """Unsigned trust-space mail where the policy refuses it: bounced before any step of
    translation; its trace still says where it began, why it stopped, and which notice
    told its sender."""
    async def scenario(h: Harness) -> None:
        await h.send_trust("dr.x@hopital-a.mssante.example", TRUST["dupont"], "Bonjour",
                           msgid="<t-refused@hopital-a.mssante.example>")
        dsn = (await h.op_a.wait_for(1))[0]
        await until(lambda: h.gateway.spool.counts().get("bounced") == 1
                    and h.gateway.spool.counts().get("delivered") == 1)
        await asyncio.sleep(0.2)
        original = next(e for e in h.gateway.spool.list() if e.direction == "to_legacy")
        trace = h.gateway.journal.entries("<t-refused@hopital-a.mssante.example>")
        assert stages(trace) == ["received", "bounced", "notice"]
        assert_well_formed(trace, original.queue_id)
        assert trace[0].record["input_sha256"] == original.digest
        assert when(trace[0]).timestamp() == pytest.approx(original.received_at, abs=1e-3)
        assert trace[1].record["kind"] == "policy" and trace[1].record["dsn"].startswith("5.")
        notice_id = str(email.message_from_bytes(dsn.data)["Message-ID"]).strip()
        assert trace[2].record["notice"] == notice_id
        assert stages(h.gateway.journal.entries(notice_id)) == ["written", "delivery"]

    async def main() -> None:
        h = await start(world, tmp_path, overrides={"trust": {"accept_unsigned": False}})
        try:
            await scenario(h)
        finally:
            await h.stop()
    asyncio.run(main())


@pytest.mark.slow
def test_a_quarantined_message_then_released_is_traced_and_logged(world: World,
                                                                  tmp_path: Path) -> None:
    """A legacy user whose key the gateway lacks: the trace shows how far the translation
    went, the quarantine, the operator's release, then the second translation (without a
    second ``received``) and the delivery; the log has one line for each decision."""
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                    "--quick-gen-key", "new.USER@medical01.legacy.example", "ed25519",
                    "sign,cert", "never"], check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"],
                             capture_output=True, text=True, check=True).stdout
    fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                    "--quick-add-key", fpr, "cv25519", "encr", "never"], check=True,
                   capture_output=True)
    book = world.addresses.read_text("utf-8")
    buffer = io.StringIO()
    released: list[subprocess.CompletedProcess[str]] = []
    msgid = "<t-held@hopital-a.mssante.example>"

    async def scenario(h: Harness) -> None:
        world.addresses.write_text(book + (
            f"new.USER@medical01.legacy.example,new.user@legacy.mssante.example,Dr New,,{fpr},"
            "cp1252,NEWU01\n"), "utf-8")
        h.gateway.reload()
        await h.send_trust("dr.x@hopital-a.mssante.example", "new.user@legacy.mssante.example",
                           "Bonjour", msgid=msgid)
        await until(lambda: h.gateway.spool.counts().get("quarantined") == 1)
        entry = h.gateway.spool.list(state="quarantined")[0]
        await asyncio.sleep(0.2)
        held = h.gateway.journal.entries(msgid)
        # how far it went: verified, composed, then the seal found no key
        assert stages(held) == ["received", "verify", "documents", "compose", "quarantined"]
        assert_well_formed(held, entry.queue_id)
        assert held[0].record["input_sha256"] == entry.digest
        quarantined = held[-1].record
        assert quarantined["kind"] == "no_recipient_key"
        assert quarantined["digest"] == entry.digest and quarantined["size"] == entry.size
        pub = subprocess.run(["gpg", "--homedir", str(home), "--armor", "--export", fpr],
                             capture_output=True, check=True).stdout
        subprocess.run(["gpg", "--homedir", str(h.world.gnupg_gateway), "--batch", "--import"],
                       input=pub, check=True, capture_output=True)
        released.append(await asyncio.to_thread(cli, h, "quarantine", "release",
                                                entry.queue_id))
        assert released[0].returncode == 0, released[0].stderr
        h.gateway.wake_translate.notify()
        await h.hub.wait_for(1)
        await until(lambda: h.gateway.spool.counts().get("delivered") == 1)
        await asyncio.sleep(0.2)
        trace = h.gateway.journal.entries(msgid)
        assert stages(trace) == ["received", "verify", "documents", "compose", "quarantined",
                                 "released", "verify", "documents", "compose", "seal",
                                 "delivery"]
        assert_well_formed(trace, entry.queue_id)
        release = trace[5].record
        user = os.environ.get("SUDO_USER") or subprocess.run(
            ["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        assert release["operator"] == f"unix:{user}"
        assert release["was"] == "quarantined" and release["recipients"] == 1
        assert trace[-1].record["status"] == "sent"
        assert h.gateway.journal.verify().ok

    ops_logging.configure("info", stream=buffer)
    try:
        run(world, tmp_path, scenario)
    finally:
        ops_logging.configure("info")
        world.addresses.write_text(book, "utf-8")
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    (line,) = json_lines(buffer.getvalue(), "message.quarantined")
    assert line["kind"] == "no_recipient_key" and line["direction"] == "to_legacy"
    assert len(line["digest"]) == 64 and line["size"] > 0 and line["count"] == 1
    (told,) = json_lines(released[0].stderr, "message.released")
    assert told["queue_id"] == line["queue_id"] and told["state"] == "quarantined"
    assert told["operator"].startswith("unix:") and told["count"] == 1
    assert_clean([*buffer.getvalue().splitlines(), *released[0].stderr.splitlines()],
                 forbidden_terms_from_fixtures(FIXTURES) | {"new.USER", "Bonjour"})


def run(world: World, tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        h = await start(world, tmp_path)
        try:
            await scenario(h)
        finally:
            await h.stop()
    asyncio.run(main())
