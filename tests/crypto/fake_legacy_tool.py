#!/usr/bin/env python3
"""A stand-in for the licensed first-generation legacy tools (Apicrypt-style), for the tests.

It behaves the way those tools are called by practice-management software: on files, with a
directory of keys, writing its own armour, its verdict told by its exit status and a line of
prose — and nothing else.  The cipher is a reversible toy (the licensed one cannot ship): the
payload XORed, a keyed SHA-256 standing in for the signature.

    fake_legacy_tool.py crypt     -s IN -o OUT -k KEYDIR -d RECIPIENT [-u SENDER]
    fake_legacy_tool.py uncrypt   -s IN -o OUT -k KEYDIR
    fake_legacy_tool.py cryptpj   -s FILE [-s FILE …] -o OUT.apz -k KEYDIR -d RECIPIENT [-u SENDER]
    fake_legacy_tool.py uncryptpj -s IN.apz -o OUTDIR -k KEYDIR

* ``crypt`` writes a text block ``$APICRYPT <version> <recipient> [<sender> <mac>]``, the
  payload in base64 lines, then ``$FIN APICRYPT``.  Without ``-u`` it is what a
  first-generation client writes: version 1, nobody signs.
* ``uncrypt`` finds that block wherever it is in the text it is given (a whole mail body).
* ``cryptpj`` packs one or several files, each under its own name, into an ``.apz``
  (``$APICRYPTPJ`` …); ``uncryptpj`` unpacks them into OUTDIR under those names.
* Keys: ``KEYDIR/<id>.secret`` to decrypt what is for ``<id>`` and to sign as ``<id>``;
  ``KEYDIR/<id>.key`` to encrypt to ``<id>`` and to check ``<id>``'s signature.
* Output on a good open: ``Signature valide : <sender>`` when signed, ``Message non signé``
  otherwise.  Exit status (the tool's own, mapped by ``[legacy.exit_codes]``): 0 done,
  10 not readable or not for our keys, 11 signature does not match, 12 sender's key unknown,
  13 recipient's key unknown, 64 usage.  A body starting ``$HANG`` makes it hang.
"""

import base64
import hashlib
import sys
import time
from pathlib import Path

USAGE, UNREADABLE, BAD_SIGNATURE, UNKNOWN_SENDER, UNKNOWN_RECIPIENT = 64, 10, 11, 12, 13


def mac(keydir: Path, sender: str, payload: bytes) -> str:
    return hashlib.sha256((keydir / f"{sender}.secret").read_bytes() + payload).hexdigest()


def check(keydir: Path, sender: str, payload: bytes, tag: str) -> int:
    if not (keydir / f"{sender}.key").is_file():
        return UNKNOWN_SENDER
    expected = hashlib.sha256((keydir / f"{sender}.key").read_bytes() + payload).hexdigest()
    return 0 if expected == tag else BAD_SIGNATURE


def toy(data: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in data)


def armour(kind: str, keydir: Path, recipient: str, sender: str, payload: bytes) -> bytes:
    head = f"${kind} 1 {recipient}" if not sender else \
        f"${kind} 2 {recipient} {sender} {mac(keydir, sender, payload)}"
    b64 = base64.b64encode(toy(payload)).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("\r\n".join([head, *lines, f"$FIN {kind}"]) + "\r\n").encode("ascii")


def unarmour(kind: str, keydir: Path, data: bytes) -> tuple[int, bytes, str]:
    """(status, payload, sender) of the first block of ``kind`` in ``data``."""
    text = data.decode("latin-1")
    start = text.find(f"${kind} ")
    if start < 0:
        return UNREADABLE, b"", ""
    lines = text[start:].splitlines()
    head = lines[0].split()
    body: list[str] = []
    for line in lines[1:]:
        if line.startswith("$FIN"):
            break
        body.append(line.strip())
    else:
        return UNREADABLE, b"", ""
    if len(head) not in (3, 5) or not (keydir / f"{head[2]}.secret").is_file():
        return UNREADABLE, b"", ""
    try:
        payload = toy(base64.b64decode("".join(body), validate=True))
    except ValueError:
        return UNREADABLE, b"", ""
    if len(head) == 3:
        return 0, payload, ""
    status = check(keydir, head[3], payload, head[4])
    return status, payload, head[3]


def pack(files: list[Path]) -> bytes:
    out = b""
    for f in files:
        data = f.read_bytes()
        out += f.name.encode("utf-8") + b"\n" + str(len(data)).encode() + b"\n" + data
    return out


def unpack(payload: bytes) -> list[tuple[str, bytes]]:
    out = []
    while payload:
        name, _, rest = payload.partition(b"\n")
        size, _, rest = rest.partition(b"\n")
        n = int(size)
        out.append((name.decode("utf-8"), rest[:n]))
        payload = rest[n:]
    return out


def main(argv: list[str]) -> int:
    if not argv:
        return USAGE
    action, options = argv[0], argv[1:]
    sources: list[Path] = []
    opts: dict[str, str] = {}
    for flag, value in zip(options[::2], options[1::2], strict=False):
        if flag == "-s":
            sources.append(Path(value))
        else:
            opts[flag] = value
    if not sources or "-o" not in opts or "-k" not in opts:
        return USAGE
    keydir, out = Path(opts["-k"]), Path(opts["-o"])
    sender = opts.get("-u", "")
    if action in ("crypt", "cryptpj"):
        recipient = opts.get("-d", "")
        if not (keydir / f"{recipient}.key").is_file():
            return UNKNOWN_RECIPIENT
        if sender and not (keydir / f"{sender}.secret").is_file():
            return UNKNOWN_SENDER
        if action == "crypt":
            out.write_bytes(armour("APICRYPT", keydir, recipient, sender,
                                   sources[0].read_bytes()))
        else:
            out.write_bytes(armour("APICRYPTPJ", keydir, recipient, sender, pack(sources)))
        return 0
    data = sources[0].read_bytes()
    if data.startswith(b"$HANG"):
        time.sleep(30)
    kind = "APICRYPT" if action == "uncrypt" else "APICRYPTPJ"
    status, payload, signer = unarmour(kind, keydir, data)
    if status:
        return status
    if action == "uncrypt":
        out.write_bytes(payload)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in unpack(payload):
            (out / name).write_bytes(content)
    print(f"Signature valide : {signer}" if signer else "Message non signé")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
