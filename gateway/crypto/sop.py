"""OpenPGP part cipher through a Stateless OpenPGP command (``sqop``), on the GnuPG home's keys.

The same keys and the same verdicts as :class:`gateway.crypto.openpgp.OpenPgpCipher`, at about
half its CPU per part (no gpg-agent, no keyring to open: ``bench/README.md`` gives the figures).
``legacy.adapter = "sop"`` selects it.

* The GnuPG home stays the one key store: the gateway's secret key is read from it once (it must
  have no passphrase), each correspondent's certificate when first needed, kept until the
  keyring file changes.  Keys reach ``sqop`` through memory files (``@FD:n``), never the disk.
* gpg's own listing says whether a key is usable *now*: a signature is accepted only from the
  expected signer's primary key or a signing subkey that is neither revoked nor expired today,
  and a part is sealed only for a certificate in that state.  (sqop alone would accept a
  signature made before the key expired or was revoked; the gateway's policy, as with gpg, is
  that such a key no longer speaks.)
* Anything sqop does not accept — a bad, missing or unexpected signature, a key out of date, a
  part it cannot read or an algorithm it lacks — is handed to the gpg adapter, which opens it or
  names what is wrong exactly as the default adapter does.  sqop is a faster path, never a
  different answer.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.crypto.legacy import PartResult, SealedPart
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.errors import CryptoToolError, MessageTooBig
from gateway.log import allow_words, get_logger

log = get_logger("passerelle.crypto.sop")
allow_words("open", "seal")

_BAD_VALIDITY = frozenset("ierdn")  # invalid, expired, revoked, disabled, not valid
_CACHE_SIZE = 1024


@dataclass(frozen=True)
class _Key:
    fingerprint: str
    validity: str
    expires: float | None
    caps: str

    def usable(self, cap: str, now: float) -> bool:
        return (cap in self.caps and self.validity not in _BAD_VALIDITY
                and (self.expires is None or self.expires > now))


@dataclass(frozen=True)
class _Cert:
    """A certificate as exported, and gpg's word on its keys."""

    data: bytes
    primary: _Key
    subkeys: tuple[_Key, ...]
    uid: str = ""

    def signs_now(self, fingerprint: str, now: float) -> bool:
        if not self.primary.usable("", now):
            return False
        if fingerprint == self.primary.fingerprint:
            return "s" in self.primary.caps
        return any(k.fingerprint == fingerprint and k.usable("s", now) for k in self.subkeys)

    def encrypts_now(self, now: float) -> bool:
        return self.primary.usable("", now) and any(k.usable("e", now) for k in self.subkeys)


def _listing(text: str) -> tuple[_Key, tuple[_Key, ...], str] | None:
    """The primary key, subkeys and first user id of ``gpg --with-colons --fixed-list-mode
    --with-subkey-fingerprint --list-keys`` for one certificate."""
    keys: list[_Key] = []
    pending: list[str] | None = None
    uid = ""
    for line in text.splitlines():
        f = line.split(":")
        if f[0] == "uid" and not uid and len(f) > 9:
            uid = f[9]
        elif f[0] in ("pub", "sub"):
            if keys and f[0] == "pub":
                break  # one certificate only
            pending = f
        elif f[0] == "fpr" and pending is not None and len(f) > 9 and len(pending) > 11:
            expires = float(pending[6]) if pending[6] else None
            own = pending[11] if pending[0] == "sub" else "".join(
                c for c in pending[11] if c.islower())
            keys.append(_Key(f[9].upper(), pending[1], expires, own))
            pending = None
    if not keys:
        return None
    return keys[0], tuple(keys[1:]), uid


@contextlib.contextmanager
def _memfd(data: bytes = b"") -> Iterator[int]:
    """A file in memory holding ``data``, read from its start by the child it is passed to."""
    fd = os.memfd_create("sop", 0)
    try:
        if data:
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


class KeyringCerts:
    """Certificates of gpg's keyring by primary fingerprint (None: the keyring has none),
    with their state from gpg's listing, remembered until the keyring changes (an import, a
    revocation): what the sop and rnp adapters verify and seal with.  ``generation`` counts
    those changes."""

    def __init__(self, gpg: Callable[..., bytes], stamp: Callable[[], tuple[int, int, int]]
                 ) -> None:
        self._gpg_out = gpg
        self._keyring_stamp = stamp
        self._certs: OrderedDict[str, _Cert | None] = OrderedDict()
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, fingerprint: str) -> _Cert | None:
        fingerprint = fingerprint.replace(" ", "").upper()
        stamp = self._keyring_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._certs.clear()
                self._stamp = stamp
                self.generation += 1
            if fingerprint in self._certs:
                self._certs.move_to_end(fingerprint)
                return self._certs[fingerprint]
        cert: _Cert | None = None
        listed = _listing(self._gpg_out("--with-colons", "--fixed-list-mode",
                                        "--with-subkey-fingerprint", "--list-keys",
                                        fingerprint).decode("utf-8", "replace"))
        if listed is not None and listed[0].fingerprint == fingerprint:
            data = self._gpg_out("--export", "--export-options", "export-clean", fingerprint)
            if data:
                cert = _Cert(data, *listed)
        with self._lock:
            if self._stamp == stamp:
                self._certs[fingerprint] = cert
                while len(self._certs) > _CACHE_SIZE:
                    self._certs.popitem(last=False)
        return cert


class SopCipher:
    """Part-level OpenPGP for :class:`gateway.crypto.legacy.LegacyCrypto`, through sqop."""

    def __init__(self, home: Path, *, gateway_fingerprint: str,
                 command: Sequence[str] = ("sqop",), timeout: float = 30.0,
                 max_output: int = 0) -> None:
        self.gpg = OpenPgpCipher(home, gateway_fingerprint=gateway_fingerprint, timeout=timeout,
                                 max_output=max_output)
        self.max_output = max_output  # what one part may decrypt to (0: no limit)
        self.home = home
        self.command = tuple(command)
        self.timeout = timeout
        try:
            probe = subprocess.run([*self.command, "version"], capture_output=True,
                                   timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CryptoToolError(f"sop command {self.command[0]!r} unavailable "
                                  f"({type(exc).__name__})") from None
        if probe.returncode != 0:
            raise CryptoToolError(f"sop command {self.command[0]!r} does not answer 'version'")
        self._key = self._gpg_out("--pinentry-mode", "loopback", "--passphrase", "",
                                  "--export-secret-keys", self.gpg.gateway)
        if not self._key:
            raise CryptoToolError(f"the gateway's secret key {self.gpg.gateway[-16:]} cannot be "
                                  f"read from {home} without a passphrase (absent, or "
                                  "protected: the sop adapter needs it unprotected)")
        self._certs = KeyringCerts(self._gpg_out, self._keyring_stamp)

    # -- keys ------------------------------------------------------------------------------

    def _gpg_out(self, *args: str) -> bytes:
        return gpg_out(self.home, self.timeout, *args)

    def _keyring_stamp(self) -> tuple[int, int, int]:
        return keyring_stamp(self.home)

    def _cert(self, fingerprint: str) -> _Cert | None:
        return self._certs.get(fingerprint)

    # -- operations ------------------------------------------------------------------------

    def _sop(self, args: list[str], fds: list[int], data: bytes, limit: int = 0
             ) -> tuple[int, bytes]:
        """sop's exit status and output; with ``limit``, sop is killed as soon as its output
        passes that many octets (:class:`MessageTooBig`: a part that decrypts to more)."""
        try:
            rc, out, over = bounded_run([*self.command, *args], data, pass_fds=fds,
                                        timeout=self.timeout, limit=limit)
        except subprocess.TimeoutExpired:
            raise CryptoToolError("sop command timed out") from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise CryptoToolError(f"sop command failed ({type(exc).__name__})") from None
        if over:
            raise MessageTooBig(f"a part decrypts to more than {limit} bytes "
                                "(limits.max_decrypted_part)")
        if rc < 0:
            raise CryptoToolError(f"sop command killed by signal {-rc}")
        return rc, out

    def decrypt_verify(self, data: bytes, *, signer: str = "", unsigned_ok: bool = False
                       ) -> PartResult:
        """Decrypt ``data`` and check it is signed by ``signer`` (the expected sender's primary
        fingerprint); without one, or on anything but success, the gpg adapter decides (an
        unsigned part too: gpg's verdict says whether nobody signed it)."""
        cert = self._cert(signer) if signer else None
        if cert is not None and cert.primary.usable("", time.time()):
            with _memfd(self._key) as key, _memfd(cert.data) as certs, _memfd() as out:
                rc, plain = self._sop(["decrypt", f"--verifications-out=@FD:{out}",
                                       f"--verify-with=@FD:{certs}", f"@FD:{key}"],
                                      [key, certs, out], data, self.max_output)
                verifications = os.pread(out, 65536, 0) if rc == 0 else b""
            now = time.time()
            for line in verifications.decode("ascii", "replace").splitlines():
                fields = line.split()
                if (len(fields) >= 3 and fields[2].upper() == cert.primary.fingerprint
                        and cert.signs_now(fields[1].upper(), now)):
                    return PartResult(plaintext=plain, signer=cert.primary.fingerprint,
                                      signer_uid=cert.uid, tool="sop")
            log.info("legacy.sop_not_accepted", stage="open", exit_code=rc)  # gpg decides
        if unsigned_ok:
            return self.gpg.decrypt_verify(data, unsigned_ok=True)
        return self.gpg.decrypt_verify(data)

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart:
        cert = self._cert(recipient)
        if cert is not None and cert.encrypts_now(time.time()):
            with _memfd(self._key) as key, _memfd(cert.data) as certs:
                rc, sealed = self._sop(["encrypt", f"--sign-with=@FD:{key}", f"@FD:{certs}"],
                                       [key, certs], data)
            if rc == 0 and sealed.startswith(b"-----BEGIN PGP MESSAGE-----"):
                return SealedPart(sealed, tool="sop")
            log.info("legacy.sop_not_accepted", stage="seal", exit_code=rc)  # gpg decides
        return self.gpg.encrypt_sign(data, recipient=recipient)


def bounded_run(argv: list[str], data: bytes, *, pass_fds: Sequence[int] = (),
                timeout: float, limit: int = 0) -> tuple[int, bytes, bool]:
    """Run ``argv`` on ``data`` (its standard input, from a file in memory): its exit status,
    its standard output, and whether that output passed ``limit`` octets (0: no limit) — the
    process is then killed at once and the output cut there, so that a part that decompresses
    a thousandfold is never held whole.  :class:`subprocess.TimeoutExpired` past
    ``timeout``."""
    with _memfd(data) as stdin:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, pass_fds=tuple(pass_fds))
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    out = bytearray()
    over = False
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            if limit and len(out) + len(chunk) > limit:
                over = True
                proc.kill()
                break
            out += chunk
        proc.stdout.close()
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if expired.is_set() and not over:
        raise subprocess.TimeoutExpired(argv, timeout)
    return rc, bytes(out), over


def gpg_out(home: Path, timeout: float, *args: str) -> bytes:
    """What gpg prints on the GnuPG home ``home`` for ``args`` (listings and exports: the
    key state and certificates the sop and rnp adapters read from gpg)."""
    try:
        return subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--quiet",
             "--trust-model", "always", *args],
            capture_output=True, timeout=timeout, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CryptoToolError(f"gpg failed ({type(exc).__name__})") from None


def keyring_stamp(home: Path) -> tuple[int, int, int]:
    """What changes when the keyring of ``home`` changes (an import, a revocation)."""
    for name in ("pubring.kbx", "pubring.gpg"):
        try:
            st = os.stat(home / name)
        except OSError:
            continue
        return st.st_ino, st.st_size, st.st_mtime_ns
    return 0, 0, 0
