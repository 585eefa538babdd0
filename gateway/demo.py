"""`passerelle demo`: the whole gateway against simulated peers, from nothing, in seconds.

Builds a test world, starts a simulated legacy hub and two trust-space operators (real SMTP
with TLS on 127.0.0.1) and the gateway, then sends: a letter written on a classic Mac, a
letter from a Windows PC whose software garbled a pasted fragment, a lab report in HPRIM Net,
a reply from a hospital back to a legacy doctor, a message the hospital answers 4xx first
(retried), and one to an address the clinic does not know (bounced: the legacy sender gets
a sealed notice in French).  Prints one line per message and exits 0 when each reached the
outcome it should.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from gateway import config
from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.world import USERS, World, build_world
from gateway.daemon import Gateway
from gateway.sim import SimLegacyHub, SimPeer, SimTrustOperator

ADDR = {u.key: u.legacy_address for u in USERS}
TRUST = {u.key: u.trust_address for u in USERS}

MAC_LETTER = (
    "Cher confrère,\nJe vous adresse Mme Pélissier, 72 ans, pour une gonarthrose droite "
    "évoluée.\nUne prothèse totale du genou me paraît indiquée si l'état cardiaque le permet."
    "\nBien à vous,\nDr Jean Dupont\n")
PC_LETTER = (
    "Chère consœur,\nVoici le compte rendu de l'échographie réalisée ce jour : vésicule à "
    "paroi fine, sans calcul.\nÀ votre disposition,\nDr Marie Martin\n")
HPRIM_REPORT = (
    "P0001\nLEFÈVRE\nFrançois\n12 rue des Écoles                \n \n69003 LYON\n02/11/1948\n"
    "1481169123123 07\n24-000118\n04/04/2024\nBIOLAB     Laboratoire Biolab\n"
    "HOPA       Service de cardiologie\n\n"
    "Glycémie à jeun : 0,91 g/l ; créatinine : 9,4 mg/l\n"
    "****LAB****\nTEX|Bilan biochimique\n"
    "RES|GLYCEMIE à jeun|GLY|N|0.91|g/l|0.74|1.06|N|F|5.05|mmol/l|4.11|5.88\n"
    "RES|CREATININE|CREA|N|9.4|mg/l|7.0|12.0|N|F|83|µmol/l|62|106\n"
    "RES|PROTEINE C-REACTIVE (CRP)|CRP|A|< 5  mg/l|||||F\n****FIN****\n****FINFICHIER****\n")
REPLY = "Cher confrère,\nMerci pour ce courrier : nous verrons Mme Pélissier mardi.\nDr X\n"


@dataclass
class Case:
    name: str
    direction: str
    expect: str  # where it must arrive: "hopital-a", "clinique-b", "hub"
    count: int = 1
    sent_at: float = 0.0
    arrived_at: float = 0.0
    repairs: str = ""
    documents: str = ""
    outcome: str = "pending"
    checks: list[str] = field(default_factory=list)


def _message(sender: str, to: str, subject: str, body: bytes, *, msgid: str,
             in_reply_to: str | None = None) -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = msgid
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    m.set_content(body, maintype="text", subtype="plain")
    return m


def _client_tls(world: World, client: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(world.ca_cert))
    if client:
        ctx.load_cert_chain(str(world.cert(client)), str(world.key(client)))
    return ctx


async def _send(port: int, data: bytes, sender: str, rcpts: list[str],
                tls: ssl.SSLContext) -> None:
    await aiosmtplib.send(data, sender=sender, recipients=rcpts, hostname="127.0.0.1",
                          port=port, start_tls=True, tls_context=tls, timeout=30)


async def run(*, keep_running: bool = False, directory: Path | None = None) -> int:
    tmp = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="passerelle-demo-")
        directory = Path(tmp.name)
    started = time.monotonic()
    world = await asyncio.to_thread(build_world, directory / "world")
    hub = SimLegacyHub(cert=world.cert("gateway-server"), key=world.key("gateway-server"))
    op_a = SimTrustOperator(cert=world.cert("hopital-a-server"),
                            key=world.key("hopital-a-server"), anchors=[world.ca_cert])
    op_b = SimTrustOperator(cert=world.cert("clinique-b-server"),
                            key=world.key("clinique-b-server"), anchors=[world.ca_cert],
                            hostname="mx.clinique-b.mssante.example")
    peers: list[SimPeer] = [hub, op_a, op_b]
    for peer in peers:
        await peer.start()
    op_b.behaviour.per_recipient["dr.inconnu@clinique-b.mssante.example"] = "permfail"
    op_a.behaviour.fail_times = 1
    extra = f"""
[ops]
listen = "127.0.0.1:0"
[delivery]
mx_lookup = false
[listen.legacy]
port = 0
[listen.trust]
port = 0
[retry]
initial = 1
factor = 2
max = 2
[workers]
poll_interval = 0.2
delivery_timeout = 15
[routes]
".legacy.example" = "127.0.0.1:{hub.port}"
"hopital-a.mssante.example" = "127.0.0.1:{op_a.port}"
"clinique-b.mssante.example" = "127.0.0.1:{op_b.port}"
"""
    cfg = world.root / "passerelle-demo.toml"
    cfg.write_text(world.config.read_text("utf-8") + extra, "utf-8")
    gateway = Gateway(config.load(cfg))
    await gateway.start()
    legacy_port, trust_port = (lis.port for lis in gateway.listeners)
    print(f"world built and gateway started in {time.monotonic() - started:.1f} s "
          f"(legacy listener :{legacy_port}, trust listener :{trust_port})")

    def seal(user: str, msg: EmailMessage) -> bytes:
        client = LegacyCrypto(OpenPgpCipher(Path(world.gnupg_users[user]),
                                            gateway_fingerprint=world.fingerprints[user]))
        return client.seal(msg.as_bytes(), recipient=world.fingerprints["gateway"])

    hub_tls = _client_tls(world, None)
    cases = [
        Case("Mac letter (Mac Roman, CR)", "legacy → trust", "hopital-a"),
        Case("PC letter with pasted UTF-8", "legacy → trust", "hopital-a"),
        Case("HPRIM lab report (CP850)", "legacy → trust", "hopital-a"),
        Case("reply from the hospital", "trust → legacy", "hub"),
        Case("to an unknown clinic address", "legacy → trust", "hub"),
    ]
    half = len(PC_LETTER) // 2
    pc_bytes = PC_LETTER[:half].encode("cp1252") + PC_LETTER[half:].encode("utf-8")
    sends = [
        (seal("dupont", _message(ADDR["dupont"], "dr.x@hopital-a.mssante.example", "Patiente",
                                 MAC_LETTER.replace("\n", "\r").encode("mac_roman"),
                                 msgid="<demo-1@medical33.legacy.example>")),
         ADDR["dupont"], ["dr.x@hopital-a.mssante.example"]),
        (seal("martin", _message(ADDR["martin"], "dr.x@hopital-a.mssante.example",
                                 "Échographie", pc_bytes,
                                 msgid="<demo-2@medical75.legacy.example>")),
         ADDR["martin"], ["dr.x@hopital-a.mssante.example"]),
        (seal("biolab", _message(ADDR["biolab"], "cardio@hopital-a.mssante.example",
                                 "Résultats", HPRIM_REPORT.replace("\n", "\r\n").encode("cp850"),
                                 msgid="<demo-3@medical69.legacy.example>")),
         ADDR["biolab"], ["cardio@hopital-a.mssante.example"]),
    ]
    for case, (data, sender, rcpts) in zip(cases, sends, strict=False):
        case.sent_at = time.monotonic()
        await _send(legacy_port, data, sender, rcpts, hub_tls)
    # the reply comes from the hospital's operator, with mutual TLS
    reply = _message("Dr X <dr.x@hopital-a.mssante.example>", TRUST["dupont"],
                     "Re: Patiente", REPLY.encode(), msgid="<demo-4@hopital-a.mssante.example>",
                     in_reply_to="<demo-1@medical33.legacy.example>")
    cases[3].sent_at = time.monotonic()
    await _send(trust_port, reply.as_bytes(), "dr.x@hopital-a.mssante.example",
                [TRUST["dupont"]], _client_tls(world, "hopital-a-client"))
    cases[4].sent_at = time.monotonic()
    await _send(legacy_port, seal("petit", _message(
        ADDR["petit"], "dr.inconnu@clinique-b.mssante.example", "Avis",
        "Bonjour, pouvez-vous revoir M. Durand ?".encode("cp1252"),
        msgid="<demo-5@medical59.legacy.example>")), ADDR["petit"],
        ["dr.inconnu@clinique-b.mssante.example"], hub_tls)

    ok = await _watch(cases, op_a, hub, world)
    print()
    print(f"{'message':32} {'direction':16} {'repairs':9} {'documents':22} {'outcome':34} "
          f"{'latency':>8}")
    for c in cases:
        latency = f"{c.arrived_at - c.sent_at:.2f} s" if c.arrived_at else "-"
        print(f"{c.name:32} {c.direction:16} {c.repairs:9} {c.documents:22} {c.outcome:34} "
              f"{latency:>8}")
    print()
    print("all messages reached the outcome they should" if ok else
          "SOME MESSAGES DID NOT REACH THEIR EXPECTED OUTCOME")
    if keep_running:
        print(f"gateway running (config {cfg}); Ctrl-C stops")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    await gateway.drain(grace=5)
    for peer in peers:
        await peer.stop()
    if tmp is not None:
        tmp.cleanup()
    return 0 if ok else 1


async def _watch(cases: list[Case], op_a: SimPeer, hub: SimPeer, world: World) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _inspect(cases, op_a, hub, world)
        if all(c.outcome != "pending" for c in cases):
            break
        await asyncio.sleep(0.1)
    return all(c.outcome.startswith("ok") for c in cases)


def _inspect(cases: list[Case], op_a: SimPeer, hub: SimPeer, world: World) -> None:
    now = time.monotonic()
    by_id: dict[str, tuple[bytes, str]] = {}
    for r in op_a.received:
        msg = email.message_from_bytes(r.data, policy=email.policy.default)
        by_id[str(msg.get("Message-ID", ""))] = (r.data, "hopital-a")
    for r in hub.received:
        msg = email.message_from_bytes(r.data, policy=email.policy.default)
        key = str(msg.get("Message-ID", ""))
        if str(msg.get("Subject", "")) == "Message non remis":
            key = "bounce:" + str(msg.get("In-Reply-To", ""))
        by_id[key] = (r.data, "hub")
    keys = ["<demo-1@medical33.legacy.example>", "<demo-2@medical75.legacy.example>",
            "<demo-3@medical69.legacy.example>", "<demo-4@hopital-a.mssante.example>",
            "bounce:<demo-5@medical59.legacy.example>"]
    for case, key in zip(cases, keys, strict=True):
        if case.outcome != "pending" or key not in by_id:
            continue
        data, where = by_id[key]
        case.arrived_at = now
        msg = email.message_from_bytes(data, policy=email.policy.default)
        if where == "hopital-a":
            names = [p.get_filename() for p in msg.walk() if p.get_filename()]
            docs = [n for n in names if n and n.endswith((".ZIP", ".PDF"))]
            case.documents = "+".join(docs) if docs else "-"
            trace = next((p.get_payload(decode=True) for p in msg.walk()
                          if p.get_filename() == "passerelle-trace.json"), b"")
            doc = json.loads(trace if isinstance(trace, bytes) and trace else b"{}")
            repair: dict[str, Any] = next(
                (s for s in doc.get("steps", []) if s["stage"] == "repair"), {})
            count = sum(repair.get("details", {}).get("repairs", {}).values())
            case.repairs = str(count)
            signed = msg.get_content_type() == "multipart/signed"
            case.outcome = "ok: delivered, S/MIME signed" if signed else "FAILED: not signed"
            if case.name.startswith("HPRIM") and "IHE_XDM.ZIP" not in names:
                case.outcome = "FAILED: no IHE_XDM.ZIP"
        else:
            user = "dupont" if "demo-4" in key else "petit"
            client = LegacyCrypto(OpenPgpCipher(Path(world.gnupg_users[user]),
                                                gateway_fingerprint=world.fingerprints[user]))
            try:
                client.open(data, expected_signer=world.fingerprints["gateway"])
            except Exception as exc:
                case.outcome = f"FAILED: {type(exc).__name__}"
                continue
            case.repairs = "-"
            case.documents = "-"
            case.outcome = ("ok: bounced, notice sealed to sender" if key.startswith("bounce")
                            else "ok: delivered, sealed for recipient")
