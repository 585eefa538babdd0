"""External-command part cipher: for operators holding the licensed legacy binaries.

The first-generation clients' tools (Apicrypt-style) work on files, with a directory of keys,
and write their own armour: a body is encrypted into a text block the tool recognises by its
marker (``$APICRYPT`` …) wherever it sits in the text it is given, and attachments are packed
by a second pair of tools into ``name.apz`` files, one ``.apz`` holding one or several files
whose names the tool keeps.  Open-source practice-management software calls them as
``apiuncrypt -s IN -o OUT -k KEYDIR`` (body), ``apiuncryptpj -s IN.apz -o OUTDIR/ -k KEYDIR``
(attachments), ``apicrypt -s IN -o OUT -u USER -k KEYDIR -d TO`` and ``apicryptpj …`` to seal,
and reads nothing but the files they write.  This adapter speaks that shape.

Configuration (``[legacy]``, all argv templates, passed as a list — never through a shell)::

    open_command = ["apiuncrypt", "-s", "{in}", "-o", "{out}", "-k", "{keydir}"]
    seal_command = ["apicrypt", "-s", "{in}", "-o", "{out}", "-u", "{signer}",
                    "-k", "{keydir}", "-d", "{recipient}"]
    open_attachment_command = ["apiuncryptpj", "-s", "{in}", "-o", "{outdir}/", "-k", "{keydir}"]
    seal_attachment_command = ["apicryptpj", "-s", "{in}", "-o", "{out}", "-u", "{signer}",
                               "-k", "{keydir}", "-d", "{recipient}"]

Placeholders: ``{in}`` (a file holding the part; for an attachment to seal it bears the
attachment's own name, which the tool keeps inside the ``.apz``), ``{out}`` (the file the tool
writes), ``{outdir}`` (an empty directory the attachment tool writes the files it unpacks
into, each under the name it kept), ``{keydir}`` (``key_dir``), ``{recipient}`` (the
recipient's key id: the address book's ``legacy_fingerprint``) and ``{signer}`` (the gateway's
key id, ``gateway_fingerprint``).  Without attachment commands, attachments go through
``open_command``/``seal_command`` one file each.

Recognising the tool's parts in the MIME structure: a text part holding one of
``armor_markers`` (default ``$APICRYPT`` and ``-----BEGIN PGP MESSAGE-----``) is an encrypted
body; an attachment whose name ends with one of ``attachment_suffixes`` (default ``.apz``,
``.pgp``, ``.gpg``, ``.asc``) is an encrypted attachment; anything else that is not empty is
refused as not encrypted.  Sealed attachments are named ``name.ext`` + ``sealed_suffix``
(default ``.apz``).

Verdicts: the tool exits 0 and writes its output, and says who signed in a line of its
standard output matching ``signer_pattern`` (a regular expression with one group, default
``^SIGNER (\\S+)``).  Exit 0 with no such line is the *unsigned* verdict of a first-generation
client: the part was decrypted but nobody signed it — accepted only where the sender may send
unsigned parts (a v1 user over the hub's authenticated session), else :class:`Unsigned`.  Any
other exit status names a failure through ``[legacy.exit_codes]`` (status → kind), merged over
the defaults 1 cannot_decrypt, 2 bad_signature, 3 unknown_key, 4 unsigned, 5 key_expired,
6 revoked key, 7 no_recipient_key; a kind may also be ``transient``.  An unmapped status, a
crash, a missing output or the timeout is a transient tool failure (:class:`CryptoToolError`:
the message is retried, never passed on).

What a part may decrypt to is bounded (``max_output``, ``limits.max_decrypted_part``): the
tool runs with a file-size limit (``RLIMIT_FSIZE``) one octet past it, so a part that would
unpack to more stops the tool while it writes (``SIGXFSZ``) instead of filling the disk;
that, or files past the limit, is :class:`MessageTooBig` — bounced, never retried.
"""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path

from gateway.crypto.legacy import ARMOR_BEGIN, PartResult, SealedPart
from gateway.errors import (
    EXIT_KINDS,
    CannotDecrypt,
    CryptoToolError,
    MessageTooBig,
    PasserelleError,
    Unsigned,
)

DEFAULT_EXIT_CODES = {1: "cannot_decrypt", 2: "bad_signature", 3: "unknown_key", 4: "unsigned",
                      5: "key_expired", 6: "key_revoked", 7: "no_recipient_key"}
DEFAULT_MARKERS = ("$APICRYPT", ARMOR_BEGIN.decode("ascii"))
DEFAULT_SUFFIXES = (".apz", ".pgp", ".gpg", ".asc")
DEFAULT_SIGNER = r"^SIGNER (\S+)"
MAX_UNPACKED = 64  # files one encrypted attachment may unpack into


def _safe_name(name: str) -> str:
    """A file name the tool wrote (or an attachment's), as a plain base name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip(" .")
    return base[:200] or "piece-jointe"


def _file_size_limit(limit: int) -> Callable[[], None]:
    """What the child runs before the tool: no file larger than ``limit`` octets."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


class CommandCipher:
    def __init__(self, *, open_argv: tuple[str, ...], seal_argv: tuple[str, ...],
                 key_dir: Path | None, timeout: float, gateway_key: str,
                 open_attachment_argv: tuple[str, ...] = (),
                 seal_attachment_argv: tuple[str, ...] = (),
                 armor_markers: tuple[str, ...] = (),
                 attachment_suffixes: tuple[str, ...] = (),
                 sealed_suffix: str = "",
                 signer_pattern: str = "",
                 exit_codes: dict[int, str] | None = None, max_output: int = 0) -> None:
        self.max_output = max_output  # what one part may decrypt to (0: no limit)
        self.open_argv = open_argv
        self.seal_argv = seal_argv
        self.open_attachment_argv = open_attachment_argv
        self.seal_attachment_argv = seal_attachment_argv
        self.key_dir = key_dir
        self.timeout = timeout
        self.gateway_key = gateway_key
        # what LegacyCrypto recognises as this tool's parts
        self.armor_markers = tuple(m.encode("latin-1") for m in armor_markers or DEFAULT_MARKERS)
        self.attachment_suffixes = tuple(s.lower() for s in attachment_suffixes
                                         or DEFAULT_SUFFIXES)
        self.sealed_suffix = sealed_suffix or ".apz"
        self.signer = re.compile(signer_pattern or DEFAULT_SIGNER, re.MULTILINE)
        self.failures = {**DEFAULT_EXIT_CODES, **(exit_codes or {})}

    # -- running the tool --------------------------------------------------------------------

    def _run(self, template: tuple[str, ...], values: dict[str, str], *, bounded: bool = False
             ) -> tuple[int, str]:
        """The tool's exit status and standard output; ``bounded``: no file it writes may
        grow past ``max_output`` + 1 octets (the kernel stops it with ``SIGXFSZ``)."""
        argv = [arg.format(keydir=str(self.key_dir or ""), signer=self.gateway_key, **values)
                for arg in template]
        tool = Path(argv[0]).name if argv else "(no command)"
        if not argv:
            raise CryptoToolError("legacy tool: no command configured")
        try:
            limit = self.max_output + 1 if bounded and self.max_output else 0
            proc = subprocess.run(argv, capture_output=True, timeout=self.timeout,
                                  check=False, stdin=subprocess.DEVNULL,
                                  preexec_fn=_file_size_limit(limit) if limit else None)
        except subprocess.TimeoutExpired:
            raise CryptoToolError(f"{tool} timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise CryptoToolError(f"{tool} cannot run ({exc.strerror})") from None
        return proc.returncode, proc.stdout.decode("latin-1")

    def _too_big(self, tool: str, code: int, sizes: list[int]) -> None:
        """:class:`MessageTooBig` when the tool was stopped at the file-size limit, or wrote
        more than ``max_output`` in all."""
        if not self.max_output:
            return
        if code == -signal.SIGXFSZ or sum(sizes) > self.max_output:
            raise MessageTooBig(f"{tool}: a part decrypts to more than {self.max_output} "
                                "bytes (limits.max_decrypted_part)")

    def _failure(self, tool: str, code: int) -> PasserelleError:
        kind = self.failures.get(code)
        if kind is None or code == 0:
            if code < 0:
                return CryptoToolError(f"{tool} killed by signal {-code}")
            return CryptoToolError(f"{tool} failed (exit {code})")
        cls = EXIT_KINDS[kind]
        return cls(f"{tool}: {kind.replace('_', ' ')} (exit {code})")

    def _verdict(self, tool: str, code: int, out: str, produced: bool, unsigned_ok: bool
                 ) -> str:
        """The signer the tool names, "" for a part it decrypted unsigned; else raises."""
        kind = self.failures.get(code) if code else None
        if code == 0 or (kind == "unsigned" and unsigned_ok and produced):
            if not produced:
                raise CryptoToolError(f"{tool} wrote nothing (exit {code})")
            match = self.signer.search(out) if code == 0 else None
            if match is not None:
                return match.group(1).upper()
            if not unsigned_ok:
                raise Unsigned(f"{tool}: part decrypted but not signed (first-generation "
                               "client)")
            return ""
        raise self._failure(tool, code)

    # -- the PartCipher protocol -------------------------------------------------------------

    def decrypt_verify(self, data: bytes, *, signer: str = "", unsigned_ok: bool = False
                       ) -> PartResult:
        tool = Path(self.open_argv[0]).name if self.open_argv else "legacy tool"
        with tempfile.TemporaryDirectory(prefix="passerelle-") as tmp:
            src, dst = Path(tmp) / "in", Path(tmp) / "out"
            src.write_bytes(data)
            code, out = self._run(self.open_argv, {"in": str(src), "out": str(dst),
                                                   "outdir": tmp, "recipient": "",
                                                   "name": "in"}, bounded=True)
            self._too_big(tool, code, [dst.stat().st_size] if dst.is_file() else [])
            found = self._verdict(tool, code, out, dst.is_file(), unsigned_ok)
            return PartResult(plaintext=dst.read_bytes(), signer=found, tool="command")

    def open_attachment(self, data: bytes, *, name: str, signer: str = "",
                        unsigned_ok: bool = False) -> list[tuple[str, PartResult]]:
        """An encrypted attachment (``name``, e.g. ``cr.pdf.apz``) → the file(s) it holds,
        each with its name and the tool's verdict."""
        stem = _safe_name(name)
        stem = stem[: stem.rfind(".")] if "." in stem else stem
        if not self.open_attachment_argv:
            return [(stem, self.decrypt_verify(data, signer=signer, unsigned_ok=unsigned_ok))]
        tool = Path(self.open_attachment_argv[0]).name
        with tempfile.TemporaryDirectory(prefix="passerelle-") as tmp:
            src, outdir = Path(tmp) / "in" / _safe_name(name), Path(tmp) / "out"
            src.parent.mkdir()
            outdir.mkdir()
            src.write_bytes(data)
            dst = outdir / stem
            code, out = self._run(self.open_attachment_argv, {
                "in": str(src), "out": str(dst), "outdir": str(outdir), "recipient": "",
                "name": _safe_name(name)}, bounded=True)
            files = sorted(p for p in outdir.rglob("*") if p.is_file())
            self._too_big(tool, code, [p.stat().st_size for p in files])
            if len(files) > MAX_UNPACKED:
                raise CannotDecrypt(f"{tool}: attachment unpacks into {len(files)} files "
                                    f"(at most {MAX_UNPACKED})")
            found = self._verdict(tool, code, out, bool(files), unsigned_ok)
            return [(_safe_name(p.name), PartResult(plaintext=p.read_bytes(), signer=found,
                                                    tool="command")) for p in files]

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart:
        return self._seal(self.seal_argv, data, recipient, "message.txt")

    def seal_attachment(self, data: bytes, *, recipient: str, filename: str
                        ) -> tuple[SealedPart, str]:
        """An attachment sealed the tool's way, and the name it is sent under."""
        name = _safe_name(filename)
        template = self.seal_attachment_argv or self.seal_argv
        return self._seal(template, data, recipient, name), name + self.sealed_suffix

    def _seal(self, template: tuple[str, ...], data: bytes, recipient: str, name: str
              ) -> SealedPart:
        tool = Path(template[0]).name if template else "legacy tool"
        with tempfile.TemporaryDirectory(prefix="passerelle-") as tmp:
            src = Path(tmp) / "in" / name
            src.parent.mkdir()
            dst = Path(tmp) / f"{name}{self.sealed_suffix}"
            src.write_bytes(data)
            code, _ = self._run(template, {"in": str(src), "out": str(dst), "outdir": tmp,
                                           "recipient": recipient, "name": name})
            if code != 0:
                raise self._failure(tool, code)
            if not dst.is_file() or dst.stat().st_size == 0:
                raise CryptoToolError(f"{tool} wrote nothing (exit 0)")
            return SealedPart(dst.read_bytes(), tool="command")
