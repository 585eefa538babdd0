"""The whole pipeline with the `pki demo` world: real gpg, real S/MIME, real openssl."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway import config
from gateway.crypto import smime
from gateway.crypto.world import USERS, World
from gateway.documents import cda, hprim, xdm
from gateway.errors import PasserelleError
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translator, header_message_id, stopped_trace
from gateway.translate.trace import TRACE_FILENAME
from tests.conftest import FIXTURES, legacy_client

NOW = datetime.now(UTC)
ADDR = {u.key: u.legacy_address for u in USERS}
TRUST = {u.key: u.trust_address for u in USERS}
# Who writes what: each legacy user's software writes in its own charset.
WRITER = {"macroman": "dupont", "cp1252": "martin", "cp850": "biolab", "mixed": "martin"}


@pytest.fixture(scope="module")
def translator(world: World) -> Translator:
    return build_translator(config.load(world.config))


def sealed_letter(world: World, user: str, body: bytes, *, to: str,
                  subject: str = "Courrier") -> bytes:
    m = EmailMessage()
    m["From"] = ADDR[user]
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = f"<{abs(hash(body))}@{ADDR[user].split('@')[1]}>"
    m.set_content(body, maintype="text", subtype="plain")
    return legacy_client(world, user).seal(m.as_bytes(), recipient=world.fingerprints["gateway"])


def openssl_ok(world: World, data: bytes, tmp_path: Path) -> bool:
    path = tmp_path / "m.eml"
    path.write_bytes(data)
    proc = subprocess.run(["openssl", "cms", "-verify", "-in", str(path), "-CAfile",
                           str(world.ca_cert), "-purpose", "smimesign", "-out", "/dev/null"],
                          capture_output=True, check=False)
    return proc.returncode == 0


def writer_for(case: str) -> str:
    for key, user in WRITER.items():
        if key in case:
            return user
    return "durand"  # UTF-8 software, with whatever mojibake it received


GARBLED = sorted((FIXTURES / "text" / "corpus" / "garbled").glob("*.bin"))


@pytest.mark.parametrize("case", GARBLED, ids=lambda p: p.stem)
def test_garbled_letter_arrives_as_written(world: World, translator: Translator, case: Path,
                                           tmp_path: Path) -> None:
    user = writer_for(case.stem)
    raw = sealed_letter(world, user, case.read_bytes(), to="dr.x@hopital-a.mssante.example")
    out = translator.to_trust(raw, Envelope(ADDR[user], ("dr.x@hopital-a.mssante.example",)),
                              now=NOW)
    assert openssl_ok(world, out.message, tmp_path)
    msg = email.message_from_bytes(out.message, policy=email.policy.default)
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n").split("\n-- \n")[0]
    assert text == case.with_suffix(".expected").read_text("utf-8")
    assert msg["From"] == f"{USERS[[u.key for u in USERS].index(user)].display_name} " \
                          f"<{TRUST[user]}>"
    assert [s.stage for s in out.trace.steps] == [
        "received", "open", "repair", "documents", "compose", "sign"]


HPRIM = sorted((FIXTURES / "hprim").glob("*.hpr"))


def forwarded_by_dr_x(world: World, translator: Translator, message: bytes) -> bytes:
    """``message`` (signed by the gateway) as Dr X forwards it: the signed content under
    their own From, signed with their own certificate (the signer must be the From)."""
    assert isinstance(translator.smime, smime.Smime)
    v = smime.verify(message, anchors=translator.smime.anchors, at=NOW)
    head = smime._head(message)[0]
    outer = [f for f in smime._header_fields(head)
             if f.split(b":", 1)[0].strip().lower() not in smime._CONTENT_HEADERS
             and not f.lower().startswith(b"from:")]
    content = b"From: dr.x@hopital-a.mssante.example\r\n" + b"\r\n".join(outer) + (
        b"\r\n" + v.content)
    return smime.sign(content, smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                                          world.key("hopital-a-signing")))


@pytest.mark.parametrize("path", HPRIM, ids=lambda p: p.stem)
def test_lab_report_round_trip(world: World, translator: Translator, path: Path,
                               tmp_path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    try:
        body = text.encode("cp850")
    except UnicodeEncodeError:
        body = text.encode("utf-8")  # what cp850 cannot hold: the lab's software sends UTF-8
    user = "biolab"  # the sending lab has a row in mappings/labs.csv
    raw = sealed_letter(world, user, body, to="dr.x@hopital-a.mssante.example")
    out = translator.to_trust(raw, Envelope(ADDR[user], ("dr.x@hopital-a.mssante.example",)),
                              now=NOW)
    assert openssl_ok(world, out.message, tmp_path)
    msg = email.message_from_bytes(out.message, policy=email.policy.default)
    assert msg["Subject"].startswith("XDM/1.0/DDM+")
    files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
             if p.get_filename()}
    assert {"IHE_XDM.ZIP", TRACE_FILENAME} <= set(files)
    assert xdm.verify(files["IHE_XDM.ZIP"]) == []
    original = hprim.parse(text)
    in_cda = [r for e in xdm.unpack(files["IHE_XDM.ZIP"]).documents
              for r in cda.read_cda(e.xml).document.results]
    assert [r.value for r in in_cda] == [r.value for d in original.documents for r in d.results]

    # the clinician forwards it to a legacy user, signed with their own certificate: back
    # through the gateway
    back = translator.to_legacy(forwarded_by_dr_x(world, translator, out.message),
                                Envelope("dr.x@hopital-a.mssante.example",
                                         (TRUST["dupont"],)), now=NOW)
    assert len(back) == 1
    opened = legacy_client(world, "dupont").open(back[0].message,
                                                 expected_signer=world.fingerprints["gateway"])
    legacy = email.message_from_bytes(opened.message, policy=email.policy.default)
    raw_body = next(p for p in legacy.walk() if p.get_content_type() == "text/plain")
    data = raw_body.get_payload(decode=True)
    assert b"\r\n" in data
    again = hprim.parse(data.decode("mac_roman"))  # Dr Dupont's software reads Mac Roman
    assert [r.fields() for d in again.documents for r in d.results] == [
        r.fields() for d in original.documents for r in d.results]


def run_cli(world: World, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config",
                           str(world.config)] if args[0] == "trace" else
                          [sys.executable, "-m", "gateway", *args[:1], "--config",
                           str(world.config), *args[1:]],
                          capture_output=True, check=False, cwd=world.root)


def test_cli_translates_and_refuses_with_reasons(world: World, tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(sealed_letter(world, "martin", "Fièvre à 39 °C".encode("cp1252"),
                                   to="dr.x@hopital-a.mssante.example"))
    ok = run_cli(world, "translate", "--to", "trust", str(good))
    assert ok.returncode == 0, ok.stderr
    assert b"multipart/signed" in ok.stdout

    forged = tmp_path / "forged.eml"
    msg = email.message_from_bytes(good.read_bytes(), policy=email.policy.default)
    msg.replace_header("From", ADDR["dupont"])
    forged.write_bytes(msg.as_bytes(policy=email.policy.SMTP))
    bad = run_cli(world, "translate", "--to", "trust", str(forged))
    assert bad.returncode == 65 and bad.stdout == b""
    assert b"expected the sender's key" in bad.stderr

    unmapped = run_cli(world, "translate", "--to", "trust", "--mail-from",
                       "inconnu@medical99.legacy.example", str(good))
    assert unmapped.returncode == 65 and b"no legacy user" in unmapped.stderr

    trust_msg = tmp_path / "trust.eml"
    trust_msg.write_bytes(ok.stdout)
    to_unmapped = run_cli(world, "translate", "--to", "legacy", "--rcpt",
                          "personne@legacy.mssante.example", str(trust_msg))
    assert to_unmapped.returncode == 65 and b"no legacy user" in to_unmapped.stderr


def test_cli_refuses_a_corrupt_xdm(world: World, translator: Translator,
                                   tmp_path: Path) -> None:
    text = HPRIM[0].read_bytes()  # from the lab: a report from elsewhere is quarantined
    out = translator.to_trust(sealed_letter(world, "biolab", text, to="dr.x@a.example"),
                              Envelope(ADDR["biolab"], ("dr.x@a.example",)), now=NOW)
    msg = email.message_from_bytes(out.message, policy=email.policy.default)
    content = msg.get_payload()[0]
    for part in content.walk():
        if part.get_filename() == "IHE_XDM.ZIP":
            data = bytearray(part.get_payload(decode=True))
            data[len(data) // 3] ^= 0xFF
            part.set_content(bytes(data), maintype="application", subtype="zip",
                             disposition="attachment", filename="IHE_XDM.ZIP")
    unsigned = EmailMessage()
    for key in ("From", "To", "Subject", "Message-ID"):
        unsigned[key] = msg[key]
    unsigned.set_payload(content.get_payload())
    unsigned["Content-Type"] = content["Content-Type"]
    path = tmp_path / "corrupt.eml"
    path.write_bytes(unsigned.as_bytes(policy=email.policy.SMTP))
    proc = run_cli(world, "translate", "--to", "legacy", "--rcpt", TRUST["dupont"], str(path))
    assert proc.returncode == 65 and proc.stdout == b""
    assert b"IHE_XDM.ZIP cannot be read" in proc.stderr


def test_journal_tamper_is_found_and_named(world: World, tmp_path: Path) -> None:
    msg = tmp_path / "j.eml"
    msg.write_bytes(sealed_letter(world, "petit", "Bilan normal.".encode("cp1252"),
                                  to="dr.x@hopital-a.mssante.example"))
    assert run_cli(world, "translate", "--to", "trust", "--record", str(msg)).returncode == 0
    assert run_cli(world, "trace", "verify").returncode == 0
    db = world.root / "state" / "spool.db"
    with sqlite3.connect(db) as conn:
        seq, record = conn.execute("SELECT seq, record FROM journal ORDER BY seq DESC "
                                   "LIMIT 1 OFFSET 2").fetchone()
        conn.execute("UPDATE journal SET record = ? WHERE seq = ?",
                     (record.replace('"', "'", 1), seq))
    broken = run_cli(world, "trace", "verify")
    assert broken.returncode == 65
    assert f"entry #{seq}".encode() in broken.stderr
    with sqlite3.connect(db) as conn:  # put it back for other tests sharing the world
        conn.execute("UPDATE journal SET record = ? WHERE seq = ?", (record, seq))


def test_the_trace_has_a_digest_only_of_bytes_a_step_read_or_wrote(
        world: World, translator: Translator) -> None:
    """Both ways: each step reads what the one before wrote; compose's output is the message
    it wrote (the attached copy, part of that message, leaves it out); no digest of nothing."""
    empty = hashlib.sha256(b"").hexdigest()
    text = HPRIM[0].read_bytes().decode("utf-8")
    raw = sealed_letter(world, "biolab", text.encode("utf-8"),
                        to="dr.x@hopital-a.mssante.example")
    out = translator.to_trust(raw, Envelope(ADDR["biolab"],
                                            ("dr.x@hopital-a.mssante.example",)), now=NOW)
    back = translator.to_legacy(forwarded_by_dr_x(world, translator, out.message),
                                Envelope("dr.x@hopital-a.mssante.example", (TRUST["dupont"],)),
                                now=NOW)[0]
    for t, last in ((out, "sign"), (back, "seal")):
        steps = {s.stage: s for s in t.trace.steps}
        assert steps["compose"].output_digest == steps[last].input_digest
        assert steps[last].output_digest == hashlib.sha256(t.message).hexdigest()
        assert steps["documents"].output_digest is not None  # a report: documents made
        for s in t.trace.steps:
            assert empty not in (s.input_digest, s.output_digest), s.stage
        times = [s.at for s in t.trace.steps[1:]]
        assert times == sorted(times) and times[0] >= NOW and times[-1] > times[0]
    msg = email.message_from_bytes(out.message, policy=email.policy.default)
    attached = next(p for p in msg.walk() if p.get_filename() == TRACE_FILENAME)
    compose = json.loads(attached.get_payload(decode=True))["steps"][-1]
    assert compose["stage"] == "compose" and "output_sha256" not in compose
    assert "input_sha256" in compose


def test_a_translation_stopped_says_how_far_it_went(world: World,
                                                    translator: Translator) -> None:
    """A lab report from a sender the lab table does not describe: refused, and the steps
    it went through (received, opened, repaired) go with the refusal for the journal."""
    text = HPRIM[0].read_bytes().decode("utf-8")
    raw = sealed_letter(world, "martin", text.encode("cp1252", "replace"),
                        to="dr.x@hopital-a.mssante.example")
    with pytest.raises(PasserelleError) as caught:
        translator.to_trust(raw, Envelope(ADDR["martin"], ("dr.x@hopital-a.mssante.example",)),
                            now=NOW)
    assert caught.value.kind == "unknown_lab"
    trace = stopped_trace(caught.value)
    assert trace is not None and trace.message_id == header_message_id(raw)
    assert [s.stage for s in trace.steps] == ["received", "open", "repair"]
    assert trace.steps[0].input_digest == hashlib.sha256(raw).hexdigest()
