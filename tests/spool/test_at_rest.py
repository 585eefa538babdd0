"""Messages sealed at rest, on both back-ends: what the database holds is ciphertext, every
reader through the spool sees the message; rotation, a missing key, a wrong key and an
altered record (set aside, never a crash); retention."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from gateway import spill as spilled_files
from gateway.atrest import OVERHEAD, PIECE, Keyring, MissingKey, Sealer
from gateway.config import RetentionSettings
from gateway.errors import BadInputError, ConfigError
from gateway.spill import LARGE
from gateway.spool import Direction, SqliteSpool, State, open_journal, open_spool
from gateway.spool.retention import record_purges

SECRET = "Cher confrère, Mme Pélissier présente une toux persistante".encode()
Open = Callable[..., SqliteSpool]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spool.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def spool(url: str) -> Iterator[Open]:
    opened: list[SqliteSpool] = []

    def make(ring: Keyring | None = None) -> SqliteSpool:
        s = open_spool(url, sealer=Sealer(ring) if ring is not None else None)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def stored(url: str) -> bytes:
    """Everything the database holds: the SQLite files as they are on disk, or every
    PostgreSQL table dumped as text."""
    if url.startswith("sqlite"):
        path = Path(url[len("sqlite:///"):])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    out = []
    with psycopg.connect(url) as db:
        for table in ("messages", "bodies", "outputs", "recipients", "accepted", "journal"):
            with db.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                out += [bytes(chunk) for chunk in copy]
    return b"".join(out).replace(b"\\\\x", b"\\x")


def found(secret: bytes, haystack: bytes) -> bool:
    """The secret as bytes, or hex-encoded as PostgreSQL's text dump of a bytea shows it."""
    return secret in haystack or secret.hex().encode() in haystack


def put(s: SqliteSpool, body: bytes, n: int = 0) -> str:
    qid, _ = s.accept(direction=Direction.TO_TRUST, mail_from="s@legacy.example",
                      rcpts=("a@x.example",), data=f"Message-ID: <{n}@x>\r\n\r\n".encode() + body,
                      message_id=f"<{n}@x>", now=1000.0)
    return qid


def large_body() -> bytes:
    return b"".join(b"%08d " % i + SECRET + b"\r\n" for i in range(2 * LARGE // len(SECRET)))


def test_what_is_stored_is_ciphertext_and_every_reader_sees_the_message(
        spool: Open, url: str, tmp_path: Path) -> None:
    ring = Keyring.generate()
    s = spool(ring)
    small, large = put(s, SECRET, 1), put(s, large_body(), 2)
    spill = tmp_path / "spill"
    spill.mkdir()
    work = {w.queue_id: w for w in s.lease_translate("W", now=1000, duration=60, spill=spill)}
    assert work[small].data.endswith(SECRET)
    assert spilled_files.read_bytes(Path(work[large].path)).endswith(large_body())
    assert s.head(large, 20) == b"Message-ID: <2@x>\r\n\r"
    assert s.show(small)[1].endswith(SECRET)
    s.store_translated(small, [(("a@x.example",), b"translated " + SECRET)], now=1001)
    s.store_translated(large, [(("a@x.example",), Path(work[large].path))], now=1001)
    out = {d.queue_id: d for d in s.lease_deliver("W", now=1002, duration=60, spill=spill)}
    assert out[small].data == b"translated " + SECRET
    assert spilled_files.read_bytes(Path(out[large].path)).endswith(large_body())
    # the spill files the spool wrote (the message to translate, its translation to send)
    # are sealed too
    held = [p.read_bytes() for p in spill.iterdir()]
    assert len(held) == 2 and all(len(h) > 2 * LARGE for h in held)
    assert not any(found(SECRET[:24], h) or found("Mme Pélissier".encode(), h) for h in held)
    s._after_purge()  # SQLite: the WAL emptied into the file, which is read as it is
    raw = stored(url)
    assert not found(SECRET[:24], raw)
    assert not found("Mme Pélissier".encode(), raw)
    assert found(b"PSL1" + ring.current.encode(), raw)  # the sealed pieces are there


@pytest.mark.parametrize("length", [0, 1, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE, 3 * LARGE + 7])
def test_spill_files_are_sealed_with_a_key_of_the_process_that_writes_them(
        tmp_path: Path, length: int) -> None:
    """A spill file (a message held in a file while a step runs) holds only ciphertext,
    whatever cuts it is written in, and reads back whole, by size, by head, in pieces."""
    text = (b"%08d " % 0 + SECRET + b"\r\n") * (length // (len(SECRET) + 11) + 1)
    text = text[:length]
    path = spilled_files.new_path(tmp_path, "received")
    old = os.umask(0)
    try:
        with spilled_files.create(path) as w:
            for at, cut in enumerate(range(0, length, 70_001)):  # cuts unlike the pieces
                w.write(text[cut:cut + 70_001] if at % 2 else memoryview(text)[cut:cut + 70_001])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    raw = path.read_bytes()
    assert len(raw) > length
    if length >= len(SECRET):
        assert not found(SECRET[:24], raw) and not found("Mme Pélissier".encode(), raw)
    assert spilled_files.read_bytes(path) == text
    assert spilled_files.size(path) == length
    assert spilled_files.head(path, 100) == text[:100]
    assert spilled_files.head(path, PIECE + 5) == text[:PIECE + 5]
    assert all(len(p) == PIECE for p in list(spilled_files.pieces(path))[:-1])


def test_a_spill_file_altered_cut_or_from_another_process_does_not_open(tmp_path: Path) -> None:
    text = large_body()
    path = tmp_path / "out.1"
    spilled_files.write_bytes(path, text)
    raw = path.read_bytes()
    piece = PIECE + OVERHEAD
    altered = bytearray(raw)
    altered[piece + 100] ^= 1
    variants = {
        "altered": bytes(altered),
        "cut at a piece": raw[:2 * piece],  # what is left looks whole, but its end is not
        "cut midway": raw[:-5],
        "pieces swapped": raw[piece:2 * piece] + raw[:piece] + raw[2 * piece:],
        "empty": b"",
    }
    for why, data in variants.items():
        path.write_bytes(data)
        with pytest.raises(OSError, match="does not open"):
            spilled_files.read_bytes(path)
            pytest.fail(why)
    path.write_bytes(raw)
    moved = tmp_path / "out.2"  # another file's name: its pieces are not this file's
    path.rename(moved)
    with pytest.raises(spilled_files.SpillError):
        spilled_files.read_bytes(moved)
    moved.rename(path)
    assert spilled_files.read_bytes(path) == text
    # the key lives in the memory of the process that wrote the file, nowhere else
    other = subprocess.run(
        [sys.executable, "-c", "import sys, pathlib; from gateway import spill; "
         "spill.read_bytes(pathlib.Path(sys.argv[1]))", str(path)],
        capture_output=True, text=True, check=False)
    assert other.returncode != 0 and "SpillError" in other.stderr


def test_without_a_keyring_the_same_check_finds_the_text(spool: Open, url: str) -> None:
    """The search above can fail: a spool without keys stores the message as it came."""
    s = spool()
    put(s, SECRET)
    assert found("Mme Pélissier".encode(), stored(url))


def test_records_in_clear_are_sealed_and_rotation_seals_with_the_new_key(
        spool: Open, url: str) -> None:
    qid = put(spool(), SECRET)  # before the keyring: in clear
    first = Keyring.generate()
    s = spool(first)
    big = put(s, large_body(), 2)  # sealed with the first key
    assert s.unsealed() == 1
    assert s.reseal() == (1, 0)
    assert s.show(qid)[1].endswith(SECRET)
    second = first.rotated()
    s.sealer = Sealer(second)
    assert s.unsealed() == 2
    assert s.reseal(batch=1) == (2, 0)
    only_new = Keyring(second.current, {second.current: second.keys[second.current]})
    again = spool(only_new)
    again.check_keys()  # nothing needs the old key any more
    assert again.show(qid)[1].endswith(SECRET)
    assert again.show(big)[1].endswith(large_body())
    again._after_purge()
    assert not found("Mme Pélissier".encode(), stored(url))


def test_a_missing_key_is_named(spool: Open) -> None:
    ring = Keyring.generate()
    put(spool(ring), SECRET)
    with pytest.raises(MissingKey, match=ring.current):
        spool(Keyring.generate()).check_keys()
    with pytest.raises(MissingKey, match=ring.current):
        spool().check_keys()


def test_a_wrong_key_under_the_right_id_is_refused(spool: Open) -> None:
    ring = Keyring.generate()
    put(spool(ring), SECRET)
    wrong = Keyring(ring.current, {ring.current: bytes(32)})
    with pytest.raises(ConfigError, match=f"key {ring.current} .* wrong key"):
        spool(wrong).check_keys()


@pytest.mark.parametrize("size", ["small", "large"])
def test_an_altered_record_sets_its_message_aside(spool: Open, tmp_path: Path,
                                                  size: str) -> None:
    ring = Keyring.generate()
    s = spool(ring)
    bad = put(s, SECRET if size == "small" else large_body(), 1)
    good = put(s, SECRET, 2)
    with s._tx() as db:  # one bit of the ciphertext flipped, past the header
        data = bytearray(db.execute("SELECT data FROM bodies WHERE queue_id=?",
                                    (bad,)).fetchone()[0])
        data[60] ^= 1
        db.execute("UPDATE bodies SET data=? WHERE queue_id=?", (bytes(data), bad))
    s.check_keys()  # the other record opens: the key is right
    spill = tmp_path / "spill"
    spill.mkdir()
    work = s.lease_translate("W", now=1000, duration=60, spill=spill)
    assert [w.queue_id for w in work] == [good]
    entry = s.entry(bad)
    assert entry.recipients[0].state is State.QUARANTINED
    assert "fail authentication" in entry.recipients[0].reason
    assert list(spill.iterdir()) == []  # no half-opened file left
    with pytest.raises(BadInputError, match="fail authentication"):
        s.show(bad)


def test_retention_purges_content_then_rows_and_says_so_in_the_trace(
        spool: Open, url: str) -> None:
    s = spool(Keyring.generate())
    qid = put(s, SECRET)
    held = put(s, SECRET, 2)
    s.hold(held, now=1000)
    s.lease_translate("W", now=1000, duration=60)
    s.store_translated(qid, [(("a@x.example",), b"translated " + SECRET)], now=1000)
    [d] = s.lease_deliver("W", now=1000, duration=60)
    s.mark_delivered(d.output_id, d.rcpts, now=1000)
    policy = RetentionSettings(content_days=7, quarantine_days=30, notices_days=7,
                               metadata_days=30)
    assert s.purge(policy, now=1000 + 6 * 86400) == []
    purged = s.purge(policy, now=1000 + 8 * 86400)
    assert [(p.queue_id, p.what) for p in purged] == [(qid, "content")]
    journal = open_journal(url)
    record_purges(journal, purged, now=1000 + 8 * 86400)
    assert [e.stage for e in journal.entries("<0@x>")] == ["purged"]
    with pytest.raises(BadInputError, match="purged"):
        s.show(qid)
    assert s.entry(qid).recipients[0].state is State.DELIVERED  # the facts stay
    assert s.show(held)[1].endswith(SECRET)  # an operator's held message is never purged
    assert [p.what for p in s.purge(policy, now=1000 + 31 * 86400)] == ["metadata"]
    with pytest.raises(BadInputError):
        s.entry(qid)
    assert journal.verify().ok


def test_serve_and_the_queue_commands_stop_on_a_missing_key(tmp_path: Path) -> None:
    ring, other = Keyring.generate(), Keyring.generate()
    state = tmp_path / "state"
    s = open_spool(f"sqlite:///{state / 'spool.db'}", sealer=Sealer(ring))
    put(s, SECRET)
    s.close()
    other.save(tmp_path / "keyring.json")
    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{state}"\n[keys]\nfile = "{tmp_path}/keyring.json"\n')
    for argv in (["queue", "list"], ["serve"]):
        done = subprocess.run([sys.executable, "-m", "gateway", *argv, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 78, done.stderr
        assert ring.current in done.stderr and len(done.stderr.strip().splitlines()) == 1


def passerelle(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *argv], capture_output=True,
                          text=True, timeout=120)


def test_keys_new_rotate_and_queue_purge_from_the_command_line(tmp_path: Path) -> None:
    ring_file = tmp_path / "keyring.json"
    made = passerelle("keys", "new", "--out", str(ring_file))
    assert made.returncode == 0, made.stderr
    assert ring_file.stat().st_mode & 0o777 == 0o600
    assert passerelle("keys", "new", "--out", str(ring_file)).returncode == 2  # never overwritten
    first = Keyring.load(ring_file)
    state = tmp_path / "state"
    cfg = tmp_path / "passerelle.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{state}"\n[keys]\nfile = "{ring_file}"\n'
                   '[retention]\ncontent_days = 1\n')
    url = f"sqlite:///{state / 'spool.db'}"
    s = open_spool(url, sealer=Sealer(first))
    qid = put(s, SECRET)
    s.close()
    rotated = passerelle("keys", "rotate", "--config", str(cfg))
    assert rotated.returncode == 0, rotated.stderr
    assert "sealed 1 record(s)" in rotated.stdout
    second = Keyring.load(ring_file)
    assert second.current != first.current and first.current in second.keys
    s = open_spool(url, sealer=Sealer(second))
    with s._read() as db:
        assert db.execute("SELECT key_id FROM bodies WHERE queue_id=?",
                          (qid,)).fetchone()[0] == second.current
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "spool.db").stat().st_mode & 0o777 == 0o600
    s.lease_translate("W", now=1000, duration=60)
    s.translate_failed(qid, fate="bounce", reason="test", now=1000)
    s.close()
    purged = passerelle("queue", "purge", "--config", str(cfg), "--json")
    assert purged.returncode == 0, purged.stderr
    assert '"content": 1' in purged.stdout
    assert [e.stage for e in open_journal(url).entries("<0@x>")] == ["purged"]


def test_a_record_that_does_not_open_is_left_by_a_rotation(spool: Open) -> None:
    ring = Keyring.generate()
    s = spool(ring)
    bad, good = put(s, large_body(), 1), put(s, large_body(), 2)
    with s._tx() as db:  # a bit of its last piece flipped
        data = bytearray(db.execute("SELECT data FROM bodies WHERE queue_id=?",
                                    (bad,)).fetchone()[0])
        data[-3] ^= 1
        db.execute("UPDATE bodies SET data=? WHERE queue_id=?", (bytes(data), bad))
    s.sealer = Sealer(ring.rotated())
    assert s.reseal() == (1, 1)
    assert s.show(good)[1].endswith(large_body())
    with s._read() as db:
        assert db.execute("SELECT key_id FROM bodies WHERE queue_id=?",
                          (bad,)).fetchone()[0] == ring.current  # left as it was
