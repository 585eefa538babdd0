#!/usr/bin/env python3
"""Per-message cost of the cryptography on this machine.

Measures, on a 20 KB letter, with the keys of a fresh `pki demo` world:
  * open = decrypt + verify of one legacy message part (one gpg process, python-gnupg);
  * the bare cost of spawning gpg (`gpg --version`), to see how much of `open` is spawn;
  * S/MIME detached signature (cryptography), and sign + self-verification;
  * seal = sign + encrypt for a legacy recipient.
Usage: python bench/crypto.py [-n N] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    letter = ("Compte rendu de consultation. Hémoglobine à 11,8 g/dL. " * 400).encode(
        "cp1252")[:20480]
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
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}, gpg "
                   + subprocess.run(["gpg", "--version"], capture_output=True,
                                    text=True).stdout.split()[2],
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
