"""First-generation (v1) legacy clients: unsigned parts, accepted only over the hub's session.

A v1 client encrypts to the gateway but signs nothing.  Its message is translated only when it
comes over the legacy hub's authenticated session (the hub's client certificate, or SMTP AUTH
after STARTTLS) and the envelope sender is a user the address book marks ``v1``; the
trust-space recipient is told, in a header, in the signed trailer line and in the signed
trace, that the author did not sign and the hub asserted the sender.  Anything else unsigned
is bounced ``unsigned`` as before.  Real listeners, real TLS with the test PKI, real gpg.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import ssl
import subprocess
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.command import CommandCipher
from gateway.crypto.legacy import UNSIGNED_NOTE, LegacyCrypto
from gateway.crypto.world import World
from gateway.mail import mime
from gateway.spool import State
from gateway.translate.legacy_to_trust import UNSIGNED_LINE
from gateway.translate.trace import TRACE_FILENAME
from tests.daemon.harness import ADDR, TRUST, Harness, Overrides, until
from tests.hostile.support import (
    OP_A,
    Session,
    arrived,
    gpg,
    never_delivered,
    opened_notice,
    parsed,
    reasons,
    run,
    sealed,
    settled,
    transaction,
)

LOGIN, PASSWORD = "concentrateur", "mot-de-passe-du-hub-2026"
TEXT = "Kaliémie à 5,1 mmol/L, contrôle dans un mois."


def setup(world: World, tmp_path: Path, *, hub: bool = True) -> Overrides:
    """Dr Dupont runs a first-generation client (v1); Dr Martin's row says nothing and the
    gateway default (v2) applies.  The hub may prove itself by certificate or by AUTH."""
    rows = list(csv.DictReader(io.StringIO(world.addresses.read_text("utf-8"))))
    out = io.StringIO()
    writer = csv.DictWriter(out, [*rows[0].keys(), "legacy_mode"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "legacy_mode": "v1" if row["legacy_address"] == ADDR["dupont"]
                         else ""})
    book = tmp_path / "addresses.csv"
    book.write_text(out.getvalue(), "utf-8")
    overrides: Overrides = {"mappings": {"addresses": str(book)}}
    if hub:
        auth = tmp_path / "hub-auth"
        auth.write_text(f"# the legacy hub's login\n{LOGIN}:{PASSWORD}\n", "utf-8")
        auth.chmod(0o600)
        overrides["legacy.hub"] = {"client_subject": world.dn("legacy-hub-client"),
                                   "auth_file": str(auth)}
    return overrides


def unsigned_letter(world: World, user: str, msgid: str) -> bytes:
    """What a first-generation client sends: the body inline-armoured and an attachment
    ``.pgp``, both encrypted to the gateway, neither signed."""
    gw = world.fingerprints["gateway"]
    body = gpg(world, user, "--armor", "--encrypt", "-r", gw, data=TEXT.encode("cp1252"))
    attachment = gpg(world, user, "--encrypt", "-r", gw, data=b"%PDF-1.4 compte rendu\n")
    m = EmailMessage()
    m["From"] = ADDR[user]
    m["To"] = OP_A
    m["Subject"] = "Courrier"
    m["Message-ID"] = msgid
    m.set_content(body, maintype="text", subtype="plain", cte="7bit")
    m.add_attachment(attachment, maintype="application", subtype="octet-stream",
                     filename="cr.pdf.pgp")
    return m.as_bytes()


async def auth_transaction(h: Harness, sender: str, data: bytes | None, *,
                           password: str = PASSWORD, starttls: bool = True
                           ) -> tuple[str, Session]:
    """AUTH PLAIN (after STARTTLS unless told otherwise), then — with ``data`` — MAIL, RCPT,
    DATA: the AUTH reply and the others."""
    ctx = ssl.create_default_context(cafile=str(h.world.ca_cert))
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=h.legacy_port, start_tls=starttls,
                           tls_context=ctx, timeout=30)
    out = Session()
    await smtp.connect()
    try:
        await smtp.ehlo()
        token = base64.b64encode(f"\0{LOGIN}\0{password}".encode()).decode()
        r = await smtp.execute_command(b"AUTH", b"PLAIN", token.encode())
        auth = f"{r.code} {r.message}"
        if data is None:
            return auth, out
        r = await smtp.execute_command(b"MAIL", f"FROM:<{sender}>".encode())
        out.mail = f"{r.code} {r.message}"
        r = await smtp.execute_command(b"RCPT", f"TO:<{OP_A}>".encode())
        out.rcpt.append(f"{r.code} {r.message}")
        try:
            r = await smtp.data(data)
            out.data = f"{r.code} {r.message}"
        except aiosmtplib.SMTPResponseException as exc:
            out.data = f"{exc.code} {exc.message}"
    finally:
        try:
            await smtp.quit()
        except aiosmtplib.SMTPException:
            smtp.close()
    return auth, out


def trace_of(data: bytes) -> dict[str, object]:
    part = next(p for p in mime.leaves(mime.parse(data)) if p.filename == TRACE_FILENAME)
    trace = json.loads(part.data)
    assert isinstance(trace, dict)
    return trace


def step(trace: dict[str, object], stage: str) -> dict[str, object]:
    steps = trace["steps"]
    assert isinstance(steps, list)
    found = next(s for s in steps if s["stage"] == stage)
    details = found.get("details", {})
    assert isinstance(details, dict)
    return details


def verified(h: Harness, value: str) -> float | None:
    return h.gateway.metrics.registry.get_sample_value(
        "passerelle_legacy_parts_verified_total", {"kind": value})


@pytest.mark.slow
def test_v1_unsigned_message_over_the_hub_session_is_translated_and_marked(
        world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        assert verified(h, "unsigned_v1") == 0 and verified(h, "signed") == 0
        # 1. the hub's client certificate
        msgid = "<v1-cert@medical33.legacy.example>"
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              unsigned_letter(world, "dupont", msgid),
                              client="legacy-hub-client")
        assert s.data.startswith("250 2.0.0"), s.data
        got = await arrived(h.op_a, msgid)
        msg = parsed(got.data)
        assert msg.get_content_type() == "multipart/signed"
        assert msg["X-Passerelle-Legacy-Signature"] == "none; asserted-by=hub"
        assert "legacy-signature=none" in msg["X-Passerelle-Checked"]
        # the gateway's own signature verifies, and covers the trailer line and the trace
        content, signer = h.gateway.translator.smime.verify(got.data, at=datetime.now(UTC))
        assert "PASSERELLE" in signer
        covered = b"".join(content.slices())
        leaves = mime.leaves(mime.parse(covered))
        text = next(p for p in leaves if p.content_type == "text/plain").data.decode("utf-8")
        assert text.startswith(TEXT)
        assert UNSIGNED_LINE in text and "Signature de l'expéditeur vérifiée" not in text
        assert [p.filename for p in leaves if p.is_attachment][:1] == ["cr.pdf"]
        trace = trace_of(covered)
        assert step(trace, "received")["hub_authenticated"] == "certificate"
        opened = step(trace, "open")
        verification = opened["verification"]
        assert isinstance(verification, dict)
        assert verification["result"] == "unsigned"
        assert verification["note"] == UNSIGNED_NOTE
        assert verification["kinds"] == ["unsigned_v1", "unsigned_v1"]
        assert opened["asserted_by"] == "legacy hub (certificate)"
        assert verified(h, "unsigned_v1") == 2 and verified(h, "signed") == 0

        # 2. SMTP AUTH of the hub, after STARTTLS
        msgid = "<v1-auth@medical33.legacy.example>"
        auth, s = await auth_transaction(h, ADDR["dupont"],
                                         unsigned_letter(world, "dupont", msgid))
        assert auth.startswith("235"), auth
        assert s.data.startswith("250 2.0.0"), s.data
        got = await arrived(h.op_a, msgid)
        assert parsed(got.data)["X-Passerelle-Legacy-Signature"] == "none; asserted-by=hub"
        assert step(trace_of(got.data), "open")["asserted_by"] == "legacy hub (smtp-auth)"
        assert verified(h, "unsigned_v1") == 4

        # 3. a v1 user whose software did sign: verified as ever, and said so
        msgid = "<v1-signed@medical33.legacy.example>"
        inner = EmailMessage()
        inner["From"], inner["To"], inner["Message-ID"] = ADDR["dupont"], OP_A, msgid
        inner.set_content(TEXT.encode("cp1252"), maintype="text", subtype="plain")
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              sealed(world, "dupont", inner.as_bytes()),
                              client="legacy-hub-client")
        got = await arrived(h.op_a, msgid)
        assert str(parsed(got.data)["X-Passerelle-Legacy-Signature"]).strip() == (
            f"verified; signer={world.fingerprints['dupont']}")
        assert verified(h, "signed") == 1
    run(world, tmp_path, scenario, overrides=setup(world, tmp_path))


@pytest.mark.slow
def test_unsigned_without_the_hub_session_or_from_a_v2_user_is_bounced(
        world: World, tmp_path: Path) -> None:
    """Each is accepted at SMTP time (nothing is opened before it is stored), then bounced
    ``unsigned`` with a sealed notice to its sender; nothing reaches the trust space."""
    async def scenario(h: Harness) -> None:
        cases: list[tuple[str, str, Session]] = []

        async def send(name: str, user: str, *, client: str | None = None) -> None:
            msgid = f"<v1-refused-{name}@medical.legacy.example>"
            s = await transaction(h, "legacy", ADDR[user], [OP_A],
                                  unsigned_letter(world, user, msgid), client=client)
            cases.append((msgid, user, s))

        await send("no-session", "dupont")  # STARTTLS, but no certificate and no AUTH
        await send("other-cert", "dupont", client="hopital-a-client")  # not the hub's
        await send("v2-user", "martin", client="legacy-hub-client")  # the hub, a v2 user
        msgid = "<v1-refused-bad-password@medical.legacy.example>"
        auth, s = await auth_transaction(h, ADDR["dupont"],
                                         unsigned_letter(world, "dupont", msgid),
                                         password="devine")
        assert auth.startswith("535 5.7.8"), auth
        cases.append((msgid, "dupont", s))
        auth, _ = await auth_transaction(h, ADDR["dupont"], None, starttls=False)
        assert auth.startswith("538 5.7.11"), auth  # never a password in clear
        for msgid, _, s in cases:
            assert s.data.startswith("250 2.0.0"), (msgid, s.data)
            await settled(h, s.queue_id, State.BOUNCED)
            assert reasons(h, s.queue_id)[0].startswith("unsigned:"), reasons(h, s.queue_id)
            never_delivered(h, msgid.encode(), to="trust")
        await until(lambda: len(h.hub.received) == len(cases))  # one notice each
        assert all(r.mail_from in ("", "<>") for r in h.hub.received)
        notices = [(u, opened_notice(h, u, r)) for r in h.hub.received
                   for u in ("dupont", "martin") if ADDR[u] in r.rcpt_tos]
        for msgid, user, s in cases:  # each sender told, in their own sealed letter: by
            # the Message-ID when the hub vouched for the sender, else (its sender never
            # verified) by the gateway's reference, nothing of the message quoted
            assert any(msgid in text or s.queue_id in text
                       for u, text in notices if u == user), msgid
        assert all("Kaliémie" not in text for _, text in notices)
        assert h.op_a.received == []
        assert verified(h, "unsigned_v1") == 0
    run(world, tmp_path, scenario, overrides=setup(world, tmp_path), check_serving=False)


@pytest.mark.slow
def test_without_hub_authentication_configured_v1_users_are_refused(
        world: World, tmp_path: Path) -> None:
    """No ``[legacy.hub]``: even the hub's certificate proves nothing, AUTH is not offered."""
    async def scenario(h: Harness) -> None:
        msgid = "<v1-no-hub@medical33.legacy.example>"
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              unsigned_letter(world, "dupont", msgid),
                              client="legacy-hub-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith("unsigned:")
        never_delivered(h, msgid.encode(), to="trust")
    run(world, tmp_path, scenario, overrides=setup(world, tmp_path, hub=False))


TOOL = str(Path(__file__).parents[1] / "crypto" / "fake_legacy_tool.py")


def tool_keys(world: World, root: Path, owner: str) -> Path:
    """A key directory as the licensed tools keep it, keys named by the address book's
    fingerprints: ``owner``'s secret and the others' public keys."""
    d = root / f"keys-{owner}"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("gateway", "dupont", "martin"):
        fpr = world.fingerprints[name]
        (d / f"{fpr}.key").write_bytes(fpr.encode() * 2)
        if name == owner:
            (d / f"{fpr}.secret").write_bytes(fpr.encode() * 2)
    return d


@pytest.mark.slow
def test_the_command_adapter_carries_a_v1_message_and_seals_the_reply_with_the_tool(
        world: World, tmp_path: Path) -> None:
    """``legacy.adapter = "command"`` on the fake first-generation tool, in the daemon: Dr
    Dupont's unsigned body and ``.apz`` come through the hub's session, marked unsigned; the
    reply is sealed by the tool for him and his own tool opens it."""
    py, gw = sys.executable, world.fingerprints["gateway"]
    overrides = setup(world, tmp_path)
    overrides["legacy"] = {
        "adapter": "command", "key_dir": str(tool_keys(world, tmp_path, "gateway")),
        "open_command": [py, TOOL, "uncrypt", "-s", "{in}", "-o", "{out}", "-k", "{keydir}"],
        "seal_command": [py, TOOL, "crypt", "-s", "{in}", "-o", "{out}", "-u", "{signer}",
                         "-k", "{keydir}", "-d", "{recipient}"],
        "open_attachment_command": [py, TOOL, "uncryptpj", "-s", "{in}", "-o", "{outdir}",
                                    "-k", "{keydir}"],
        "seal_attachment_command": [py, TOOL, "cryptpj", "-s", "{in}", "-o", "{out}", "-u",
                                    "{signer}", "-k", "{keydir}", "-d", "{recipient}"],
        "signer_pattern": r"^Signature valide : (\S+)",
    }
    overrides["legacy.exit_codes"] = {"10": "cannot_decrypt", "11": "bad_signature",
                                      "12": "unknown_key", "13": "no_recipient_key"}
    mine = tool_keys(world, tmp_path, "dupont")  # Dr Dupont's own software

    def client(action: str, *args: str) -> bytes:
        out = tmp_path / f"{action}.out"
        subprocess.run([py, TOOL, action, *args, "-o", str(out), "-k", str(mine), "-d", gw],
                       check=True, capture_output=True)
        return out.read_bytes()

    (tmp_path / "lettre.txt").write_bytes(TEXT.encode("cp1252"))
    (tmp_path / "cr.pdf").write_bytes(b"%PDF-1.4 compte rendu")
    msgid = "<v1-command@medical33.legacy.example>"
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = ADDR["dupont"], OP_A, "Courrier", msgid
    m.set_content(client("crypt", "-s", str(tmp_path / "lettre.txt")), maintype="text",
                  subtype="plain", cte="7bit")  # no -u: a first-generation client
    m.add_attachment(client("cryptpj", "-s", str(tmp_path / "cr.pdf")),
                     maintype="application", subtype="octet-stream", filename="cr.pdf.apz")

    async def scenario(h: Harness) -> None:
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], m.as_bytes(),
                              client="legacy-hub-client")
        assert s.data.startswith("250 2.0.0"), s.data
        got = await arrived(h.op_a, msgid)
        assert parsed(got.data)["X-Passerelle-Legacy-Signature"] == "none; asserted-by=hub"
        leaves = mime.leaves(mime.parse(got.data))
        assert next(p for p in leaves if p.content_type == "text/plain").data.decode(
            "utf-8").startswith(TEXT)
        assert any(p.filename == "cr.pdf" and p.data == b"%PDF-1.4 compte rendu"
                   for p in leaves)
        assert h.gateway.metrics.registry.get_sample_value(
            "passerelle_legacy_parts_opened_total", {"tool": "command"}) == 2
        assert verified(h, "unsigned_v1") == 2

        await h.send_trust(OP_A, TRUST["dupont"], "Bien reçu.",
                           msgid="<v1-command-reply@hopital-a.mssante.example>",
                           extra={"In-Reply-To": msgid})
        back = (await h.hub.wait_for(1))[0]
        body = mime.leaves(mime.parse(back.data))[0].data
        assert body.startswith(f"$APICRYPT 2 {world.fingerprints['dupont']} {gw} ".encode())
        theirs = CommandCipher(
            open_argv=(py, TOOL, "uncrypt", "-s", "{in}", "-o", "{out}", "-k", "{keydir}"),
            seal_argv=(), key_dir=mine, timeout=10, gateway_key="",
            signer_pattern=r"^Signature valide : (\S+)")
        opened = LegacyCrypto(theirs).open(back.data, expected_signer=gw)
        assert mime.leaves(mime.parse(opened.message))[0].data == \
            "Bien reçu.\r\n".encode("mac_roman")
    run(world, tmp_path, scenario, overrides=overrides, check_serving=False)
