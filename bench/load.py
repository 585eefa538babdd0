#!/usr/bin/env python3
"""Load benchmark: a real `passerelle serve` under load, against its floors, in one run.

Three processes: this one (world, messages, load generator, report), the gateway
(`python -m gateway serve`: SQLite spool, real TLS, real gpg) and a sink (this file with
``--sink``: a simulated trust operator and a simulated legacy hub, real SMTP + TLS, which
print the arrival time of every message).  Times are CLOCK_MONOTONIC, shared by processes.

Phases, in order:
  1. transport floor: the same messages from the load generator straight to the sink;
  2. legacy → trust at full load: N sealed legacy messages (20 KB letters and HPRIM reports,
     signed and encrypted with real gpg by mapped users) over K STARTTLS connections;
  3. trust → legacy at full load: S/MIME-signed messages (letters, CR-BIO in IHE_XDM.ZIP) from
     the simulated operator, with its client certificate, into the trust listener;
  4. legacy → trust at half the rate measured in 2 (paced), for latency at half load;
  5. crypto floor: the gateway's own classes in a tight loop, as many threads as the gateway
     has translation workers: open (gpg decrypt+verify) + S/MIME sign (and self-check) per
     legacy message; S/MIME verify + seal (gpg sign+encrypt) per trust message;
  6. memory: a fresh gateway, one message of --big-mb MB (attachments): peak RSS growth.

With ``--spool-url postgresql://…`` the gateway uses a PostgreSQL spool (a fresh schema of
that database, dropped at the end) and ``--instances N`` starts N gateways on it, the K
connections spread round-robin; ``--scaleout`` runs only legacy → trust at full load, for
1 instance on SQLite, 1 on PostgreSQL and N on PostgreSQL.

Usage: python bench/load.py [--n 1000] [--concurrency 8] [--workers 4] [--json out.json]
       python bench/load.py --scaleout --spool-url postgresql://… [--n 600] [--instances 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import email.utils
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402

from gateway import config  # noqa: E402
from gateway.crypto import smime  # noqa: E402
from gateway.crypto.legacy import LegacyCrypto  # noqa: E402
from gateway.crypto.openpgp import OpenPgpCipher  # noqa: E402
from gateway.crypto.pki import TrustAnchors  # noqa: E402
from gateway.crypto.world import USERS, World, build_world  # noqa: E402
from gateway.sim import Received, SimLegacyHub, SimTrustOperator  # noqa: E402
from gateway.translate.factory import legacy_cipher  # noqa: E402

TRUST_PEER = "dr.x@hopital-a.mssante.example"
HZ = os.sysconf("SC_CLK_TCK")
_MSGID = re.compile(rb"^message-id:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)

PARAGRAPHS = (
    "Cher confrère, je vous remercie de m'avoir adressé votre patiente pour un bilan "
    "cardiologique. L'électrocardiogramme est en rythme sinusal régulier, sans trouble de "
    "la repolarisation. L'échographie trans-thoracique retrouve un ventricule gauche non "
    "dilaté, de fonction systolique conservée (FEVG estimée à 62 %).",
    "Sur le plan biologique : hémoglobine à 11,8 g/dL, ferritine à 18 µg/L, créatinine à "
    "78 µmol/L (DFG estimé à 84 mL/min/1,73 m²). Le bilan lipidique montre un LDL à "
    "1,42 g/L, au-dessus de l'objectif compte tenu des facteurs de risque.",
    "Je propose d'introduire une statine à dose modérée, de contrôler le bilan hépatique "
    "et les CPK à six semaines, et de poursuivre la supplémentation martiale. Un holter "
    "tensionnel sera réalisé avant la prochaine consultation, prévue dans trois mois.",
    "Traitement à la sortie : bisoprolol 2,5 mg le matin, atorvastatine 20 mg le soir, "
    "fer 80 mg un comprimé par jour pendant trois mois. Régime pauvre en sel, activité "
    "physique adaptée, trente minutes de marche quotidienne.",
)


# -- measurements --------------------------------------------------------------------------

def proc_cpu(pid: int) -> tuple[float, float]:
    """(own CPU seconds, reaped children's CPU seconds) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the command: state(3) ... utime(14) stime(15) cutime(16) cstime(17)
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / HZ, (cutime + cstime) / HZ


def tree_cpu(pid: int) -> tuple[float, float]:
    """proc_cpu summed over a process and its live descendants (the gateway's translation
    worker processes): (own CPU seconds, reaped children's CPU seconds — gpg)."""
    own = children = 0.0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            o, c = proc_cpu(p)
            own += o
            children += c
    return own, children


def tree_mem(pid: int) -> dict[str, int]:
    """proc_mem summed over a process and its live descendants (the translation workers):
    the sum of each process's peak — an upper bound of the tree's peak."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, KeyError):
            m = proc_mem(p)
            out["VmRSS"] += m["VmRSS"]
            out["VmHWM"] += m["VmHWM"]
    return out


def tree_pids(pid: int) -> set[int]:
    """A process and its live descendants."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry.name)] = int(stat[1])
    tree, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        todo.extend(kids)
    return tree


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value, _ = line.split()
                out[key.rstrip(":")] = int(value) * 1024
    return out


def agent_cpu(home: Path) -> float:
    """CPU seconds of the gpg-agent serving ``home`` (a daemon: not a reaped child)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"gpg-agent") and str(home).encode() in cmd:
            with contextlib.suppress(OSError):
                total += proc_cpu(int(entry.name))[0]
    return total


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (own + reaped children: the
    postmaster inherits the backends that exit), whoever they serve."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if (entry / "comm").read_text().strip() == "postgres":
                total += sum(proc_cpu(int(entry.name)))
    return total


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest* already in user)
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / HZ


class PgSchemas:
    """Fresh schemas in the database of ``url``, one per spool, dropped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []
        self.tag = f"bench_{os.getpid()}_{random.randrange(16**6):06x}"

    def new(self, name: str) -> str:
        """Create schema ``<tag>_<name>``; the spool URL whose search_path is that schema
        (any ``options`` of the given URL is replaced)."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        import psycopg

        schema = f"{self.tag}_{name}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as db:
            db.execute(f"CREATE SCHEMA {schema}")
        self.made.append(schema)
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
        query.append(("options", f"-csearch_path={schema}"))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=10) as db:
            row = db.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else ""

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as db:
            for schema in self.made:
                db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.made.clear()


def pg_schema_bytes(url: str) -> int:
    """Tables, indexes and TOAST of the schema the spool URL points to."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as db:
        row = db.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')").fetchone()
    return int(row[0]) if row else 0


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (ms), 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return round(ordered[rank] * 1000, 1)


def dist(values: Sequence[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "max": pct(values, 100)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                     "")
    gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True).stdout
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "gpg": gpg.split()[2], "libgcrypt": gpg.splitlines()[1].split()[-1],
            "kernel": platform.release()}


# -- messages ------------------------------------------------------------------------------

@dataclass
class Msg:
    msgid: str
    sender: str
    rcpt: str
    data: bytes
    kind: str


def letter_text(i: int, size: int = 20480) -> str:
    """A letter of ``size`` characters that compresses like prose (~3×), not like a loop:
    sentences drawn from the paragraphs' words in a per-letter order."""
    rng = random.Random(i)
    words = " ".join(PARAGRAPHS).split()
    lines = [f"Compte rendu n° {i}", ""]
    total = 0
    while total < size:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(8, 14)))
        # capitalised as an author would: "µmol/L" stays so (its upper case is a Greek
        # capital Mu, "Μmol/L", which nobody writes and which the text repair doubts)
        first = sentence[0].upper()
        line = (first if first.isascii() or "À" <= first <= "Þ" else sentence[0]) \
            + sentence[1:] + "."
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines)[:size]


def hprim_texts() -> list[str]:
    return [p.read_bytes().decode("utf-8") for p in sorted((ROOT / "fixtures" / "hprim")
                                                            .glob("*.hpr"))]


def legacy_plain(i: int, phase: str, hprims: list[str],
                 attachments: Sequence[tuple[str, bytes]] = ()) -> tuple[str, str, bytes, str]:
    """(sender key, Message-ID, plaintext MIME message, kind): even = letter, odd = HPRIM."""
    if i % 2 and hprims and not attachments:
        user = next(u for u in USERS if u.key == "biolab")
        body = hprims[(i // 2) % len(hprims)].encode(user.charset, "replace")
        kind = "hprim"
    else:
        user = [u for u in USERS if u.key != "biolab"][(i // 2) % 4]
        body = letter_text(i).encode(user.charset, "replace")
        kind = "letter"
    msgid = f"<bench-{phase}-{i}@{user.legacy_address.split('@')[1]}>"
    m = EmailMessage()
    m["From"] = user.legacy_address
    m["To"] = TRUST_PEER
    m["Subject"] = f"Courrier {phase} {i}"
    m["Date"] = email.utils.format_datetime(datetime.now(UTC))
    m["Message-ID"] = msgid
    m.set_content(body, maintype="text", subtype="plain")
    for name, data in attachments:
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return user.key, msgid, m.as_bytes(), kind


def seal_legacy(world: World, items: Sequence[tuple[str, str, bytes, str]],
                threads: int = 8) -> list[Msg]:
    ciphers = {u.key: LegacyCrypto(OpenPgpCipher(Path(world.gnupg_users[u.key]),
                                                 gateway_fingerprint=world.fingerprints[u.key]))
               for u in USERS}
    addr = {u.key: u.legacy_address for u in USERS}

    def one(item: tuple[str, str, bytes, str]) -> Msg:
        key, msgid, plain, kind = item
        sealed = ciphers[key].seal(plain, recipient=world.fingerprints["gateway"])
        return Msg(msgid, addr[key], TRUST_PEER, sealed, kind)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, items))


def operator_identity(world: World, out: Path) -> smime.SigningIdentity:
    """An S/MIME signing certificate for the simulated operator, from the world's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(world.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(world.ca_cert.read_bytes())
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HOPITAL A"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, TRUST_PEER)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                     key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(TRUST_PEER)]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "op-signing.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "op-signing.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return smime.SigningIdentity.load(out / "op-signing.pem", out / "op-signing.key")


def xdm_packages(world: World, hprims: list[str]) -> list[bytes]:
    """CR-BIO packages (IHE_XDM.ZIP) made from the HPRIM fixtures, as operators send them."""
    from gateway.directory.addresses import AddressBook
    from gateway.documents.codes import load_tables
    from gateway.translate import legacy_to_trust

    book = AddressBook.load(world.addresses)
    sender = book.by_legacy(next(u for u in USERS if u.key == "biolab").legacy_address)
    tables = load_tables(world.root / "mappings")
    out = []
    for n, text in enumerate(hprims):
        with contextlib.suppress(Exception):
            package, _, _, _ = legacy_to_trust._documents(
                text, tables=tables, now=datetime.now(UTC), sender=sender,
                message_key=f"bench{n}")
            if package:
                out.append(package)
    return out


def trust_messages(world: World, n: int, phase: str, identity: smime.SigningIdentity,
                   packages: list[bytes]) -> list[Msg]:
    """S/MIME-signed messages from the simulated operator to mapped legacy users."""
    out = []
    for i in range(n):
        user = USERS[i % len(USERS)]
        msgid = f"<bench-{phase}-{i}@hopital-a.mssante.example>"
        m = EmailMessage(policy=email.policy.SMTP)
        m["From"] = f"Dr X <{TRUST_PEER}>"
        m["To"] = user.trust_address
        m["Subject"] = f"Réponse {phase} {i}"
        m["Date"] = email.utils.format_datetime(datetime.now(UTC))
        m["Message-ID"] = msgid
        if i % 2 and packages:
            m.set_content("Veuillez trouver ci-joint le compte rendu d'examens.\n",
                          cte="quoted-printable")
            m.add_attachment(packages[(i // 2) % len(packages)], maintype="application",
                             subtype="zip", filename="IHE_XDM.ZIP")
            kind = "xdm"
        else:
            m.set_content(letter_text(i, 8192).replace("\r\n", "\n"), cte="quoted-printable")
            kind = "letter"
        out.append(Msg(msgid, TRUST_PEER, user.trust_address,
                       smime.sign(m.as_bytes(), identity), kind))
    return out


# -- the sink ------------------------------------------------------------------------------

def _announce(side: str, item: Received) -> None:
    head = item.data[:8192].split(b"\r\n\r\n", 1)[0]
    m = _MSGID.search(head)
    msgid = m.group(1).decode("ascii", "replace").strip() if m else "-"
    print(f"R {time.monotonic():.6f} {side} {len(item.data)} {msgid}", flush=True)


class _Operator(SimTrustOperator):
    async def _record(self, item: Received) -> None:  # keep nothing, say when
        _announce("trust", item)


class _Hub(SimLegacyHub):
    async def _record(self, item: Received) -> None:
        _announce("legacy", item)


async def sink_main(world_json: Path) -> None:
    import logging

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # client certificates: on purpose
    world = World.load(world_json)
    op = _Operator(cert=world.cert("hopital-a-server"), key=world.key("hopital-a-server"),
                   anchors=[world.ca_cert])
    hub = _Hub(cert=world.cert("gateway-server"), key=world.key("gateway-server"))
    await op.start()
    await hub.start()
    print(json.dumps({"trust": op.port, "legacy": hub.port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await op.stop()
    await hub.stop()


class Sink:
    def __init__(self, world: World) -> None:
        self.world = world
        self.arrivals: dict[str, list[float]] = {}
        self.sizes: dict[str, int] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--sink", str(self.world.root / "world.json"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        assert self.proc.stdout is not None
        self.ports = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 60))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            parts = line.decode().split(" ", 4)
            if parts[0] == "R":
                msgid = parts[4].strip()
                self.arrivals.setdefault(msgid, []).append(float(parts[1]))
                self.sizes[msgid] = int(parts[3])
                self._changed.set()

    def first_after(self, msgid: str, since: float) -> float | None:
        return next((t for t in self.arrivals.get(msgid, ()) if t >= since), None)

    async def wait(self, msgids: Sequence[str], since: float, timeout: float
                   ) -> dict[str, float]:
        end = time.monotonic() + timeout
        while True:
            got = {m: t for m in msgids if (t := self.first_after(m, since)) is not None}
            if len(got) == len(msgids) or time.monotonic() > end:
                return got
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, end - time.monotonic()))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
        if self._reader is not None:
            self._reader.cancel()


# -- the gateway ---------------------------------------------------------------------------

class Serve:
    """`python -m gateway serve` on a configuration derived from the world's."""

    def __init__(self, world: World, state: Path, sink_ports: dict[str, int], *, workers: int,
                 spool_url: str = "", processes: int = 0, adapter: str = "openpgp") -> None:
        self.world = world
        self.state = state
        self.spool_url = spool_url
        self.legacy_port = free_port()
        self.trust_port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        tables: dict[str, dict[str, object]] = {
            "ops": {"listen": "127.0.0.1:0"},
            "delivery": {"mx_lookup": False},
            "listen.legacy": {"port": self.legacy_port},
            "listen.trust": {"port": self.trust_port},
            "retry": {"initial": 1, "factor": 1, "max": 1},
            "workers": {"translate": workers, "delivery_timeout": 30,
                        **({"processes": processes} if processes else {})},
            "routes": {".legacy.example": f"127.0.0.1:{sink_ports['legacy']}",
                       "hopital-a.mssante.example": f"127.0.0.1:{sink_ports['trust']}"},
            "legacy": {"adapter": adapter},
        }
        if spool_url:
            tables["spool"] = {"url": spool_url}
        self.cfg = world.write_config(state.parent / f"{state.name}.toml", state, tables)
        self.log = state.parent / f"{state.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(self.cfg)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        for _ in range(1200):
            if b"serving on" in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"passerelle serve exited:\n{self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        raise TimeoutError("passerelle serve did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_peak(self) -> int:
        return tree_mem(self.pid)["VmHWM"]

    def spool_bytes(self) -> int:
        if self.spool_url:
            return pg_schema_bytes(self.spool_url)
        return sum(p.stat().st_size for p in self.state.glob("spool.db*"))

    def cpu(self) -> dict[str, float]:
        own, children = tree_cpu(self.pid)  # with its translation worker processes
        return {"gateway": own, "gpg_children": children,
                "gpg_agent": agent_cpu(self.world.gnupg_gateway)}

    def daemon_cpu(self) -> float:
        """The daemon process's own CPU seconds (not its translation workers')."""
        return proc_cpu(self.pid)[0]


class Fleet:
    """N `passerelle serve` on one spool (N > 1: a PostgreSQL spool), each with its own
    ports and state directory; one gpg home, so one gpg-agent for all of them."""

    def __init__(self, world: World, state: Path, sink_ports: dict[str, int], *, workers: int,
                 instances: int = 1, spool_url: str = "", processes: int = 0,
                 adapter: str = "openpgp") -> None:
        if instances > 1 and not spool_url:
            raise ValueError("several instances need a PostgreSQL spool (--spool-url)")
        self.members = [Serve(world, state if instances == 1 else
                              state.with_name(f"{state.name}-{k}"), sink_ports,
                              workers=workers, spool_url=spool_url, processes=processes,
                              adapter=adapter)
                        for k in range(instances)]
        self.world = world

    @property
    def pid(self) -> int:
        return self.members[0].pid

    @property
    def legacy_ports(self) -> list[int]:
        return [m.legacy_port for m in self.members]

    @property
    def trust_ports(self) -> list[int]:
        return [m.trust_port for m in self.members]

    async def start(self) -> None:
        try:
            for m in self.members:  # one after the other: each migrates the schema at start
                await m.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            m.stop()

    def spool_bytes(self) -> int:
        return self.members[0].spool_bytes()

    def rss_peak(self) -> int:
        return max(tree_mem(m.pid)["VmHWM"] for m in self.members)

    def cpu(self) -> dict[str, float]:
        """Summed over the instances and their reaped gpg children; the shared agent once."""
        own = children = 0.0
        for m in self.members:
            o, c = tree_cpu(m.pid)
            own += o
            children += c
        return {"gateway": own, "gpg_children": children,
                "gpg_agent": agent_cpu(self.world.gnupg_gateway)}

    def daemon_cpu(self) -> float:
        """The daemon processes' own CPU seconds (not their translation workers')."""
        return sum(proc_cpu(m.pid)[0] for m in self.members)

    def cpu_each(self) -> list[float]:
        return [sum(tree_cpu(m.pid)) for m in self.members]


class Spy:
    """py-spy sampling every thread of the gateway (collapsed stacks), summarised."""

    def __init__(self, pid: int, out: Path) -> None:
        exe = Path(sys.executable).with_name("py-spy")
        self.out = out
        self.proc = subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record",
                                      "--pid", str(pid), "--format", "raw", "--rate", "100",
                                      "--subprocesses", "-o", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, top: int = 25) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        inclusive: dict[str, int] = {}
        own: dict[str, int] = {}
        total = 0
        for line in self.out.read_text("utf-8", "replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(f) for f in stack.split(";")[1:]]  # [0] is the thread
            total += n
            for f in set(frames):
                inclusive[f] = inclusive.get(f, 0) + n
            if frames:
                own[frames[-1]] = own.get(frames[-1], 0) + n

        def share(d: dict[str, int]) -> dict[str, float]:
            best = sorted(d.items(), key=lambda kv: -kv[1])[:top]
            return {k: round(v / max(1, total), 3) for k, v in best}

        return {"samples": total, "file": str(self.out), "inclusive": share(inclusive),
                "self": share(own)}


def _frame(text: str) -> str:
    """'fn (path/to/file.py:12)' → 'fn (file.py)'."""
    name, _, where = text.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


# -- the load generator --------------------------------------------------------------------

@dataclass
class Sent:
    msgid: str
    started: float
    accepted: float | None
    error: str = ""
    via: int = 0  # which of the ports (instances)


@dataclass
class PushResult:
    sent: list[Sent] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0


async def push(msgs: Sequence[Msg], *, port: int | Sequence[int], tls: ssl.SSLContext,
               concurrency: int, rate: float | None = None) -> PushResult:
    """K persistent STARTTLS connections; each takes the next message (at its scheduled time
    when ``rate`` is given: open loop, up to K in flight).  With several ports (instances)
    connection k goes to port k mod len(ports), as a round-robin TCP balancer would."""
    ports = [port] if isinstance(port, int) else list(port)
    result = PushResult(began=time.monotonic())
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(msgs)):
        queue.put_nowait(i)

    async def connect(port: int) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, tls_context=tls,
                                 start_tls=True, timeout=120, local_hostname="bench.example")
        await client.connect()
        return client

    async def worker(k: int) -> None:
        via = k % len(ports)
        client: aiosmtplib.SMTP | None = None
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if rate is not None:
                delay = result.began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            m = msgs[i]
            started = time.monotonic()
            try:
                if client is None:
                    client = await connect(ports[via])
                    started = time.monotonic()
                await client.sendmail(m.sender, [m.rcpt], m.data)
                result.sent.append(Sent(m.msgid, started, time.monotonic(), via=via))
            except (aiosmtplib.SMTPException, OSError) as exc:
                result.sent.append(Sent(m.msgid, started, None, f"{type(exc).__name__}: {exc}",
                                        via))
                if client is not None:
                    client.close()
                client = None
        if client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    result.ended = time.monotonic()
    return result


def client_tls(world: World, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(world.ca_cert))
    if cert:
        ctx.load_cert_chain(str(world.cert(cert)), str(world.key(cert)))
    return ctx


async def run_phase(name: str, msgs: Sequence[Msg], *, sink: Sink, port: int | Sequence[int],
                    tls: ssl.SSLContext, concurrency: int, rate: float | None = None,
                    gateway: Serve | Fleet | None = None, timeout: float = 600,
                    machine_cpu: bool = False) -> dict[str, Any]:
    """One phase.  ``machine_cpu`` (the several-instances modes) adds, per phase: accepts
    and CPU per instance, PostgreSQL's CPU, the load generator's and sink's, and how many
    cores the whole machine was busy on average."""
    before = gateway.cpu() if gateway is not None else None
    daemon0 = gateway.daemon_cpu() if gateway is not None else 0.0
    # the load generator's and the sink's CPU: on the same cores as the gateway
    own0, sink0 = os.times(), sum(proc_cpu(sink.proc.pid)) if sink.proc is not None else 0.0
    busy0 = busy_cpu()
    if machine_cpu:
        assert isinstance(gateway, Fleet) and sink.proc is not None
        each0 = gateway.cpu_each()
        pg0 = postgres_cpu()
    pushed = await push(msgs, port=port, tls=tls, concurrency=concurrency, rate=rate)
    ok = [s for s in pushed.sent if s.accepted is not None]
    arrived = await sink.wait([s.msgid for s in ok], pushed.began, timeout)
    last = max(arrived.values(), default=pushed.ended)
    span = max(1e-9, last - pushed.began)
    out: dict[str, Any] = {
        "phase": name, "n": len(msgs), "concurrency": concurrency,
        "offered_per_s": round(rate, 1) if rate else None,
        "accepted": len(ok), "refused": len(pushed.sent) - len(ok),
        "errors": sorted({s.error for s in pushed.sent if s.error})[:5],
        "forwarded": len(arrived),
        "seconds": round(span, 2),
        "accepted_per_s": round(len(ok) / max(1e-9, pushed.ended - pushed.began), 1),
        "forwarded_per_s": round(len(arrived) / span, 1),
        "accept_ms": dist([s.accepted - s.started for s in ok if s.accepted]),
        "mean_bytes": round(sum(len(m.data) for m in msgs) / max(1, len(msgs))),
    }
    if gateway is not None:
        await asyncio.sleep(0.2)  # the gateway records the last deliveries
        after = gateway.cpu()
        assert before is not None
        cpu = {k: (after[k] - before[k]) / max(1, len(arrived)) for k in after}
        cpu["total"] = sum(cpu.values())
        out["forward_ms"] = dist([arrived[s.msgid] - s.accepted for s in ok
                                  if s.msgid in arrived and s.accepted])
        out["end_to_end_ms"] = dist([arrived[s.msgid] - s.started for s in ok
                                     if s.msgid in arrived])
        out["cpu_ms_per_msg"] = {k: round(v * 1000, 2) for k, v in cpu.items()}
        daemon = (gateway.daemon_cpu() - daemon0) / max(1, len(arrived))
        out["gateway_cpu_ms_per_msg"] = {"daemon": round(daemon * 1000, 2),
                                         "workers": round((cpu["gateway"] - daemon) * 1000, 2)}
        own1, wall = os.times(), time.monotonic() - pushed.began
        if sink.proc is not None:
            out["loadgen_sink_cpu_ms_per_msg"] = round(
                (own1.user + own1.system - own0.user - own0.system
                 + sum(proc_cpu(sink.proc.pid)) - sink0) / max(1, len(arrived)) * 1000, 2)
        out["cores_busy"] = round((busy_cpu() - busy0) / wall, 2)
        out["rss_peak_mb"] = round(gateway.rss_peak() / 2**20, 1)
        out["spool_mb"] = round(gateway.spool_bytes() / 2**20, 2)
        if machine_cpu:
            assert isinstance(gateway, Fleet) and sink.proc is not None
            busy1 = busy_cpu()
            per = max(1, len(arrived))
            out["instances"] = len(gateway.members)
            out["accepted_by_instance"] = [sum(1 for s in ok if s.via == k)
                                           for k in range(len(gateway.members))]
            out["cpu_ms_per_msg_by_instance"] = [
                round((b - a) / per * 1000, 2) for a, b in zip(each0, gateway.cpu_each(),
                                                               strict=True)]
            out["postgres_cpu_ms_per_msg"] = round((postgres_cpu() - pg0) / per * 1000, 2)
            # what else ran meanwhile (other users of the machine, the kernel): busy minus
            # the gateways, their gpg, PostgreSQL, the load generator and the sink
            ours = (out["cpu_ms_per_msg"]["total"] + out["postgres_cpu_ms_per_msg"]
                    + out["loadgen_sink_cpu_ms_per_msg"]) * per / 1000
            out["other_cores"] = round((busy1 - busy0 - ours) / wall, 2)
    return out


# -- crypto floor --------------------------------------------------------------------------

def crypto_floor(world: World, legacy: Sequence[Msg], trust: Sequence[Msg], threads: int,
                 gateway_config: Path) -> dict[str, Any]:
    """The gateway's own crypto classes in a tight loop, ``threads`` at a time (the gateway
    translates on that many threads), through the legacy adapter the gateway's configuration
    ``gateway_config`` builds (``[legacy] adapter``)."""
    gw = LegacyCrypto(legacy_cipher(config.load(gateway_config)))
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    signer = smime.Smime(identity, TrustAnchors.load([world.ca_cert], [world.crl]))
    fpr = {u.legacy_address: world.fingerprints[u.key] for u in USERS}
    by_trust = {u.trust_address: world.fingerprints[u.key] for u in USERS}

    def to_trust(m: Msg) -> None:
        opened = gw.open(m.data, expected_signer=fpr[m.sender])
        signer.sign(opened.message)

    def to_legacy(m: Msg) -> None:
        content, _ = signer.verify(m.data, at=datetime.now(UTC))
        gw.seal(content, recipient=by_trust[m.rcpt])

    out: dict[str, Any] = {"threads": threads}
    for name, fn, msgs in (("legacy_to_trust", to_trust, legacy),
                           ("trust_to_legacy", to_legacy, trust)):
        c0 = os.times()
        agent0 = agent_cpu(world.gnupg_gateway)
        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, msgs))
        seconds = time.monotonic() - t0
        c1 = os.times()
        cpu = (c1.user + c1.system + c1.children_user + c1.children_system
               - c0.user - c0.system - c0.children_user - c0.children_system
               + agent_cpu(world.gnupg_gateway) - agent0)
        out[name] = {"n": len(msgs), "per_s": round(len(msgs) / seconds, 1),
                     "cpu_ms_per_msg": round(cpu / len(msgs) * 1000, 2)}
    return out


# -- memory check --------------------------------------------------------------------------

async def memory_check(world: World, work: Path, sink: Sink, *, big_bytes: int,
                       workers: int, spool_url: str = "", processes: int = 0
                       ) -> dict[str, Any]:
    hprims = hprim_texts()
    per = max(1, int(big_bytes / 1.37 / 3))
    attachments = [(f"radio-{k}.jpg.bin", os.urandom(per)) for k in range(3)]
    warm = seal_legacy(world, [legacy_plain(0, "memwarm", hprims)], threads=1)
    big = seal_legacy(world, [legacy_plain(0, "membig", hprims, attachments)], threads=1)
    gateway = Serve(world, work / "state-mem", sink.ports, workers=workers,
                    spool_url=spool_url, processes=processes)
    await gateway.start()
    try:
        tls = client_tls(world, None)
        await run_phase("warm", warm, sink=sink, port=gateway.legacy_port, tls=tls,
                        concurrency=1, timeout=60)
        await asyncio.sleep(0.5)
        before = tree_mem(gateway.pid)  # the daemon and its translation workers
        daemon_before = proc_mem(gateway.pid)
        t0 = time.monotonic()
        phase = await run_phase("big", big, sink=sink, port=gateway.legacy_port, tls=tls,
                                concurrency=1, timeout=300, gateway=gateway)
        after = tree_mem(gateway.pid)
        daemon_after = proc_mem(gateway.pid)
    finally:
        gateway.stop()
    growth = after["VmHWM"] - before["VmRSS"]
    return {"message_bytes": len(big[0].data),
            "forwarded_bytes": sink.sizes.get(big[0].msgid, 0),
            "forwarded": phase["forwarded"] == 1,
            "seconds": round(time.monotonic() - t0, 2),
            "rss_before_mb": round(before["VmRSS"] / 2**20, 1),
            "hwm_before_mb": round(before["VmHWM"] / 2**20, 1),
            "hwm_after_mb": round(after["VmHWM"] / 2**20, 1),
            "growth_mb": round(growth / 2**20, 1),
            "daemon_growth_mb": round(
                (daemon_after["VmHWM"] - daemon_before["VmRSS"]) / 2**20, 1),
            "workers_growth_mb": round(
                (after["VmHWM"] - daemon_after["VmHWM"]
                 - before["VmRSS"] + daemon_before["VmRSS"]) / 2**20, 1),
            "growth_x_message": round(growth / len(big[0].data), 2)}


# -- the run -------------------------------------------------------------------------------

async def run(args: argparse.Namespace, work: Path, log: Callable[[str], None]
              ) -> dict[str, Any]:
    if args.scaleout:
        return await run_scaleout(args, work, log)
    t_start = time.monotonic()
    schemas = PgSchemas(args.spool_url) if args.spool_url else None
    several = schemas is not None or args.instances > 1
    world = build_world(work / "world")
    log(f"world built in {time.monotonic() - t_start:.1f} s")
    hprims = hprim_texts()
    n, n_rev, n_half = args.n, args.n_reverse, max(1, args.n // 2)
    t0 = time.monotonic()
    legacy = seal_legacy(world, [legacy_plain(i, "l2t", hprims) for i in range(n)])
    half = seal_legacy(world, [legacy_plain(i, "half", hprims) for i in range(n_half)])
    identity = operator_identity(world, work / "op")
    packages = xdm_packages(world, hprims)
    trust = trust_messages(world, n_rev, "t2l", identity, packages)
    log(f"{n + n_half} legacy messages sealed, {n_rev} trust messages signed "
        f"in {time.monotonic() - t0:.1f} s")
    sink = Sink(world)
    await sink.start()
    report: dict[str, Any] = {
        "machine": machine(), "n": n, "n_reverse": n_rev, "concurrency": args.concurrency,
        "gateway_workers": args.workers, "legacy_adapter": args.legacy_adapter,
        "message_mix": {"legacy": _mix(legacy), "trust": _mix(trust)},
    }
    if schemas is not None:
        report["machine"]["postgresql"] = schemas.server_version()
        report["spool"] = "postgresql"
        report["instances"] = args.instances
    try:
        gw_client = client_tls(world, "gateway-client")
        report["transport_floor"] = {
            "legacy_to_trust": await run_phase(
                "transport legacy→trust", legacy, sink=sink, port=sink.ports["trust"],
                tls=gw_client, concurrency=args.concurrency),
            "trust_to_legacy": await run_phase(
                "transport trust→legacy", trust, sink=sink, port=sink.ports["legacy"],
                tls=client_tls(world, None), concurrency=args.concurrency),
        }
        log("transport floor done")
        gateway = Fleet(world, work / "state", sink.ports, workers=args.workers,
                        instances=args.instances, processes=args.processes,
                        adapter=args.legacy_adapter,
                        spool_url=schemas.new("main") if schemas is not None else "")
        await gateway.start()
        try:
            spy = Spy(gateway.pid, work / "profile-l2t.txt") if args.profile else None
            l2t = await run_phase("gateway legacy→trust", legacy, sink=sink,
                                  port=gateway.legacy_ports, tls=client_tls(world, None),
                                  concurrency=args.concurrency, gateway=gateway,
                                  machine_cpu=several)
            if spy is not None:
                report["profile_legacy_to_trust"] = spy.stop()
            log(f"legacy→trust: {l2t['forwarded_per_s']} msg/s")
            t2l = await run_phase("gateway trust→legacy", trust, sink=sink,
                                  port=gateway.trust_ports,
                                  tls=client_tls(world, "hopital-a-client"),
                                  concurrency=args.concurrency, gateway=gateway,
                                  machine_cpu=several)
            log(f"trust→legacy: {t2l['forwarded_per_s']} msg/s")
            rate = max(1.0, l2t["forwarded_per_s"] / 2)
            halfload = await run_phase("gateway legacy→trust, half load", half, sink=sink,
                                       port=gateway.legacy_ports, tls=client_tls(world, None),
                                       concurrency=args.concurrency, rate=rate,
                                       gateway=gateway, machine_cpu=several)
            log(f"half load: p99 accept→forwarded {halfload['forward_ms']['p99']} ms")
        finally:
            gateway.stop()
        report["gateway"] = {"legacy_to_trust": l2t, "trust_to_legacy": t2l,
                             "legacy_to_trust_half_load": halfload,
                             "spool_mb_end": round(gateway.spool_bytes() / 2**20, 2)}
        report["crypto_floor"] = await asyncio.get_running_loop().run_in_executor(
            None, crypto_floor, world, legacy, trust, args.workers, gateway.members[0].cfg)
        log("crypto floor done")
        report["ratios"] = {
            d: {"of_crypto_floor": round(report["gateway"][d]["forwarded_per_s"]
                                         / report["crypto_floor"][d]["per_s"], 3),
                "of_transport_floor": round(report["gateway"][d]["forwarded_per_s"]
                                            / report["transport_floor"][d]["forwarded_per_s"],
                                            3)}
            for d in ("legacy_to_trust", "trust_to_legacy")}
        if args.big_mb > 0:
            report["memory"] = await memory_check(
                world, work, sink, big_bytes=int(args.big_mb * 2**20), workers=args.workers,
                spool_url=schemas.new("mem") if schemas is not None else "",
                processes=args.processes)
            log("memory check done")
    finally:
        await sink.stop()
        stop_agents(world)
        if schemas is not None:
            schemas.drop_all()
    report["bench_seconds"] = round(time.monotonic() - t_start, 1)
    return report


def stop_agents(world: World) -> None:
    for home in [world.gnupg_gateway, *(Path(h) for h in world.gnupg_users.values())]:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)


SCALEOUT = (("sqlite_1", "1 × SQLite", 1, False), ("postgresql_1", "1 × PostgreSQL", 1, True))


async def run_scaleout(args: argparse.Namespace, work: Path, log: Callable[[str], None]
                       ) -> dict[str, Any]:
    """Legacy → trust at full load, the same N messages, on fresh spools: one instance on
    SQLite, one on PostgreSQL, ``--instances`` on one PostgreSQL database (K connections
    spread round-robin); the transport floor first; no other phase."""
    t_start = time.monotonic()
    schemas = PgSchemas(args.spool_url)
    world = build_world(work / "world")
    log(f"world built in {time.monotonic() - t_start:.1f} s")
    t0 = time.monotonic()
    legacy = seal_legacy(world, [legacy_plain(i, "l2t", hprim_texts()) for i in range(args.n)])
    log(f"{args.n} legacy messages sealed in {time.monotonic() - t0:.1f} s")
    sink = Sink(world)
    await sink.start()
    report: dict[str, Any] = {
        "machine": {**machine(), "postgresql": schemas.server_version(),
                    "loadavg_before": os.getloadavg()[0]},
        "mode": "scaleout", "schema_tag": schemas.tag, "n": args.n, "concurrency": args.concurrency,
        "gateway_workers": args.workers, "message_mix": {"legacy": _mix(legacy)},
    }
    configs = [*SCALEOUT, (f"postgresql_{args.instances}",
                           f"{args.instances} × PostgreSQL", args.instances, True)]
    try:
        report["transport_floor"] = {"legacy_to_trust": await run_phase(
            "transport legacy→trust", legacy, sink=sink, port=sink.ports["trust"],
            tls=client_tls(world, "gateway-client"), concurrency=args.concurrency)}
        log("transport floor done")
        report["scaleout"] = {}
        for key, label, instances, pg in configs:
            gateway = Fleet(world, work / f"state-{key}", sink.ports, workers=args.workers,
                            instances=instances, processes=args.processes,
                            adapter=args.legacy_adapter,
                            spool_url=schemas.new(key) if pg else "")
            await gateway.start()
            try:
                phase = await run_phase(f"legacy→trust {label}", legacy, sink=sink,
                                        port=gateway.legacy_ports, tls=client_tls(world, None),
                                        concurrency=args.concurrency, gateway=gateway,
                                        machine_cpu=True)
            finally:
                gateway.stop()
            phase["spool"] = "postgresql" if pg else "sqlite"
            report["scaleout"][key] = phase
            log(f"{label}: {phase['forwarded_per_s']} msg/s, "
                f"p99 accept→forwarded {phase['forward_ms']['p99']} ms, "
                f"cores busy {phase['cores_busy']}")
    finally:
        await sink.stop()
        stop_agents(world)
        schemas.drop_all()
    one, two = report["scaleout"][configs[1][0]], report["scaleout"][configs[2][0]]
    report["scaleout_gain"] = round(two["forwarded_per_s"] / max(1e-9, one["forwarded_per_s"]),
                                    3)
    report["bench_seconds"] = round(time.monotonic() - t_start, 1)
    return report


def _mix(msgs: Sequence[Msg]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in msgs:
        out[m.kind] = out.get(m.kind, 0) + 1
    return out


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"machine: {m['nproc']} × {m['cpu']}, Python {m['python']}, gpg {m['gpg']} "
             f"(libgcrypt {m['libgcrypt']}); N = {r['n']} / {r['n_reverse']}, "
             f"K = {r['concurrency']} connections, {r['gateway_workers']} translate workers",
             "",
             f"{'phase':34} {'msg/s':>7} {'accept p50/p95/p99 ms':>22} "
             f"{'fwd p50/p95/p99 ms':>22} {'CPU ms/msg':>10} {'RSS MB':>7} {'spool MB':>8}"]
    rows = [*r["transport_floor"].values(), *r["gateway"].values()]
    for p in rows:
        if not isinstance(p, dict):
            continue
        a = p["accept_ms"]
        f = p.get("forward_ms")
        lines.append(
            f"{p['phase']:34} {p['forwarded_per_s']:>7} "
            f"{a['p50']:>6}/{a['p95']}/{a['p99']:<8}"
            + (f"{f['p50']:>8}/{f['p95']}/{f['p99']:<8}" if f else f"{'-':>22}")
            + (f" {p['cpu_ms_per_msg']['total']:>10} {p['rss_peak_mb']:>7} {p['spool_mb']:>8}"
               if f else ""))
    cf = r["crypto_floor"]
    lines += ["", f"crypto floor ({cf['threads']} threads): "
              + ", ".join(f"{d} {cf[d]['per_s']} msg/s ({cf[d]['cpu_ms_per_msg']} ms CPU)"
                          for d in ("legacy_to_trust", "trust_to_legacy"))]
    for d, ratio in r["ratios"].items():
        lines.append(f"gateway {d}: {ratio['of_crypto_floor']:.0%} of the crypto floor, "
                     f"{ratio['of_transport_floor']:.0%} of the transport floor")
    if "memory" in r:
        mem = r["memory"]
        lines.append(f"memory: {mem['message_bytes'] / 2**20:.1f} MB message "
                     f"{'forwarded' if mem['forwarded'] else 'NOT forwarded'} in "
                     f"{mem['seconds']} s; RSS {mem['rss_before_mb']} → peak "
                     f"{mem['hwm_after_mb']} MB (growth {mem['growth_mb']} MB = "
                     f"{mem['growth_x_message']}× the message)")
    return "\n".join(lines)


def table_scaleout(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"machine: {m['nproc']} × {m['cpu']}, Python {m['python']}, gpg {m['gpg']} "
             f"(libgcrypt {m['libgcrypt']}), PostgreSQL {m['postgresql']}; "
             f"load average before {m['loadavg_before']:.2f}; N = {r['n']} legacy → trust, "
             f"K = {r['concurrency']} connections, {r['gateway_workers']} translate workers "
             "per instance", "",
             f"{'legacy → trust':24} {'msg/s':>7} {'accepts/s':>9} "
             f"{'fwd p50/p95/p99 ms':>24} {'CPU ms/msg':>10} {'PG ms/msg':>9} "
             f"{'gen+sink':>8} {'cores busy (others)':>19}"]
    floor = r["transport_floor"]["legacy_to_trust"]
    lines.append(f"{'transport floor':24} {floor['forwarded_per_s']:>7} "
                 f"{floor['accepted_per_s']:>9}")
    for p in r["scaleout"].values():
        f = p["forward_ms"]
        lines.append(
            f"{p['phase'].removeprefix('legacy→trust '):24} {p['forwarded_per_s']:>7} "
            f"{p['accepted_per_s']:>9} {f['p50']:>9}/{f['p95']}/{f['p99']:<8} "
            f"{p['cpu_ms_per_msg']['total']:>10.1f} {p['postgres_cpu_ms_per_msg']:>9.1f} "
            f"{p['loadgen_sink_cpu_ms_per_msg']:>8.1f} "
            f"{p['cores_busy']:>11} ({p['other_cores']})")
    lines += ["", f"{list(r['scaleout'].values())[-1]['instances']} instances ÷ 1 (PostgreSQL):"
              f" {r['scaleout_gain']:.2f} ×"]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        asyncio.run(sink_main(Path(sys.argv[2])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None,
                    help="legacy → trust messages (default 1000; 600 with --scaleout)")
    ap.add_argument("--n-reverse", type=int, default=None, help="trust → legacy (default N)")
    ap.add_argument("--concurrency", type=int, default=8, help="SMTP connections (K)")
    ap.add_argument("--workers", type=int, default=4, help="gateway translate workers")
    ap.add_argument("--processes", type=int, default=0,
                    help="gateway translation worker processes (0: the gateway's default)")
    ap.add_argument("--big-mb", type=float, default=25, help="memory check size (0: skip)")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--workdir", type=Path, help="keep the world, logs and spools here")
    ap.add_argument("--profile", action="store_true",
                    help="sample the gateway (all threads) with py-spy during the "
                         "legacy → trust phase (perturbs the figures: profile apart)")
    ap.add_argument("--spool-url", default="",
                    help="PostgreSQL spool (postgresql://…): the gateways use fresh schemas "
                         "of that database, made and dropped by this script")
    ap.add_argument("--instances", type=int, default=None,
                    help="passerelle serve processes on that one spool, each with its own "
                         "ports and state directory; the K connections are spread over them "
                         "round-robin (default 1; 2 with --scaleout)")
    ap.add_argument("--scaleout", action="store_true",
                    help="only legacy → trust at full load: 1 instance on SQLite, 1 on "
                         "PostgreSQL, --instances on PostgreSQL (needs --spool-url)")
    ap.add_argument("--legacy-adapter", choices=("openpgp", "sop"), default="openpgp",
                    help="the gateway's legacy.adapter, also used by the crypto floor "
                         "(sop: needs sqop)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    args.n = (600 if args.scaleout else 1000) if args.n is None else args.n
    args.n_reverse = args.n if args.n_reverse is None else args.n_reverse
    args.instances = (2 if args.scaleout else 1) if args.instances is None else args.instances
    if args.spool_url and not args.spool_url.startswith(("postgresql://", "postgres://")):
        ap.error("--spool-url must be a postgresql:// URL")
    if args.instances < 1 or (args.instances > 1 and not args.spool_url):
        ap.error("--instances N > 1 needs --spool-url (several instances share PostgreSQL)")
    if args.scaleout and (not args.spool_url or args.instances < 2):
        ap.error("--scaleout needs --spool-url and --instances ≥ 2")

    def log(text: str) -> None:
        if not args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run(args, args.workdir, log))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="pload"))
        try:
            report = asyncio.run(run(args, tmp, log))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(table_scaleout(report) if args.scaleout else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
