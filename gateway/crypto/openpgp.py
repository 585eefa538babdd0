"""OpenPGP part cipher on python-gnupg and the real ``gpg``, in its own GnuPG home.

One gpg process per part: decryption and signature verification happen in the same call
(``gpg --decrypt`` of a signed-and-encrypted message), sealing is one ``--sign --encrypt``.
Verdicts are read from gpg's machine-readable status lines, never from its prose:

| status seen | failure |
|---|---|
| ``NO_SECKEY`` / ``DECRYPTION_FAILED`` / no plaintext | :class:`CannotDecrypt` |
| no signature status at all | :class:`Unsigned` |
| ``ERRSIG`` with ``NO_PUBKEY`` | :class:`UnknownKey` |
| ``BADSIG`` | :class:`BadSignature` |
| ``EXPKEYSIG`` / ``KEYEXPIRED`` | :class:`KeyExpired` |
| ``REVKEYSIG`` / ``KEYREVOKED`` | :class:`KeyRevoked` |
| gpg missing, crashed or timed out | :class:`CryptoToolError` (transient) |
| plaintext over ``max_output`` octets (gpg killed) | :class:`MessageTooBig` (permanent) |

The trust model is ``always``: the address book, not a web of trust, says which key belongs
to whom, and ``LegacyCrypto.open`` checks the signer against it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
from pathlib import Path
from typing import Any

import gnupg

from gateway.crypto.legacy import PartResult, SealedPart
from gateway.errors import (
    BadSignature,
    CannotDecrypt,
    CryptoToolError,
    KeyExpired,
    KeyRevoked,
    MessageTooBig,
    NoRecipientKey,
    UnknownKey,
    Unsigned,
)


def _status(stderr: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, _, rest = line[9:].partition(" ")
            out.setdefault(keyword, []).append(rest)
    return out


class OpenPgpCipher:
    """Part-level OpenPGP for :class:`gateway.crypto.legacy.LegacyCrypto`."""

    def __init__(self, home: Path, *, gateway_fingerprint: str, timeout: float = 30.0,
                 max_output: int = 0) -> None:
        if not home.is_dir():
            raise CryptoToolError(f"GnuPG home {home} does not exist")
        self.home = home
        self.gateway = gateway_fingerprint.replace(" ", "").upper()
        self.timeout = timeout
        # the most plaintext one part may decrypt to (0: no limit): a small compressed part
        # may expand a thousandfold and more, so gpg's output is counted as it comes and gpg
        # is killed past it
        self.max_output = max_output
        try:
            # --quiet: without it gpg looks the keys up again only to print their user ids
            # in its prose (~1.2 ms of its CPU per part); the status lines are the same
            self.gpg = gnupg.GPG(gnupghome=str(home), options=[
                "--trust-model", "always", "--no-auto-key-retrieve", "--quiet", "--no-greeting"])
        except (OSError, ValueError, RuntimeError) as exc:
            raise CryptoToolError(f"gpg unavailable ({type(exc).__name__})") from None
        self.gpg.encoding = "latin-1"

    def _gpg_into(self, sink: io.BytesIO, limit: int = 0) -> gnupg.GPG:
        """The gpg wrapper, its output written into ``sink`` as it comes: python-gnupg keeps
        the pieces and joins them (twice a part's size at the end).  A copy of the wrapper per
        call (a few attributes): threads share the cipher.  With ``limit``, gpg is killed as
        soon as its output passes that many octets, and ``sink`` stops growing: the caller
        reads :func:`_overflowed` on it."""
        gpg = copy.copy(self.gpg)
        processes: list[subprocess.Popen[bytes]] = []
        open_subprocess = gpg._open_subprocess

        def opened(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
            process: subprocess.Popen[bytes] = open_subprocess(*args, **kwargs)
            processes.append(process)
            return process

        def on_data(chunk: bytes) -> bool:
            if limit and sink.tell() + len(chunk) > limit:
                if not getattr(sink, "overflowed", False):
                    sink.overflowed = True  # type: ignore[attr-defined]
                    for process in processes:
                        with contextlib.suppress(OSError):
                            process.kill()
                return False
            sink.write(chunk)
            return False  # not kept by python-gnupg

        gpg._open_subprocess = opened
        gpg.on_data = on_data
        return gpg

    def decrypt_verify(self, data: bytes, *, signer: str = "", unsigned_ok: bool = False
                       ) -> PartResult:
        sink = io.BytesIO()
        try:
            result = self._gpg_into(sink, self.max_output).decrypt(
                data, always_trust=True, extra_args=["--no-tty"])
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            if _overflowed(sink):
                raise self._too_big() from None
            raise CryptoToolError(f"gpg failed ({type(exc).__name__})") from None
        if _overflowed(sink):
            raise self._too_big()
        if getattr(result, "on_data_failure", None) is not None:
            raise CryptoToolError("gpg output could not be read")
        st = _status(result.stderr or "")
        if "NO_SECKEY" in st or "DECRYPTION_FAILED" in st or "BEGIN_DECRYPTION" not in st:
            if "NODATA" in st or "NO_DATA" in st:
                raise CannotDecrypt("part is not a readable OpenPGP message")
            raise CannotDecrypt("part cannot be decrypted with the gateway's key")
        if "REVKEYSIG" in st:
            raise KeyRevoked(f"signed by revoked key {st['REVKEYSIG'][0].split()[0][-16:]}")
        if "EXPKEYSIG" in st:
            raise KeyExpired(f"signed by expired key {st['EXPKEYSIG'][0].split()[0][-16:]}")
        if "BADSIG" in st:
            raise BadSignature(f"bad signature by {st['BADSIG'][0].split()[0][-16:]}")
        if "ERRSIG" in st:
            fields = st["ERRSIG"][0].split()
            if "NO_PUBKEY" in st or (len(fields) > 5 and fields[5] == "9"):
                raise UnknownKey(f"signed by unknown key {fields[0][-16:]}")
            raise BadSignature("signature cannot be checked")
        if "DECRYPTION_OKAY" not in st:
            raise CannotDecrypt("decryption did not complete (integrity check failed)")
        if "VALIDSIG" not in st:
            if unsigned_ok and "NEWSIG" not in st and "GOODSIG" not in st:
                # a first-generation client's part: decrypted, and nobody signed it
                return PartResult(plaintext=sink.getvalue(), signer="", tool="gpg")
            raise Unsigned("part is encrypted but not signed")
        fields = st["VALIDSIG"][0].split()
        primary = fields[9] if len(fields) > 9 else fields[0]
        uid = st.get("GOODSIG", [""])[0].partition(" ")[2]
        if "KEYREVOKED" in st:
            raise KeyRevoked(f"signer key {primary[-16:]} is revoked")
        return PartResult(plaintext=sink.getvalue(), signer=primary.upper(), signer_uid=uid,
                          tool="gpg")

    def _too_big(self) -> MessageTooBig:
        return MessageTooBig(f"a part decrypts to more than {self.max_output} bytes "
                             "(limits.max_decrypted_part)")

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart:
        sink = io.BytesIO()
        try:
            result = self._gpg_into(sink).encrypt(
                data, [recipient], sign=self.gateway, always_trust=True, armor=True,
                extra_args=["--no-tty"])
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise CryptoToolError(f"gpg failed ({type(exc).__name__})") from None
        if getattr(result, "on_data_failure", None) is not None:
            raise CryptoToolError("gpg output could not be read")
        st = _status(result.stderr or "")
        sealed = sink.getvalue()
        if not result.ok or not sealed:
            if "INV_RECP" in st or "KEYEXPIRED" in st or "KEYREVOKED" in st:
                raise NoRecipientKey(f"no usable key for recipient {recipient[-16:]}")
            if "INV_SGNR" in st:
                raise CryptoToolError("gateway signing key unusable")
            raise NoRecipientKey(f"cannot encrypt to {recipient[-16:]}")
        return SealedPart(sealed, tool="gpg")


def _overflowed(sink: io.BytesIO) -> bool:
    """Whether the output written into ``sink`` was cut at its limit (gpg killed)."""
    return bool(getattr(sink, "overflowed", False))
