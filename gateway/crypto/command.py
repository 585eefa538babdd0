"""External-command part cipher: for operators holding the licensed legacy binaries.

The configuration gives two argv templates and a timeout, e.g.::

    open_command = ["apiuncrypt", "-s", "{in}", "-o", "{out}", "-k", "{keydir}"]
    seal_command = ["apicrypt", "-s", "{in}", "-o", "{out}", "-k", "{keydir}", "-d", "{recipient}"]

Placeholders: ``{in}`` (a file holding the part), ``{out}`` (the file the tool writes),
``{keydir}``, ``{recipient}`` (the recipient's key id) and ``{signer}`` (the gateway's key id).
Arguments are passed as a list — never through a shell.

What the tool must tell us (a wrapper script adapts the licensed binaries to this): exit 0
and the line ``SIGNER <key id>`` on stdout after a good open; otherwise the exit status names
the failure: 1 cannot decrypt, 2 bad signature, 3 unknown key, 4 unsigned, 5 expired key,
6 revoked key, 7 no key for the recipient (seal); anything else, a crash or the timeout is a
transient tool failure.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from gateway.crypto.legacy import PartResult, SealedPart
from gateway.errors import (
    BadSignature,
    CannotDecrypt,
    CryptoError,
    CryptoToolError,
    KeyExpired,
    KeyRevoked,
    NoRecipientKey,
    UnknownKey,
    Unsigned,
)

_FAILURES: dict[int, type[CryptoError]] = {
    1: CannotDecrypt,
    2: BadSignature,
    3: UnknownKey,
    4: Unsigned,
    5: KeyExpired,
    6: KeyRevoked,
    7: NoRecipientKey,
}


class CommandCipher:
    def __init__(self, *, open_argv: tuple[str, ...], seal_argv: tuple[str, ...],
                 key_dir: Path | None, timeout: float, gateway_key: str) -> None:
        self.open_argv = open_argv
        self.seal_argv = seal_argv
        self.key_dir = key_dir
        self.timeout = timeout
        self.gateway_key = gateway_key

    def _run(self, template: tuple[str, ...], data: bytes, recipient: str = ""
             ) -> tuple[bytes, str]:
        with tempfile.TemporaryDirectory(prefix="passerelle-") as tmp:
            src, dst = Path(tmp) / "in", Path(tmp) / "out"
            src.write_bytes(data)
            values = {"in": str(src), "out": str(dst), "keydir": str(self.key_dir or ""),
                      "recipient": recipient, "signer": self.gateway_key}
            argv = [arg.format(**values) for arg in template]
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=self.timeout,
                                      check=False)
            except subprocess.TimeoutExpired:
                raise CryptoToolError(f"{Path(argv[0]).name} timed out after "
                                      f"{self.timeout:g} s") from None
            except OSError as exc:
                raise CryptoToolError(f"{Path(argv[0]).name} cannot run ({exc.strerror})")\
                    from None
            if proc.returncode in _FAILURES:
                cls = _FAILURES[proc.returncode]
                raise cls(f"{Path(argv[0]).name}: {cls.kind.replace('_', ' ')}")
            if proc.returncode != 0 or not dst.exists():
                raise CryptoToolError(f"{Path(argv[0]).name} failed (exit {proc.returncode})")
            return dst.read_bytes(), proc.stdout.decode("ascii", "replace")

    def decrypt_verify(self, data: bytes, *, signer: str = "") -> PartResult:
        plaintext, out = self._run(self.open_argv, data)
        signer = next((line.split()[1] for line in out.splitlines()
                       if line.startswith("SIGNER ") and len(line.split()) > 1), "")
        if not signer:
            raise Unsigned("legacy tool reported no signer")
        return PartResult(plaintext=plaintext, signer=signer.upper(), tool="command")

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart:
        sealed, _ = self._run(self.seal_argv, data, recipient)
        return SealedPart(sealed, tool="command")
