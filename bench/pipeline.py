#!/usr/bin/env python3
"""Where a message's time goes inside the gateway, and what the alternatives would give.

Runs the daemon's own translation pipeline (gateway.translate.factory.build_translator on the
world's configuration) in this process, on the same messages as bench/load.py:

  * per-stage time (the trace's timings: open, repair, documents, compose, sign) for letters
    and HPRIM reports, serial;
  * throughput of ``to_trust`` on T threads (what the daemon does) and on P processes (a
    process pool: what the GIL costs);
  * the legacy open of one part (decrypt + verify), on a 20 KB letter and on 20 KB that do
    not compress, by each means: gpg through python-gnupg (the adapter), a bare gpg process
    (and what gpg's start and keyring cost), and in-process — pysequoia, PGPy and
    johnnycanencrypt, each if installed (``pip install -e '.[bench-alt]'``); wall time and
    CPU per operation (this process, the reaped gpg children, the gpg-agent);
  * parts each of them must refuse (a signature over another text, by a revoked key, by an
    expired key — made with PGPy);
  * a long-lived ``gpg --server``: several DECRYPTs in one process (bounded waits);
  * with --profile, a pyinstrument profile of ``to_trust`` (serial).

Usage: python bench/pipeline.py [--n 200] [--threads 4] [--processes 2] [--profile]
                                [--open-only] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadkit.measure import agent_cpu, machine  # noqa: E402
from loadkit.messages import Msg, hprim_texts, legacy_plain, letter_text, seal_legacy  # noqa: E402

from gateway import config  # noqa: E402
from gateway.crypto.openpgp import OpenPgpCipher, _status  # noqa: E402
from gateway.crypto.sop import SopCipher, _memfd  # noqa: E402
from gateway.crypto.world import USERS, World, build_world  # noqa: E402
from gateway.translate.factory import build_translator  # noqa: E402
from gateway.translate.pipeline import Envelope, Translator  # noqa: E402

_TRANSLATOR: Translator | None = None


def _translator(cfg: Path) -> Translator:
    global _TRANSLATOR
    if _TRANSLATOR is None:
        _TRANSLATOR = build_translator(config.load(cfg))
    return _TRANSLATOR


def _to_trust(cfg: Path, m: Msg) -> dict[str, float]:
    t = _translator(cfg).to_trust(m.data, Envelope(m.sender, (m.rcpt,)), now=datetime.now(UTC))
    return dict(t.trace.timings)


def throughput(pool: Executor, cfg: Path, msgs: Sequence[Msg]) -> float:
    list(pool.map(_to_trust, [cfg] * min(8, len(msgs)), msgs[:8]))  # warm every worker
    t0 = time.monotonic()
    list(pool.map(_to_trust, [cfg] * len(msgs), msgs))
    return round(len(msgs) / (time.monotonic() - t0), 1)


# -- the legacy open: alternatives to one gpg process per operation ------------------------

GPG_TIMEOUT = 30.0
UNPROTECTED = ("--pinentry-mode", "loopback", "--passphrase", "")
LEAN = ("--no-auto-check-trustdb", "--no-random-seed-file", "--quiet", "--no-greeting",
        "--no-permission-warning")
SERVER_STATUS = {"GOODSIG", "BADSIG", "ERRSIG", "VALIDSIG", "DECRYPTION_OKAY",
                 "DECRYPTION_FAILED", "ERROR", "FAILURE"}

# An opener decrypts a part and says whether its signature was verified: True, False, or
# None when the library does not check it at all.
Opener = Callable[[bytes], tuple[bytes, bool | None]]


@dataclass
class Keys:
    """The gateway's GnuPG home, and its keys exported for the in-process libraries."""

    home: Path
    fingerprint: str
    secret: bytes  # the gateway's secret key, exported unprotected
    signer: bytes  # the signer's (dupont's) public key
    signer_fingerprint: str
    publics: bytes  # every public key of the gateway's keyring


@dataclass
class Part:
    body: bytes
    sealed: bytes  # gpg's default output: signed, compressed, encrypted, armoured
    uncompressed: bytes  # the same with --compress-algo none


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], input=data,
                          capture_output=True, check=True, timeout=GPG_TIMEOUT).stdout


def make_keys(world: World) -> Keys:
    home, gw = world.gnupg_gateway, world.fingerprints["gateway"]
    return Keys(home=home, fingerprint=gw,
                secret=_gpg(home, *UNPROTECTED, "--export-secret-keys", gw),
                signer=_gpg(home, "--export", world.fingerprints["dupont"]),
                signer_fingerprint=world.fingerprints["dupont"],
                publics=_gpg(home, "--export"))


def make_part(world: World, body: bytes) -> Part:
    """``body`` sealed by dupont for the gateway, as his legacy client (gpg) would."""
    user_home = Path(world.gnupg_users["dupont"])
    user = OpenPgpCipher(user_home, gateway_fingerprint=world.fingerprints["dupont"])
    gw = world.fingerprints["gateway"]
    return Part(body=body, sealed=user.encrypt_sign(body, recipient=gw).data,
                uncompressed=_gpg(user_home, "--trust-model", "always", "--armor",
                                  "--compress-algo", "none", "--sign", "--encrypt", "-r", gw,
                                  data=body))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cost(fn: Callable[[], object], n: int, agent_home: Path | None = None) -> dict[str, float]:
    """Per operation, after one warm-up call: median wall time, and mean CPU of this process
    (every thread), of its reaped children (gpg) and of the gpg-agent serving agent_home."""
    fn()
    walls = []
    self0, gpg0 = time.process_time(), _children_cpu()
    agent0 = agent_cpu(agent_home) if agent_home else 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    cpu = {"self": time.process_time() - self0, "gpg": _children_cpu() - gpg0,
           "agent": agent_cpu(agent_home) - agent0 if agent_home else 0.0}
    out = {"wall_ms": ms(statistics.median(walls)), "cpu_ms": ms(sum(cpu.values()) / n)}
    out.update({f"cpu_{k}_ms": ms(v / n) for k, v in cpu.items() if v})
    return out


def _error(exc: Exception) -> str:
    text = str(exc).splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def pgpy_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Records PGPy's own warnings (the checks it does not implement); ignores the rest, such
    as cryptography's notices about the ciphers PGPy imports from their old place."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", category=UserWarning, module="pgpy")
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        yield caught


def pgpy_sealed(world: World, keys: Keys, signer: str, body: bytes, signed: bytes) -> bytes:
    """``body`` encrypted to the gateway, with a signature by user ``signer`` over ``signed``
    (the same bytes, or another text): made with PGPy, which signs with any key it is given."""
    from pgpy import PGPKey, PGPMessage

    key, _ = PGPKey.from_blob(_gpg(Path(world.gnupg_users[signer]), *UNPROTECTED,
                                   "--export-secret-keys", world.fingerprints[signer]))
    gateway, _ = PGPKey.from_blob(_gpg(keys.home, "--export", keys.fingerprint))
    msg = PGPMessage.new(body)
    msg |= key.sign(PGPMessage.new(signed))
    return str(gateway.encrypt(msg)).encode()


def unacceptable(world: World, keys: Keys, body: bytes) -> dict[str, bytes] | None:
    """Parts every opener must refuse (None without PGPy to make them)."""
    try:
        import pgpy  # noqa: F401
    except ImportError:
        return None
    return {"signature over another text": pgpy_sealed(world, keys, "dupont", body, b"other"),
            "signed by a revoked key": pgpy_sealed(world, keys, "revoque", body, body),
            "signed by an expired key": pgpy_sealed(world, keys, "perime", body, body)}


# Openers: each returns None when its library is not installed.

def adapter_opener(keys: Keys) -> Opener:
    adapter = OpenPgpCipher(keys.home, gateway_fingerprint=keys.fingerprint)

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        return adapter.decrypt_verify(data).plaintext, True  # raises unless verified

    return open_


def sop_adapter_opener(keys: Keys) -> Opener | None:
    """The sop adapter (``legacy.adapter = "sop"``), told the expected signer (dupont) as the
    gateway tells it: sqop verifies against his certificate, gpg decides what sqop refuses."""
    if shutil.which("sqop") is None:
        return None
    adapter = SopCipher(keys.home, gateway_fingerprint=keys.fingerprint)

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        return adapter.decrypt_verify(data, signer=keys.signer_fingerprint).plaintext, True

    return open_


def rnp_adapter_opener(keys: Keys) -> Opener | None:
    """The rnp adapter (``legacy.adapter = "rnp"``), in-process through librnp, told the
    expected signer as the gateway tells it; gpg decides what librnp does not accept."""
    from gateway.crypto import rnp

    if not rnp.available():
        return None
    adapter = rnp.RnpCipher(keys.home, gateway_fingerprint=keys.fingerprint)

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        return adapter.decrypt_verify(data, signer=keys.signer_fingerprint).plaintext, True

    return open_


def sqop_opener(keys: Keys) -> Opener | None:
    """``sqop decrypt`` alone, one process per part: the gateway's key and every public key of
    its keyring passed in memory files; verified = a verification line came out."""
    if shutil.which("sqop") is None:
        return None

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        with _memfd(keys.secret) as key, _memfd(keys.publics) as certs, _memfd() as out:
            done = subprocess.run(["sqop", "decrypt", f"--verifications-out=@FD:{out}",
                                   f"--verify-with=@FD:{certs}", f"@FD:{key}"],
                                  input=data, capture_output=True, pass_fds=[key, certs, out],
                                  timeout=GPG_TIMEOUT, check=False)
            verified = bool(os.pread(out, 4096, 0).strip())
        if done.returncode != 0:
            raise RuntimeError(f"sqop exit {done.returncode}: "
                               f"{done.stderr.decode('utf-8', 'replace').strip()}")
        return done.stdout, verified

    return open_


def pysequoia_opener(keys: Keys, *, verify: bool = True) -> Opener | None:
    try:
        import pysequoia
    except ImportError:
        return None
    decryptor = pysequoia.Tsk.from_bytes(keys.secret).decryptor()
    certs = pysequoia.Cert.split_bytes(keys.publics)

    def store(_ids: list[str]) -> list[Any]:
        return certs

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        if not verify:
            return pysequoia.decrypt(data, decryptor=decryptor).bytes, None
        got = pysequoia.decrypt(data, decryptor=decryptor, store=store)
        return got.bytes, bool(got.valid_sigs)

    return open_


def pgpy_opener(keys: Keys) -> Opener | None:
    try:
        from pgpy import PGPKey, PGPKeyring, PGPMessage
    except ImportError:
        return None
    key, _ = PGPKey.from_blob(keys.secret)
    keyring = PGPKeyring(keys.publics)  # the signer's key is found by the signature's key id

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        opened = key.decrypt(PGPMessage.from_blob(data))
        text = opened.message
        plain = text.encode("latin-1") if isinstance(text, str) else bytes(text)
        signers = {sig.signer for sig in opened.signatures}
        verified = bool(signers)
        for signer in signers:
            with keyring.key(signer) as cert:
                verified = verified and bool(cert.verify(opened))
        return plain, verified

    return open_


def johnny_opener(keys: Keys) -> Opener | None:
    try:
        import johnnycanencrypt as jce
    except ImportError:
        return None
    johnny = jce.Johnny(keys.secret)  # decrypt_bytes takes no signer certificate

    def open_(data: bytes) -> tuple[bytes, bool | None]:
        return bytes(johnny.decrypt_bytes(data, "")), None

    return open_


def openers(keys: Keys) -> dict[str, Opener | None]:
    return {"gpg via python-gnupg (adapter)": adapter_opener(keys),
            "sop adapter (sqop, gpg on refusal)": sop_adapter_opener(keys),
            "rnp adapter (librnp in-process, gpg on refusal)": rnp_adapter_opener(keys),
            "sqop decrypt, bare": sqop_opener(keys),
            "pysequoia": pysequoia_opener(keys),
            "pysequoia, decrypt only": pysequoia_opener(keys, verify=False),
            "PGPy": pgpy_opener(keys),
            "johnnycanencrypt": johnny_opener(keys)}


VERDICT = {True: "decrypt + verify ok", False: "decrypts, signature NOT valid",
           None: "decrypts, signature not checked"}


def opener_row(open_: Opener | None, data: bytes, body: bytes, n: int,
               agent_home: Path | None = None) -> dict[str, Any]:
    if open_ is None:
        return {"result": "not installed"}
    try:
        plain, verified = open_(data)
    except Exception as exc:
        return {"result": f"fails: {_error(exc)}"}
    if plain != body:
        return {"result": "wrong plaintext"}
    return {"result": VERDICT[verified], **cost(partial(open_, data), n, agent_home)}


def refusal(open_: Opener | None, data: bytes) -> str:
    if open_ is None:
        return "not installed"
    try:
        _, verified = open_(data)
    except Exception as exc:
        return f"refused: {_error(exc)}"
    return {True: "ACCEPTED as verified", False: "refused (signature invalid)",
            None: "decrypted, signature not checked"}[verified]


def johnny_verify_after(keys: Keys, part: Part) -> str:
    """Can johnnycanencrypt check the signature once the part is decrypted?"""
    try:
        import johnnycanencrypt as jce
    except ImportError:
        return "not installed"
    plain = jce.Johnny(keys.secret).decrypt_bytes(part.sealed, "")
    try:
        jce.Johnny(keys.signer).verify_and_extract_bytes(plain)
    except Exception as exc:
        return f"fails: {_error(exc)}"
    return "verifies"


def gpg_process_rows(keys: Keys, part: Part, n: int) -> dict[str, Any]:
    """What one gpg process costs: start, keyring, decrypt + verify (plain and lean); and
    starting sqop."""
    base = ["gpg", "--homedir", str(keys.home), "--batch"]
    decrypt = ["--trust-model", "always", "--status-fd", "2", "--decrypt"]

    def run(*args: str, verified: bool = False) -> Callable[[], None]:
        def op() -> None:
            proc = subprocess.run([*base, *args], input=part.sealed if verified else None,
                                  capture_output=True, check=False, timeout=GPG_TIMEOUT)
            if verified and "VALIDSIG" not in _status(proc.stderr.decode("latin-1")):
                raise RuntimeError("gpg did not verify the part")
        return op

    rows = {"gpg --version": cost(run("--version"), n),
            "gpg --list-keys": cost(run("--list-keys"), n),
            "gpg --decrypt, bare subprocess": cost(run(*decrypt, verified=True), n, keys.home),
            "gpg --decrypt, bare subprocess, lean options": cost(
                run(*LEAN, *decrypt, verified=True), n, keys.home)}
    if shutil.which("sqop") is not None:
        rows["sqop version"] = cost(partial(subprocess.run, ["sqop", "version"],
                                            capture_output=True, check=True), n)
    return rows


def adapter_threads(keys: Keys, part: Part, n: int) -> dict[str, float]:
    adapter = OpenPgpCipher(keys.home, gateway_fingerprint=keys.fingerprint)
    out = {}
    for threads in (2, 4, 8):
        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: adapter.decrypt_verify(part.sealed), range(n * 2)))
        out[f"{threads} threads"] = round(n * 2 / (time.monotonic() - t0), 1)
    return out


class Assuan:
    """The client end of an Assuan connection over a Unix socket (so fds can be passed)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self.buf = b""

    def reply(self) -> str:
        """The line that ends the server's reply (OK, ERR or INQUIRE), or why there is none."""
        try:
            while True:
                line, sep, rest = self.buf.partition(b"\n")
                if not sep:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return "connection closed"
                    self.buf += chunk
                    continue
                self.buf = rest
                text = line.decode("utf-8", "replace")
                if text.startswith(("OK", "ERR", "INQUIRE")):
                    return text
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"connection lost ({exc.strerror})"

    def command(self, line: str, fd: int | None = None) -> str:
        data = line.encode() + b"\n"
        try:
            if fd is None:
                self.sock.sendall(data)
            else:
                socket.send_fds(self.sock, [data], [fd])
        except OSError as exc:
            return f"send failed ({exc.strerror})"
        return self.reply()


def _drain(fd: int) -> list[str]:
    """The gpg status keywords waiting on a non-blocking pipe (ERROR and FAILURE with args)."""
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    out = []
    for line in data.decode("latin-1").splitlines():
        keyword, _, args = line.removeprefix("[GNUPG:] ").partition(" ")
        if keyword in SERVER_STATUS:
            out.append(f"{keyword} {args}" if keyword in ("ERROR", "FAILURE") else keyword)
    return out


def _server_op(client: Assuan, status: int, part: Part) -> dict[str, Any]:
    """INPUT FD, OUTPUT FD (each fd sent with its command line), DECRYPT."""
    with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as dst:
        src.write(part.sealed)
        src.flush()
        src.seek(0)
        t0 = time.perf_counter()
        reply = client.command("INPUT FD", src.fileno())
        if reply == "OK":
            reply = client.command("OUTPUT FD", dst.fileno())
        if reply == "OK":
            reply = client.command("DECRYPT")
        wall = time.perf_counter() - t0
        dst.seek(0)
        plain = dst.read()
    got = ("correct" if plain == part.body else "none" if not plain
           else f"wrong ({len(plain)} bytes)")
    return {"reply": reply, "wall_ms": ms(wall), "plaintext": got, "status": _drain(status)}


def _server_session(client: Assuan, proc: subprocess.Popen[bytes], status: int, part: Part,
                    ops: int, reset: bool) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = []
    for i in range(ops):
        if reset and i:
            done[-1]["then RESET"] = client.command("RESET")
        done.append(_server_op(client, status, part))
        done[-1]["gpg alive after"] = proc.poll() is None
        if proc.poll() is not None:
            break
    return done


def _stop(proc: subprocess.Popen[bytes], client: Assuan, timeout: float) -> int | str:
    if proc.poll() is None:
        client.command("BYE")
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
        return "killed"


def gpg_server_probe(keys: Keys, part: Part, ops: int = 3, *, reset: bool = False,
                     timeout: float = 10.0) -> dict[str, Any]:
    """Several DECRYPTs in one long-lived ``gpg --server``. Its pipe server refuses fds, but
    libassuan switches to a Unix socket (with fd passing) when the environment names one in
    ``_assuan_connection_fd``. Every wait is bounded by ``timeout``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    status_r, status_w = os.pipe()
    os.set_blocking(status_r, False)
    cpu0, t0 = _children_cpu(), time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            ["gpg", "--homedir", str(keys.home), "--server", "--batch", "--no-tty",
             "--trust-model", "always", "--status-fd", str(status_w)],
            pass_fds=(theirs.fileno(), status_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "_assuan_connection_fd": str(theirs.fileno())})
        theirs.close()
        os.close(status_w)
        client = Assuan(ours, timeout)
        report: dict[str, Any] = {"greeting": client.reply(),
                                  "start_ms": ms(time.perf_counter() - t0)}
        try:
            report["ops"] = _server_session(client, proc, status_r, part, ops, reset)
        finally:
            report["exit"] = _stop(proc, client, timeout)
            ours.close()
            os.close(status_r)
        stderr.seek(0)
        lines = stderr.read().decode("utf-8", "replace").splitlines()
    report["gpg_cpu_ms_total"] = ms(_children_cpu() - cpu0)
    report["stderr"] = list(dict.fromkeys(
        ln for ln in lines if any(w in ln for w in ("WARNING", "BAD", "failed", "rror"))))
    return report


def part_rows(keys: Keys, part: Part, n: int) -> dict[str, Any]:
    rows: dict[str, Any] = {"part_bytes": len(part.sealed)}
    for label, open_ in openers(keys).items():
        rows[label] = opener_row(open_, part.sealed, part.body, n,
                                 keys.home if "adapter" in label else None)
    rows["pysequoia, uncompressed message"] = opener_row(
        pysequoia_opener(keys), part.uncompressed, part.body, n)
    return rows


def open_alternatives(world: World, n: int) -> dict[str, Any]:
    """The legacy open of one part — decrypt + verify — by each means available: on a 20 KB
    letter (prose: gpg compresses it ~3×) and on 20 KB that do not compress."""
    keys = make_keys(world)
    letter = make_part(world, letter_text(1).encode("cp1252", "replace"))
    noise = make_part(world, random.Random(0).randbytes(20480))
    with pgpy_warnings() as caught:
        bad = unacceptable(world, keys, letter.body)
        means = openers(keys)
        out: dict[str, Any] = {
            "n": n, "versions": {d: _version(d) for d in ("pysequoia", "pgpy", "johnnycanencrypt")},
            "gpg process": gpg_process_rows(keys, letter, n),
            "20 KB letter": part_rows(keys, letter, n),
            "20 KB incompressible": part_rows(keys, noise, n),
            "must be refused (made with PGPy)": {
                case: {label: refusal(open_, data) for label, open_ in means.items()}
                for case, data in bad.items()} if bad else "PGPy not installed",
            "johnnycanencrypt verify_and_extract_bytes after decrypt_bytes":
                johnny_verify_after(keys, letter),
            "adapter on threads, per_s": adapter_threads(keys, letter, n)}
    out["PGPy's own warnings"] = sorted({re.sub(r" at 0x[0-9A-Fa-f]+", "", str(w.message))
                                         for w in caught})
    out["gpg --server"] = {"3 DECRYPTs": gpg_server_probe(keys, letter),
                           "3 DECRYPTs, RESET between": gpg_server_probe(keys, letter,
                                                                          reset=True)}
    return out


def stages_report(world: World, args: argparse.Namespace) -> dict[str, Any]:
    """Per-stage medians, serial; to_trust on threads and on processes; the profile."""
    hprims = hprim_texts()
    msgs = seal_legacy(world, [legacy_plain(i, "pipe", hprims) for i in range(args.n)])
    cfg = world.config
    report: dict[str, Any] = {}
    stages: dict[str, dict[str, list[float]]] = {}
    t0 = time.monotonic()
    for m in msgs:
        for stage, s in _to_trust(cfg, m).items():
            stages.setdefault(m.kind, {}).setdefault(stage, []).append(s)
    report["serial_per_s"] = round(len(msgs) / (time.monotonic() - t0), 1)
    report["stage_ms_median"] = {
        kind: {st: round(statistics.median(v) * 1000, 2) for st, v in per.items()}
        for kind, per in stages.items()}
    with ThreadPoolExecutor(args.threads) as pool:
        report[f"to_trust_{args.threads}_threads_per_s"] = throughput(pool, cfg, msgs)
    with ProcessPoolExecutor(args.processes) as ppool:
        report[f"to_trust_{args.processes}_processes_per_s"] = throughput(ppool, cfg, msgs)
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        for m in msgs:
            _to_trust(cfg, m)
        profiler.stop()
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        (ROOT / "bench" / "last-profile.txt").write_text(text, "utf-8")
        report["profile"] = "bench/last-profile.txt"
    return report


def _cell(row: dict[str, Any]) -> str:
    if "wall_ms" not in row:
        return str(row.get("result", row))
    split = " + ".join(f"{k[4:-3]} {row[k]}" for k in row
                       if k.startswith("cpu_") and k != "cpu_ms")
    head = f"{row['result']}: " if "result" in row else ""
    return f"{head}{row['wall_ms']} ms wall, {row['cpu_ms']} ms CPU ({split})"


def open_table(o: dict[str, Any]) -> str:
    """The legacy open's rows, one line each: result, wall median and CPU per operation."""
    lines = [f"legacy open of one part, per operation (n = {o['n']}), "
             + ", ".join(f"{d} {v}" for d, v in o["versions"].items()) + ":"]
    for section in ("gpg process", "20 KB letter", "20 KB incompressible"):
        lines.append(f" {section}:")
        lines += [f"  {label:<46} " + (_cell(row) if isinstance(row, dict) else str(row))
                  for label, row in o[section].items()]
    refused = o["must be refused (made with PGPy)"]
    for case, verdicts in refused.items() if isinstance(refused, dict) else ():
        lines.append(f" {case}:")
        lines += [f"  {label:<46} {verdict}" for label, verdict in verdicts.items()]
    lines.append(" johnnycanencrypt verify_and_extract_bytes after decrypt_bytes: "
                 + o["johnnycanencrypt verify_and_extract_bytes after decrypt_bytes"])
    lines.append(" adapter on threads, per_s: " + "; ".join(
        f"{k}: {v}" for k, v in o["adapter on threads, per_s"].items()))
    for label, probe in o["gpg --server"].items():
        for i, op in enumerate(probe.get("ops", []), 1):
            lines.append(f" gpg --server, {label}, op {i}: {op['reply']}, {op['wall_ms']} ms, "
                         f"plaintext {op['plaintext']}, {' '.join(op['status'])}; "
                         f"gpg alive after: {op['gpg alive after']}")
        lines.append(f" gpg --server, {label}: exit {probe['exit']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--open-only", action="store_true",
                    help="only the legacy open's alternatives (n = min(N, 100) operations each)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report: dict[str, Any] = {"machine": machine(), "n": args.n,
                              "date": datetime.now(UTC).date().isoformat()}
    with tempfile.TemporaryDirectory(prefix="ppipe") as tmp:
        world = build_world(Path(tmp) / "w")
        try:
            if not args.open_only:
                report.update(stages_report(world, args))
            report["open"] = open_alternatives(world, min(args.n, 100))
        finally:
            for home in [world.gnupg_gateway, *(Path(world.gnupg_users[u.key]) for u in USERS)]:
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                               capture_output=True, check=False, timeout=GPG_TIMEOUT)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    print(open_table(report["open"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
