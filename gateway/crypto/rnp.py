"""OpenPGP part cipher in-process, through librnp's C API (Debian ``librnp0``), on the GnuPG
home's keys.

The same keys and the same verdicts as :class:`gateway.crypto.openpgp.OpenPgpCipher`, without a
process per part: ``bench/README.md`` gives the figures.  ``legacy.adapter = "rnp"`` selects
it; ``"auto"`` (the default) selects it when the library loads, else the gpg adapter.

* The GnuPG home stays the one key store: the gateway's secret key is read from it once (it must
  have no passphrase), each correspondent's certificate when first needed, kept until the
  keyring file changes — as the sop adapter does.  Keys reach librnp through memory only.
* gpg's own listing says whether a key is usable *now*: a signature is accepted only when every
  signature of the part is good, made by the expected signer's primary key or a signing subkey
  that is neither revoked nor expired today, over a part encrypted with integrity protection; a
  part is sealed only for a certificate in that state.
* Anything else — a bad, missing or unexpected signature, a key out of date, a part librnp
  cannot read — is handed to the gpg adapter, which opens it or names what is wrong exactly as
  the default adapter does.  librnp is a faster path, never a different answer.
* A librnp context is not shared between threads: each thread (and each process after a fork,
  whose random generator must not be the parent's) makes its own, and frees it when it ends.
  Every handle an operation makes is freed before it returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from gateway.crypto.legacy import PartResult, SealedPart
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.sop import KeyringCerts, _Cert, gpg_out, keyring_stamp
from gateway.errors import CryptoToolError
from gateway.log import allow_words, get_logger

log = get_logger("passerelle.crypto.rnp")
allow_words("open", "seal", "cannot_decrypt", "unprotected", "unsigned", "signature_not_good",
            "signer_not_usable", "cannot_seal")

LIBRARY = "librnp.so.0"
_CACHE_SIZE = 1024
_LOAD_PUBLIC, _LOAD_SECRET = 1 << 0, 1 << 1
_SUCCESS = 0
# decrypt even when no signature is good: the adapter reads each signature's status itself
# (integrity protection still fails the operation)
_VERIFY_IGNORE_SIGS_ON_DECRYPT = 1 << 0
RNP_ERROR_GENERIC = 0x10000000

_vp = ctypes.c_void_p
_P = ctypes.POINTER
_u32 = ctypes.c_uint32
# name: argument types (every function returns an rnp_result_t but rnp_buffer_destroy)
_SIGNATURES: dict[str, list[Any]] = {
    "rnp_ffi_create": [_P(_vp), ctypes.c_char_p, ctypes.c_char_p],
    "rnp_ffi_destroy": [_vp],
    "rnp_ffi_set_log_fd": [_vp, ctypes.c_int],
    "rnp_load_keys": [_vp, ctypes.c_char_p, _vp, _u32],
    "rnp_locate_key": [_vp, ctypes.c_char_p, ctypes.c_char_p, _P(_vp)],
    "rnp_key_handle_destroy": [_vp],
    "rnp_key_get_fprint": [_vp, _P(ctypes.c_char_p)],
    "rnp_input_from_memory": [_P(_vp), ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool],
    "rnp_input_destroy": [_vp],
    "rnp_output_to_memory": [_P(_vp), ctypes.c_size_t],
    "rnp_output_memory_get_buf": [_vp, _P(_vp), _P(ctypes.c_size_t), ctypes.c_bool],
    "rnp_output_destroy": [_vp],
    "rnp_op_verify_create": [_P(_vp), _vp, _vp, _vp],
    "rnp_op_verify_set_flags": [_vp, _u32],
    "rnp_op_verify_execute": [_vp],
    "rnp_op_verify_get_signature_count": [_vp, _P(ctypes.c_size_t)],
    "rnp_op_verify_get_signature_at": [_vp, ctypes.c_size_t, _P(_vp)],
    "rnp_op_verify_get_protection_info": [_vp, _P(ctypes.c_char_p), _P(ctypes.c_char_p),
                                          _P(ctypes.c_bool)],
    "rnp_op_verify_signature_get_status": [_vp],
    "rnp_op_verify_signature_get_key": [_vp, _P(_vp)],
    "rnp_op_verify_destroy": [_vp],
    "rnp_op_encrypt_create": [_P(_vp), _vp, _vp, _vp],
    "rnp_op_encrypt_add_recipient": [_vp, _vp],
    "rnp_op_encrypt_add_signature": [_vp, _vp, _P(_vp)],
    "rnp_op_encrypt_set_armor": [_vp, ctypes.c_bool],
    "rnp_op_encrypt_set_cipher": [_vp, ctypes.c_char_p],
    "rnp_op_encrypt_set_hash": [_vp, ctypes.c_char_p],
    "rnp_op_encrypt_set_compression": [_vp, ctypes.c_char_p, ctypes.c_int],
    "rnp_op_encrypt_execute": [_vp],
    "rnp_op_encrypt_destroy": [_vp],
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def library() -> ctypes.CDLL:
    """librnp, loaded once, its functions typed; :class:`CryptoToolError` when absent."""
    global _lib
    with _lib_lock:
        if _lib is None:
            name = ctypes.util.find_library("rnp") or LIBRARY
            try:
                lib = ctypes.CDLL(name)
                for fn, argtypes in _SIGNATURES.items():
                    f = getattr(lib, fn)
                    f.argtypes = argtypes
                    f.restype = _u32
                lib.rnp_buffer_destroy.argtypes = [_vp]
                lib.rnp_buffer_destroy.restype = None
            except (OSError, AttributeError) as exc:
                raise CryptoToolError(f"librnp unavailable ({type(exc).__name__}; Debian "
                                      "package librnp0)") from None
            _lib = lib
        return _lib


def available() -> bool:
    """Whether librnp loads here (what ``legacy.adapter = "auto"`` decides on)."""
    try:
        library()
    except CryptoToolError:
        return False
    return True


def _take_string(lib: ctypes.CDLL, ptr: ctypes.c_char_p) -> str:
    """A string librnp allocated, copied and freed."""
    value = ptr.value or b""
    lib.rnp_buffer_destroy(ctypes.cast(ptr, _vp))
    return value.decode("ascii", "replace").upper()


class _Context:
    """One thread's librnp context: the gateway's secret key and the certificates imported."""

    def __init__(self, lib: ctypes.CDLL, secret: bytes, generation: int) -> None:
        self.lib = lib
        self.pid = os.getpid()
        self.generation = generation
        self.imported: set[str] = set()
        self.ffi = _vp()
        if lib.rnp_ffi_create(ctypes.byref(self.ffi), b"GPG", b"GPG") != _SUCCESS:
            raise CryptoToolError("librnp: cannot create a context")
        devnull = os.open(os.devnull, os.O_WRONLY)  # librnp's own diagnostics: not ours to log
        if lib.rnp_ffi_set_log_fd(self.ffi, devnull) != _SUCCESS:
            os.close(devnull)
        if not self.load(secret, _LOAD_SECRET | _LOAD_PUBLIC):
            self.close()
            raise CryptoToolError("librnp cannot read the gateway's secret key")

    def close(self) -> None:
        if self.ffi:
            self.lib.rnp_ffi_destroy(self.ffi)
            self.ffi = _vp()

    def __del__(self) -> None:
        if self.pid == os.getpid():  # a forked child's copy is freed with the process
            with contextlib.suppress(Exception):  # the interpreter shutting down
                self.close()

    def load(self, keys: bytes, flags: int) -> bool:
        lib = self.lib
        src = _vp()
        if lib.rnp_input_from_memory(ctypes.byref(src), keys, len(keys), False) != _SUCCESS:
            return False
        try:
            return bool(lib.rnp_load_keys(self.ffi, b"GPG", src, flags) == _SUCCESS)
        finally:
            lib.rnp_input_destroy(src)

    def locate(self, fingerprint: str) -> ctypes.c_void_p:
        key = _vp()
        if self.lib.rnp_locate_key(self.ffi, b"fingerprint", fingerprint.encode("ascii"),
                                   ctypes.byref(key)) != _SUCCESS:
            return _vp()
        return key

    def decrypt_verify(self, data: bytes, limit: int = 0
                       ) -> tuple[bytes, list[tuple[int, str]], bool] | None:
        """The plaintext, each signature's (status, signing key fingerprint) and whether the
        part was integrity protected; None when librnp cannot decrypt it, or when it
        decrypts to more than ``limit`` octets (librnp's memory output refuses to grow past
        it: the operation stops there)."""
        lib = self.lib
        src, dst, op = _vp(), _vp(), _vp()
        if lib.rnp_input_from_memory(ctypes.byref(src), data, len(data), False) != _SUCCESS:
            return None
        try:
            if lib.rnp_output_to_memory(ctypes.byref(dst), limit) != _SUCCESS:
                return None
            if lib.rnp_op_verify_create(ctypes.byref(op), self.ffi, src, dst) != _SUCCESS:
                return None
            if lib.rnp_op_verify_set_flags(op, _VERIFY_IGNORE_SIGS_ON_DECRYPT) != _SUCCESS:
                return None
            rc = lib.rnp_op_verify_execute(op)
            mode, valid = ctypes.c_char_p(), ctypes.c_bool(False)
            if lib.rnp_op_verify_get_protection_info(op, ctypes.byref(mode), None,
                                                     ctypes.byref(valid)) != _SUCCESS:
                return None
            protected = _take_string(lib, mode) not in ("", "NONE", "CFB") and valid.value
            if rc != _SUCCESS:
                return None
            signatures: list[tuple[int, str]] = []
            count = ctypes.c_size_t(0)
            if lib.rnp_op_verify_get_signature_count(op, ctypes.byref(count)) != _SUCCESS:
                return None
            for i in range(count.value):
                sig, key = _vp(), _vp()
                if lib.rnp_op_verify_get_signature_at(op, i, ctypes.byref(sig)) != _SUCCESS:
                    return None
                status = int(lib.rnp_op_verify_signature_get_status(sig))
                fingerprint = ""
                if lib.rnp_op_verify_signature_get_key(sig, ctypes.byref(key)) == _SUCCESS \
                        and key:
                    fpr = ctypes.c_char_p()
                    if lib.rnp_key_get_fprint(key, ctypes.byref(fpr)) == _SUCCESS:
                        fingerprint = _take_string(lib, fpr)
                    lib.rnp_key_handle_destroy(key)
                signatures.append((status, fingerprint))
            return _memory(lib, dst), signatures, protected
        finally:
            if op:
                lib.rnp_op_verify_destroy(op)
            if dst:
                lib.rnp_output_destroy(dst)
            lib.rnp_input_destroy(src)

    def encrypt_sign(self, data: bytes, *, recipient: str, signer: str) -> bytes | None:
        """``data`` signed by ``signer`` and encrypted for ``recipient`` (primary fingerprints),
        ASCII-armoured; None when librnp cannot."""
        lib = self.lib
        src, dst, op = _vp(), _vp(), _vp()
        to, by = self.locate(recipient), self.locate(signer)
        try:
            if not to or not by:
                return None
            if lib.rnp_input_from_memory(ctypes.byref(src), data, len(data), False) != _SUCCESS:
                return None
            if lib.rnp_output_to_memory(ctypes.byref(dst), 0) != _SUCCESS:
                return None
            if lib.rnp_op_encrypt_create(ctypes.byref(op), self.ffi, src, dst) != _SUCCESS:
                return None
            steps = (lib.rnp_op_encrypt_add_recipient(op, to),
                     lib.rnp_op_encrypt_add_signature(op, by, None),
                     lib.rnp_op_encrypt_set_armor(op, True),
                     lib.rnp_op_encrypt_set_cipher(op, b"AES256"),
                     lib.rnp_op_encrypt_set_hash(op, b"SHA256"),
                     # what gpg writes for its own keys' preferences (ZLIB, level 6); no
                     # compression for what is compressed already (see _compresses)
                     lib.rnp_op_encrypt_set_compression(
                         op, *((b"ZLIB", 6) if _compresses(data) else (b"Uncompressed", 0))))
            if any(rc != _SUCCESS for rc in steps):
                return None
            if lib.rnp_op_encrypt_execute(op) != _SUCCESS:
                return None
            return _memory(lib, dst)
        finally:
            if op:
                lib.rnp_op_encrypt_destroy(op)
            if dst:
                lib.rnp_output_destroy(dst)
            if src:
                lib.rnp_input_destroy(src)
            for key in (to, by):
                if key:
                    lib.rnp_key_handle_destroy(key)


_SAMPLE = 4096


def _compresses(data: bytes) -> bool:
    """Whether deflating ``data`` is worth it: samples of it (its start and its middle)
    shrink by an eighth at least at zlib's fastest level.  A zip (a CR-BIO ``IHE_XDM.ZIP``, an
    office file), a JPEG, a PNG do not: deflated again they keep their size and cost the
    sealing ~1 ms of CPU per 50 KB.  gpg does the same for a zip, gzip or bzip2 file it is
    given by name; every OpenPGP reader takes a literal packet without compression."""
    if len(data) <= 2 * _SAMPLE:
        sample = data
    else:
        middle = len(data) // 2
        sample = data[:_SAMPLE] + data[middle:middle + _SAMPLE]
    return len(zlib.compress(sample, 1)) < len(sample) - len(sample) // 8


def _memory(lib: ctypes.CDLL, dst: ctypes.c_void_p) -> bytes:
    buf, size = _vp(), ctypes.c_size_t(0)
    if lib.rnp_output_memory_get_buf(dst, ctypes.byref(buf), ctypes.byref(size),
                                     False) != _SUCCESS:
        return b""
    return ctypes.string_at(buf, size.value) if size.value else b""


class RnpCipher:
    """Part-level OpenPGP for :class:`gateway.crypto.legacy.LegacyCrypto`, through librnp."""

    def __init__(self, home: Path, *, gateway_fingerprint: str, timeout: float = 30.0,
                 max_output: int = 0) -> None:
        self.gpg = OpenPgpCipher(home, gateway_fingerprint=gateway_fingerprint, timeout=timeout,
                                 max_output=max_output)
        # what one part may decrypt to (0: no limit): past it librnp stops, and gpg, which
        # counts the same way, names the refusal (MessageTooBig)
        self.max_output = max_output
        self.home = home
        self.timeout = timeout
        self.lib = library()
        self._key = self._gpg_out("--pinentry-mode", "loopback", "--passphrase", "",
                                  "--export-secret-keys", self.gpg.gateway)
        if not self._key:
            raise CryptoToolError(f"the gateway's secret key {self.gpg.gateway[-16:]} cannot be "
                                  f"read from {home} without a passphrase (absent, or "
                                  "protected: the rnp adapter needs it unprotected)")
        self._certs = KeyringCerts(self._gpg_out, self._keyring_stamp)  # a change: every
        # thread's context is made again (its generation)
        self._local = threading.local()
        self._self_test()

    def _self_test(self) -> None:
        """The gateway's key signs and decrypts through librnp (a protected key would not)."""
        ctx = self._context()
        sealed = ctx.encrypt_sign(b"passerelle", recipient=self.gpg.gateway,
                                  signer=self.gpg.gateway)
        opened = ctx.decrypt_verify(sealed) if sealed else None
        if opened is None or opened[0] != b"passerelle" or not opened[1] or opened[1][0][0]:
            raise CryptoToolError(f"the gateway's secret key {self.gpg.gateway[-16:]} cannot "
                                  "sign and decrypt through librnp (protected by a passphrase, "
                                  "or an algorithm librnp lacks)")

    # -- keys (as the sop adapter: gpg's listing and export, until the keyring changes) -----

    def _gpg_out(self, *args: str) -> bytes:
        return gpg_out(self.home, self.timeout, *args)

    def _keyring_stamp(self) -> tuple[int, int, int]:
        return keyring_stamp(self.home)

    def _cert(self, fingerprint: str) -> _Cert | None:
        return self._certs.get(fingerprint)

    def _context(self, cert: _Cert | None = None) -> _Context:
        """This thread's librnp context, holding ``cert``."""
        ctx: _Context | None = getattr(self._local, "ctx", None)
        if (ctx is None or ctx.pid != os.getpid() or ctx.generation != self._certs.generation
                or len(ctx.imported) >= _CACHE_SIZE):
            self._local.ctx = None
            if ctx is not None:
                ctx.close() if ctx.pid == os.getpid() else None
            ctx = self._local.ctx = _Context(self.lib, self._key, self._certs.generation)
        if cert is not None and cert.primary.fingerprint not in ctx.imported:
            if not ctx.load(cert.data, _LOAD_PUBLIC):
                return ctx  # not imported: what needs it is handed to gpg
            ctx.imported.add(cert.primary.fingerprint)
        return ctx

    # -- operations ------------------------------------------------------------------------

    def decrypt_verify(self, data: bytes, *, signer: str = "", unsigned_ok: bool = False
                       ) -> PartResult:
        """Decrypt ``data`` and check it is signed by ``signer`` (the expected sender's primary
        fingerprint); without one, or on anything but success, the gpg adapter decides (an
        unsigned part too, ``unsigned_ok`` or not: gpg's verdict says whether nobody signed
        it)."""
        cert = self._cert(signer) if signer else None
        if cert is not None and cert.primary.usable("", time.time()):
            opened = self._context(cert).decrypt_verify(data, self.max_output)
            reason = "cannot_decrypt"
            if opened is not None:
                plain, signatures, protected = opened
                now = time.time()
                reason = ("unprotected" if not protected else "unsigned" if not signatures
                          else "signature_not_good" if any(
                              status != _SUCCESS for status, _ in signatures)
                          else "signer_not_usable" if not all(
                              cert.signs_now(fpr, now) for _, fpr in signatures)
                          else "")
                if not reason:
                    return PartResult(plaintext=plain, signer=cert.primary.fingerprint,
                                      signer_uid=cert.uid, tool="rnp")
                del plain
            log.info("legacy.rnp_not_accepted", stage="open", reason=reason)  # gpg decides
        if unsigned_ok:
            return self.gpg.decrypt_verify(data, unsigned_ok=True)
        return self.gpg.decrypt_verify(data)

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart:
        cert = self._cert(recipient)
        if cert is not None and cert.encrypts_now(time.time()):
            sealed = self._context(cert).encrypt_sign(
                data, recipient=cert.primary.fingerprint, signer=self.gpg.gateway)
            if sealed and sealed.startswith(b"-----BEGIN PGP MESSAGE-----"):
                return SealedPart(sealed, tool="rnp")
            log.info("legacy.rnp_not_accepted", stage="seal", reason="cannot_seal")
        return self.gpg.encrypt_sign(data, recipient=recipient)
