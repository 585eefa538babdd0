#!/usr/bin/env python3
"""A stand-in for the licensed legacy binaries, speaking the command adapter's protocol.

"Encryption" here is a reversible toy (the licensed cipher cannot ship): a header naming the
recipient and the signer, a keyed checksum standing in for the signature, and the body XORed.
Usage: fake_legacy_tool.py open|seal IN OUT KEYDIR [RECIPIENT SIGNER]
Exit codes: see gateway/crypto/command.py.
"""

import hashlib
import sys
import time
from pathlib import Path


def checksum(keydir: Path, signer: str, body: bytes) -> str:
    secret = (keydir / f"{signer}.key").read_bytes()
    return hashlib.sha256(secret + body).hexdigest()


def main() -> int:
    action, src, dst, keydir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    data = src.read_bytes()
    if action == "seal":
        recipient, signer = sys.argv[5], sys.argv[6]
        if not (keydir / f"{recipient}.key").exists():
            return 7
        body = bytes(b ^ 0x5A for b in data)
        head = f"$APICRYPT {recipient} {signer} {checksum(keydir, signer, data)}\n".encode()
        dst.write_bytes(head + body)
        return 0
    if data.startswith(b"$HANG"):
        time.sleep(30)
    if not data.startswith(b"$APICRYPT "):
        return 1
    head, _, body = data.partition(b"\n")
    fields = head.decode().split()
    if len(fields) == 3:
        return 4  # no signature
    _, recipient, signer, mac = fields
    if recipient != "GATEWAY":
        return 1
    if not (keydir / f"{signer}.key").exists():
        return 3
    plain = bytes(b ^ 0x5A for b in body)
    if checksum(keydir, signer, plain) != mac:
        return 2
    dst.write_bytes(plain)
    print(f"SIGNER {signer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
