"""Faults around the gateway: corrupt spool rows, a database that goes away, a full disk,
peers that hang or answer 4xx forever.  Transient trouble is 4xx (the sender keeps the
message), an accepted message is never lost, and the daemon serves again once it is over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from gateway.spool import Direction, SqliteSpool, State
from tests.daemon.harness import ADDR, TRUST, Harness, start, until
from tests.hostile.support import (
    OP_A,
    arrived,
    letter,
    opened_notice,
    reasons,
    run,
    sealed,
    settled,
    states,
    still_serving,
    transaction,
)

# --- corrupt spool rows -------------------------------------------------------------------


def test_corrupt_spool_rows_are_set_aside_and_the_rest_is_served(world: World,
                                                                 tmp_path: Path) -> None:
    """Rows damaged while the gateway was down (bytes that no longer match their digest, an
    unknown direction, a translated copy gone bad): each is quarantined with reason
    ``corrupt``; the sound message queued with them is delivered; the daemon serves."""
    spool = SqliteSpool(tmp_path / "spool.db")

    def put(n: int) -> str:
        raw = sealed(world, "durand", letter(ADDR["durand"], OP_A, f"Lettre {n}".encode(),
                                             msgid=f"<spool-{n}@medical13.legacy.example>")
                     .as_bytes())
        qid, _ = spool.accept(direction=Direction.TO_TRUST, mail_from=ADDR["durand"],
                              rcpts=(OP_A,), data=raw,
                              message_id=f"<spool-{n}@medical13.legacy.example>", now=0)
        return qid

    bad_bytes, bad_direction, bad_output, sound = put(1), put(2), put(3), put(4)
    spool.store_translated(bad_output, [((OP_A,), b"translated, then damaged")], now=0)
    spool.close()
    with sqlite3.connect(tmp_path / "spool.db") as db:
        db.execute("UPDATE bodies SET data = X'00' WHERE queue_id=?", (bad_bytes,))
        db.execute("UPDATE messages SET direction = 'sideways' WHERE queue_id=?",
                   (bad_direction,))
        db.execute("UPDATE outputs SET data = X'00' WHERE queue_id=?", (bad_output,))

    async def scenario(h: Harness) -> None:
        await arrived(h.op_a, "<spool-4@medical13.legacy.example>")
        await settled(h, sound, State.DELIVERED)
        for qid in (bad_bytes, bad_direction, bad_output):
            await settled(h, qid, State.QUARANTINED)
            assert reasons(h, qid)[0].startswith("corrupt"), reasons(h, qid)
        assert [r for r in h.op_a.received if b"<spool-" in r.data
                and b"<spool-4@" not in r.data] == []
    run(world, tmp_path, scenario)


# --- the database goes away ---------------------------------------------------------------


def test_state_directory_that_cannot_be_made_exits_73_in_one_line(world: World, tmp_path: Path
                                                                  ) -> None:
    """The state directory is taken (locked) before the spool is opened: a path through a
    file is "cannot create" (73), named, in one line."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(world.config.read_text("utf-8").replace(
        'state_dir = "state"', f'state_dir = "{blocker / "state"}"'), "utf-8")
    proc = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 73, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(blocker / "state") in proc.stderr and "Not a directory" in proc.stderr


class CuttableLink:
    """A TCP relay to the database that the test cuts and restores: a real network fault
    between a real gateway and a real PostgreSQL.  Threads, not the event loop: the gateway
    talks to its spool from worker threads and, at start, from the loop itself."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.mark.postgres
def test_database_unreachable_mid_run_is_4xx_and_nothing_is_lost(world: World, tmp_path: Path,
                                                                 pg_url: str) -> None:
    """PostgreSQL spool behind a link that is cut: senders get 451 4.3.0 (never 5xx), the
    message accepted before the cut is delivered after it, and the workers carry on."""
    async def main() -> None:
        link = CuttableLink(int(pg_url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]))
        link.up()
        host = pg_url.split("@", 1)[1].split("/", 1)[0]
        url = pg_url.replace(f"@{host}/", f"@127.0.0.1:{link.port}/")
        # a short lease: the attempt whose outcome could not be recorded is taken again soon
        h = await start(world, tmp_path, overrides={"spool": {"url": url},
                                                    "workers": {"lease": 2}})
        try:
            h.op_a.behaviour.mode = "tempfail"  # keeps the first message queued
            first = letter(ADDR["martin"], OP_A, b"Avant", msgid="<db-1@medical75.legacy.example>")
            s1 = await transaction(h, "legacy", ADDR["martin"], [OP_A],
                                   sealed(world, "martin", first.as_bytes()))
            assert s1.data.startswith("250 2.0.0"), s1.data
            await until(lambda: h.op_a.sessions > 0 or h.gateway.spool.counts().get(
                "deferred", 0) > 0)
            link.cut()
            second = letter(ADDR["martin"], OP_A, b"Pendant",
                            msgid="<db-2@medical75.legacy.example>")
            s2 = await transaction(h, "legacy", ADDR["martin"], [OP_A],
                                   sealed(world, "martin", second.as_bytes()))
            assert s2.data.startswith("451 4.3.0"), s2.data
            trust = await transaction(h, "trust", OP_A, [TRUST["durand"]],
                                      f"From: {OP_A}\r\nSubject: x\r\n\r\nx\r\n".encode(),
                                      client="hopital-a-client")
            assert trust.data.startswith("451 4.3.0"), trust.data
            await asyncio.sleep(1.0)  # the workers meet the outage too
            link.up()
            h.op_a.behaviour.mode = "accept"
            s3 = await transaction(h, "legacy", ADDR["martin"], [OP_A],
                                   sealed(world, "martin", second.as_bytes()))
            assert s3.data.startswith("250 2.0.0"), s3.data  # the sender's retry
            await arrived(h.op_a, "<db-1@medical75.legacy.example>")
            await arrived(h.op_a, "<db-2@medical75.legacy.example>")
            await still_serving(h)
        finally:
            await h.stop()
            link.cut()
    asyncio.run(main())


@pytest.mark.postgres
def test_reads_of_queue_and_journal_in_an_outage_are_spool_unavailable(pg_url: str) -> None:
    """What operators and the gauges read (queue list and show, counts, oldest age, the hub
    check, the journal) while the database is cut off mid-session: the transient
    SpoolUnavailable — one clear line and exit 75 from the command line — never the driver's
    own exception; and the same objects read again once the link is back."""
    from gateway.errors import SpoolUnavailable
    from gateway.spool import open_journal
    from gateway.spool.pg import PgSpool

    link = CuttableLink(int(pg_url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]))
    link.up()
    host = pg_url.split("@", 1)[1].split("/", 1)[0]
    url = pg_url.replace(f"@{host}/", f"@127.0.0.1:{link.port}/")
    spool, journal = PgSpool(url), open_journal(url)
    try:
        qid, _ = spool.accept(direction=Direction.TO_TRUST, mail_from="a@legacy.example",
                              rcpts=["b@trust.example"], data=b"Subject: x\r\n\r\nx\r\n",
                              message_id="<outage@legacy.example>", now=1.0)
        journal.append("<outage@legacy.example>", "received", {"size": 1},
                       at=datetime(2026, 11, 30, tzinfo=UTC))
        reads = {
            "list": lambda: spool.list(),
            "show": lambda: spool.show(qid),
            "counts": spool.counts,
            "oldest_age": lambda: spool.oldest_age(2.0),
            "sent_to_legacy": lambda: spool.sent_to_legacy("<outage@legacy.example>", "x@y"),
            "entries": lambda: journal.entries(),
            "verify": lambda: journal.verify(),
            "size": lambda: journal.size(),
        }
        before = {name: read() for name, read in reads.items()}
        link.cut()
        for name, read in reads.items():
            with pytest.raises(SpoolUnavailable):
                read()
                pytest.fail(f"{name}: read while the database was cut off")
        link.up()
        after = {name: read() for name, read in reads.items()}
        assert after == before
        assert after["counts"] == {"received": 1} and after["verify"].ok
    finally:
        link.cut()
        spool.close()
        journal.close()


# --- the spool's disk fills up --------------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) for the spool; skipped where mounting is not allowed."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({proc.stderr.strip()[:80]})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_disk_full_on_the_spool_is_452_then_mail_flows_again(world: World,
                                                            tmp_path: Path) -> None:
    msgid = "<full@medical59.legacy.example>"
    _full_then_room(world, tmp_path / "state", "4m", msgid, letter(
        ADDR["petit"], OP_A, b"x" * 200_000, msgid=msgid).as_bytes())


def test_disk_full_under_a_large_message_is_452_then_it_flows(world: World,
                                                              tmp_path: Path) -> None:
    """A message over 1 MiB is received into a file of the state directory: no room for that
    file is 452 too (not aiosmtpd's 500 with a traceback), no file is left, and the message
    is accepted and delivered once there is room."""
    msgid = "<fullbig@medical59.legacy.example>"
    m = letter(ADDR["petit"], OP_A, b"Voir l'image.", msgid=msgid)
    m.add_attachment(os.urandom(1_500_000), maintype="application", subtype="octet-stream",
                     filename="image.bin")
    _full_then_room(world, tmp_path / "state", "24m", msgid, m.as_bytes())


def _full_then_room(world: World, path: Path, size: str, msgid: str, message: bytes) -> None:
    """A gateway on a small disk that someone else fills: the message is 452 and leaves no
    file behind; once there is room again the same message is accepted and delivered."""
    raw = sealed(world, "petit", message)
    with small_disk(path, size) as state:
        async def main() -> None:
            h = await start(world, state)
            filler = state / "filler"
            try:
                await still_serving(h)  # the spool has its tables and a little WAL
                # the rest of the disk goes to someone else
                with filler.open("wb") as f, contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                s = await transaction(h, "legacy", ADDR["petit"], [OP_A], raw)
                assert s.data.startswith("452 4.3.1"), s.data
                assert list(h.gateway.spill.iterdir()) == []
                filler.unlink()
                s = await transaction(h, "legacy", ADDR["petit"], [OP_A], raw)  # retried
                assert s.data.startswith("250 2.0.0"), s.data
                await arrived(h.op_a, msgid)
                await still_serving(h)
            finally:
                await h.stop()
        asyncio.run(main())


# --- peers that hang ---------------------------------------------------------------------------


def test_trust_peer_that_hangs_mid_data_is_retried_then_delivered_once(world: World,
                                                                       tmp_path: Path) -> None:
    """The operator takes the message and never answers: our attempt times out (deferred,
    4.4.2), no bounce; once the peer answers again the message is delivered, and the copy
    that may have been kept during the hang is the only other one."""
    async def scenario(h: Harness) -> None:
        h.op_a.behaviour.mode = "hang"
        msgid = "<hang@medical13.legacy.example>"
        raw = sealed(world, "durand", letter(ADDR["durand"], OP_A, b"Bonjour", msgid=msgid)
                     .as_bytes())
        s = await transaction(h, "legacy", ADDR["durand"], [OP_A], raw)
        assert s.data.startswith("250 2.0.0")
        await settled(h, s.queue_id, State.DEFERRED, timeout=15)
        assert "timed out" in reasons(h, s.queue_id)[0]
        assert h.hub.received == []  # no notice: it is only late
        h.op_a.behaviour.mode = "accept"
        await arrived(h.op_a, msgid)
        await settled(h, s.queue_id, State.DELIVERED)
        assert [msgid.encode() in r.data for r in h.op_a.received].count(True) == 1
    run(world, tmp_path, scenario, overrides={"workers": {"delivery_timeout": 1}})


def test_client_that_hangs_mid_data_holds_nothing_up(world: World, tmp_path: Path) -> None:
    """A client sends half a message and stops: others are served meanwhile, and what it
    sent is never stored (no final dot, no 250)."""
    async def scenario(h: Harness) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=h.legacy_port, start_tls=True,
                               tls_context=h.tls(), timeout=10)
        await smtp.connect()
        await smtp.ehlo()
        await smtp.mail(ADDR["dupont"])
        await smtp.rcpt(OP_A)
        reply = await smtp.execute_command(b"DATA")
        assert reply.code == 354
        assert smtp.transport is not None
        smtp.transport.write(b"From: x\r\nMessage-ID: <half@x.example>\r\n\r\nla moiti")
        await still_serving(h)  # one good letter each way while it hangs
        smtp.close()  # it gives up without the final dot
        await asyncio.sleep(0.2)
        assert all(b"<half@x.example>" not in h.gateway.spool.show(e.queue_id)[1]
                   for e in h.gateway.spool.list())
    run(world, tmp_path, scenario)


# --- peers that answer 4xx forever ----------------------------------------------------------

RETRY = {"retry": {"initial": 0.2, "factor": 1, "max": 0.2, "delay_warning_after": 0.8,
                   "lifetime": 2.5}}


def test_trust_peer_answering_4xx_forever_warns_then_bounces(world: World,
                                                             tmp_path: Path) -> None:
    """A delay notice once ``delay_warning_after`` has passed, then a failure notice (4.4.7)
    when the lifetime is over — both sealed for the legacy sender, in that order."""
    async def scenario(h: Harness) -> None:
        h.op_a.behaviour.mode = "tempfail"
        msgid = "<forever@medical33.legacy.example>"
        raw = sealed(world, "dupont", letter(ADDR["dupont"], OP_A, b"Bonjour", msgid=msgid)
                     .as_bytes())
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], raw)
        assert s.data.startswith("250 2.0.0")
        await settled(h, s.queue_id, State.BOUNCED, timeout=15)
        assert "lifetime over" in reasons(h, s.queue_id)[0]
        await until(lambda: len(h.hub.received) >= 2)
        texts = [opened_notice(h, "dupont", r) for r in h.hub.received]
        assert "n'a pas encore pu être remis" in texts[0]  # the delay warning, first
        assert "n'a pas pu être remis" in texts[1] and "4.4.7" in texts[1]
        assert len(texts) == 2
        assert h.op_a.received == []
    run(world, tmp_path, scenario, overrides=RETRY)


def test_legacy_hub_answering_4xx_forever_warns_then_bounces_with_dsns(world: World,
                                                                       tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        h.hub.behaviour.mode = "tempfail"
        s = await transaction(h, "trust", OP_A, [TRUST["petit"]],
                              letter(OP_A, TRUST["petit"], "Résultats",
                                     msgid="<forever@hopital-a.mssante.example>").as_bytes(),
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0")
        await settled(h, s.queue_id, State.BOUNCED, timeout=15)
        await until(lambda: len(h.op_a.received) >= 2)
        first, last = h.op_a.received[0].data, h.op_a.received[1].data
        assert b"Action: delayed" in first and b"Status: 4." in first
        assert b"Action: failed" in last and b"Status: 4.4.7" in last
        assert len(h.op_a.received) == 2
        assert h.hub.received == []
        assert states(h, s.queue_id) == [State.BOUNCED]
    run(world, tmp_path, scenario, overrides=RETRY)
