#!/usr/bin/env python3
"""Per-message cost of the cryptography on this machine.

Measures, on a 20 KB letter, with the keys of a fresh `pki demo` world:
  * open = decrypt + verify of one legacy message part (one gpg process, python-gnupg);
  * the bare cost of spawning gpg (`gpg --version`), to see how much of `open` is spawn;
  * S/MIME detached signature (cryptography), and sign + self-verification;
  * seal = sign + encrypt for a legacy recipient.
Usage: python bench/crypto.py [-n N] [--json]

With ``--adapters``: the CPU per part of each legacy adapter (gpg, sop, rnp) opening and
sealing that letter, for each key family — the world's Ed25519/Cv25519 keys, and RSA-2048 and
RSA-3072 keys made here.  CPU = this process's + its waited children's (gpg, sqop) + the
gpg-agents' of the homes used (read from /proc), per part, after a warm-up.
Usage: python bench/crypto.py --adapters [-n N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.crypto import smime  # noqa: E402
from gateway.crypto.openpgp import OpenPgpCipher  # noqa: E402
from gateway.crypto.pki import TrustAnchors  # noqa: E402
from gateway.crypto.world import build_world  # noqa: E402


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _machine() -> str:
    return (f"{platform.machine()}, {platform.python_implementation()} "
            f"{platform.python_version()}, gpg "
            + subprocess.run(["gpg", "--version"], capture_output=True,
                             text=True).stdout.split()[2])


def _agents_cpu(homes: list[Path]) -> float:
    """CPU seconds used so far by the gpg-agents of ``homes``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    wanted = [str(h).encode() for h in homes]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"gpg-agent" not in cmd or not any(w in cmd for w in wanted):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _own_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _rsa_pair(root: Path, bits: int) -> tuple[Path, str, Path, str]:
    """A gateway home and a user home with RSA-``bits`` keys (no passphrase), each holding the
    other's certificate: (gateway home, its fingerprint, user home, its fingerprint)."""
    out: list[tuple[Path, str]] = []
    for name in ("gateway", "user"):
        home = root / f"{name}-rsa{bits}"
        home.mkdir(mode=0o700, parents=True)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quiet"]
        subprocess.run([*gpg, "--quick-gen-key", f"{name}-rsa{bits}@bench.example",
                        f"rsa{bits}", "sign", "never"], check=True, capture_output=True)
        fpr = next(line.split(":")[9] for line in subprocess.run(
            [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True,
            text=True).stdout.splitlines() if line.startswith("fpr:"))
        subprocess.run([*gpg, "--quick-add-key", fpr, f"rsa{bits}", "encr", "never"],
                       check=True, capture_output=True)
        out.append((home, fpr))
    (gw, gw_fpr), (user, user_fpr) = out
    for src, dst, fpr in ((gw, user, gw_fpr), (user, gw, user_fpr)):
        pub = subprocess.run(["gpg", "--homedir", str(src), "--export", fpr],
                             check=True, capture_output=True).stdout
        subprocess.run(["gpg", "--homedir", str(dst), "--batch", "--import"], input=pub,
                       check=True, capture_output=True)
    return gw, gw_fpr, user, user_fpr


def adapters(n: int, letter: bytes) -> dict[str, Any]:
    """Per-part CPU and wall time (ms) of open and seal, per key family and adapter."""
    from gateway.crypto import rnp
    from gateway.crypto.sop import SopCipher

    kinds: dict[str, Callable[..., Any]] = {"gpg": OpenPgpCipher}
    if shutil.which("sqop"):
        kinds["sop"] = SopCipher
    if rnp.available():
        kinds["rnp"] = rnp.RnpCipher
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pbench") as tmp:
        world = build_world(Path(tmp) / "w")
        families = {"ed25519/cv25519": (world.gnupg_gateway, world.fingerprints["gateway"],
                                        Path(world.gnupg_users["dupont"]),
                                        world.fingerprints["dupont"])}
        for bits in (2048, 3072):
            families[f"rsa{bits}"] = _rsa_pair(Path(tmp), bits)
        # the usual mix: the gateway's key Ed25519/Cv25519, a correspondent's RSA-3072
        user_home, user_fpr = families["rsa3072"][2:]
        gw_fpr = world.fingerprints["gateway"]
        for src, dst, fpr in ((world.gnupg_gateway, user_home, gw_fpr),
                              (user_home, world.gnupg_gateway, user_fpr)):
            pub = subprocess.run(["gpg", "--homedir", str(src), "--export", fpr],
                                 check=True, capture_output=True).stdout
            subprocess.run(["gpg", "--homedir", str(dst), "--batch", "--import"], input=pub,
                           check=True, capture_output=True)
        families["gateway 25519, user rsa3072"] = (world.gnupg_gateway, gw_fpr, user_home,
                                                   user_fpr)
        homes = [world.gnupg_gateway, *(Path(h) for h in world.gnupg_users.values()),
                 *(p for f in families.values() for p in (f[0], f[2]))]
        try:
            for family, (gw_home, gw_fpr, user_home, user_fpr) in families.items():
                user = OpenPgpCipher(user_home, gateway_fingerprint=user_fpr)
                sealed = user.encrypt_sign(letter, recipient=gw_fpr).data
                row: dict[str, Any] = {}
                for name, kind in kinds.items():
                    cipher = kind(gw_home, gateway_fingerprint=gw_fpr)
                    ops = {"open": lambda c=cipher, d=sealed, f=user_fpr: c.decrypt_verify(
                               d, signer=f),
                           "seal": lambda c=cipher, f=user_fpr: c.encrypt_sign(
                               letter, recipient=f)}
                    for op, fn in ops.items():
                        tool = fn().tool  # warm-up: keys read, agent started, caches filled
                        assert tool == name, f"{family} {name} {op}: done by {tool}"
                        for _ in range(3):
                            fn()
                        # the agents' CPU read outside the measured interval (reading /proc
                        # costs this process CPU)
                        agents0 = _agents_cpu(homes)
                        cpu0, wall0 = _own_cpu(), time.perf_counter()
                        for _ in range(n):
                            fn()
                        cpu = _own_cpu() - cpu0
                        wall = time.perf_counter() - wall0
                        cpu += _agents_cpu(homes) - agents0
                        row[f"{name} {op}"] = {
                            "cpu_ms": round(cpu * 1000 / n, 2),
                            "wall_ms": round(wall * 1000 / n, 2)}
                results[family] = row
        finally:
            for home in homes:
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                               capture_output=True, check=False)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--adapters", action="store_true",
                    help="CPU per part of each legacy adapter, per key family")
    args = ap.parse_args()
    letter = ("Compte rendu de consultation. Hémoglobine à 11,8 g/dL. " * 400).encode(
        "cp1252")[:20480]
    if args.adapters:
        table = adapters(args.n, letter)
        if args.json:
            print(json.dumps({"machine": _machine(), "message_bytes": len(letter), "n": args.n,
                              "per_part": table}, indent=2))
            return 0
        print(f"{'per part (20 KB letter)':28} {'adapter':8} {'open CPU ms':>12} "
              f"{'seal CPU ms':>12} {'open wall':>10} {'seal wall':>10}")
        for family, row in table.items():
            for name in ("gpg", "sop", "rnp"):
                if f"{name} open" in row:
                    o, s_ = row[f"{name} open"], row[f"{name} seal"]
                    print(f"{family:28} {name:8} {o['cpu_ms']:>12} {s_['cpu_ms']:>12} "
                          f"{o['wall_ms']:>10} {s_['wall_ms']:>10}")
        return 0
    with tempfile.TemporaryDirectory(prefix="pbench") as tmp:
        world = build_world(Path(tmp) / "w")
        gw = OpenPgpCipher(world.gnupg_gateway, gateway_fingerprint=world.fingerprints["gateway"])
        user = OpenPgpCipher(Path(world.gnupg_users["dupont"]),
                             gateway_fingerprint=world.fingerprints["dupont"])
        sealed = user.encrypt_sign(letter, recipient=world.fingerprints["gateway"]).data
        identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                              world.key("gateway-signing"))
        anchors = TrustAnchors.load([world.ca_cert], [world.crl])
        mime_letter = (b"Content-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Transfer-Encoding: base64\r\n\r\n"
                       + __import__("base64").encodebytes(letter).replace(b"\n", b"\r\n"))
        now = datetime.now(UTC)
        rows = {
            "open (gpg decrypt+verify)": timed(lambda: gw.decrypt_verify(sealed), args.n),
            "gpg process spawn only": timed(lambda: subprocess.run(
                ["gpg", "--homedir", str(world.gnupg_gateway), "--version"],
                capture_output=True, check=True), args.n),
            "seal (gpg sign+encrypt)": timed(lambda: gw.encrypt_sign(
                letter, recipient=world.fingerprints["dupont"]), args.n),
            "S/MIME sign": timed(lambda: smime.sign(mime_letter, identity), args.n),
            "S/MIME sign + self-verify": timed(lambda: smime.sign_and_check(
                mime_letter, identity, anchors=anchors, at=now), args.n),
        }
        for home in [world.gnupg_gateway, *(Path(h) for h in world.gnupg_users.values())]:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                           capture_output=True, check=False)
    report = {
        "machine": _machine(),
        "message_bytes": len(letter),
        "n": args.n,
        "ms_median": {k: round(statistics.median(v) * 1000, 2) for k, v in rows.items()},
    }
    med = report["ms_median"]
    report["spawn_share_of_open"] = round(med["gpg process spawn only"]
                                          / med["open (gpg decrypt+verify)"], 2)
    report["open_per_s_serial"] = round(1000 / med["open (gpg decrypt+verify)"], 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'operation (20 KB)':32} {'median ms':>10}")
        for k, v in med.items():
            print(f"{k:32} {v:>10}")
        print(f"spawn share of open: {report['spawn_share_of_open']:.0%}; "
              f"serial open rate: {report['open_per_s_serial']}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
