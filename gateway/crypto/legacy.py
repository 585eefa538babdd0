"""The legacy crypto adapter: ``open`` a received legacy message, ``seal`` one for a user.

The message shapes are the legacy network's (see the legacy-network spec):

* an inline ASCII-armoured body (``-----BEGIN PGP MESSAGE-----`` in a text part),
* PGP/MIME (RFC 3156: ``multipart/encrypted; protocol="application/pgp-encrypted"``),
* encrypted attachments named ``name.ext.pgp`` / ``name.ext.apz`` (``.gpg``/``.asc`` too).

Every part must be encrypted *and* signed by the key bound to the envelope sender; anything
else is a typed failure (:mod:`gateway.errors`), never plaintext passed on.  The one exception
is asked for by the caller (``unsigned_ok``): a first-generation (v1) client encrypts but does
not sign, and its parts are accepted unsigned when the pipeline says the message came over
the legacy hub's authenticated session from a v1 user; a part that *is* signed must still be
signed by the sender's key, and the verification says which parts were unsigned.  The shapes are
handled here once; an implementation (:class:`PartCipher`) only decrypts, verifies and
encrypts single parts — one tool call per part.  ``seal`` writes what legacy clients write:
the body inline-armoured in a ``text/plain`` part, each attachment as ``name.ext.pgp`` (or the
tool's own, e.g. ``name.ext.apz``, when the cipher has ``seal_attachment``).  A cipher may also
say what its parts look like (``armor_markers``, ``attachment_suffixes``) and unpack an
attachment into several files (``open_attachment``): the command adapter does, for the
licensed tools (see :mod:`gateway.crypto.command`).
"""

from __future__ import annotations

import contextvars
import mimetypes
from dataclasses import dataclass, field, replace
from email.message import EmailMessage, Message
from functools import cached_property
from typing import Any, Protocol

from gateway.errors import (
    MessageFormatError,
    MessageTooBig,
    NestedArmour,
    NotEncrypted,
    Unsigned,
    WrongSigner,
)
from gateway.mail import mime
from gateway.mail.handover import Handover

ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"
# the plaintext octets the message being opened (in this thread) has decrypted to so far
_OPENED: contextvars.ContextVar[int] = contextvars.ContextVar("opened", default=0)
ENCRYPTED_SUFFIXES = (".pgp", ".apz", ".gpg", ".asc")
# what, found in a part once decrypted, is another OpenPGP message: someone's ciphertext or
# signed text, which no check of ours has opened (a public key block is only a key)
# ("-----BEGIN PGP MESSAGE, PART 1/2-----" too: the armour of a message in parts)
NESTED_ARMOUR = (b"-----BEGIN PGP MESSAGE", b"-----BEGIN PGP SIGNED MESSAGE")


@dataclass(frozen=True)
class PartResult:
    """One decrypted part: its plaintext, who signed it (primary key fingerprint) and which
    tool checked it (``TOOLS``)."""

    plaintext: bytes
    signer: str  # "" when the part was decrypted but not signed (a first-generation client)
    signer_uid: str = ""
    tool: str = ""

    @property
    def signed(self) -> bool:
        return bool(self.signer)


@dataclass(frozen=True)
class SealedPart:
    """One sealed part: its ASCII-armoured text and which tool sealed it (``TOOLS``)."""

    data: bytes
    tool: str = ""


class PartCipher(Protocol):
    """What an implementation provides: single-part operations, failures typed."""

    def decrypt_verify(self, data: bytes, *, signer: str = "", unsigned_ok: bool = False
                       ) -> PartResult:
        """``signer``: the expected signer's primary fingerprint, a hint an implementation may
        use to find the certificate (the verdict is still checked against it by ``open``).
        ``unsigned_ok``: a part decrypted without any signature is returned with
        ``signer=""`` instead of raising :class:`Unsigned` (a bad, unknown, expired or
        revoked signature is still its failure)."""
        ...

    def encrypt_sign(self, data: bytes, *, recipient: str) -> SealedPart: ...


TOOLS = ("gpg", "sop", "rnp", "command")
"""What may verify or seal a part: gpg (the openpgp adapter, or the sop and rnp adapters' gpg for
what they do not accept), the sop command, librnp in-process, or the operator's licensed tool."""


VERIFICATION_KINDS = ("signed", "unsigned_v1")
"""How a legacy part was verified: signed by the sender's key, or unsigned from a
first-generation (v1) user over the hub's authenticated session."""

UNSIGNED_NOTE = ("not signed by the author (first-generation client); sender asserted by the "
                 "legacy hub")


@dataclass(frozen=True)
class Verification:
    signer: str
    signer_uid: str
    parts: tuple[str, ...] = field(default=())  # what each part was, e.g. "body:inline"
    tools: tuple[str, ...] = field(default=())  # which tool verified each part
    kinds: tuple[str, ...] = field(default=())  # VERIFICATION_KINDS, one per part

    @property
    def unsigned(self) -> bool:
        """Whether any part came unsigned (a first-generation client's)."""
        return "unsigned_v1" in self.kinds

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"signer": self.signer, "parts": list(self.parts),
                               "result": "unsigned" if self.unsigned else "good",
                               "tools": list(self.tools),
                               "kinds": list(self.kinds or ("signed",) * len(self.parts))}
        if self.unsigned:
            out["note"] = UNSIGNED_NOTE
        return out


@dataclass(frozen=True)
class OpenedMessage:
    """The MIME message with every encrypted part replaced by its plaintext: ``handed`` in
    pieces, to be read once by the next stage, or ``message`` whole (its pieces joined)."""

    handed: Handover
    verification: Verification

    @cached_property
    def message(self) -> bytes:
        return self.handed.take()


class LegacyCrypto:
    """`open`/`seal` over any :class:`PartCipher` (OpenPGP through gpg, or a licensed tool)."""

    def __init__(self, cipher: PartCipher, *, max_plaintext: int = 0) -> None:
        self.cipher = cipher
        # what all the parts of one message may decrypt to (0: no limit); each part's own
        # limit is the cipher's, enforced while it decrypts
        self.max_plaintext = max_plaintext
        # what the cipher's tool writes: armour markers in a text part, attachment suffixes
        self.markers: tuple[bytes, ...] = tuple(getattr(cipher, "armor_markers", (ARMOR_BEGIN,)))
        self.suffixes: tuple[str, ...] = tuple(getattr(cipher, "attachment_suffixes",
                                                       ENCRYPTED_SUFFIXES))
        self.nested = tuple(dict.fromkeys((*NESTED_ARMOUR, *self.markers)))

    def open(self, raw: bytes | Handover, *, expected_signer: str, unsigned_ok: bool = False
             ) -> OpenedMessage:
        """Open every part; a handed-over message is let go once parsed.  ``unsigned_ok``:
        parts decrypted without a signature are accepted (and said so in the verification);
        only the pipeline decides it (a v1 user over the hub's authenticated session)."""
        msg = mime.parse(raw)
        results: list[tuple[str, PartResult]] = []
        expected = expected_signer.replace(" ", "").upper()
        opened = _OPENED.set(0)
        try:
            out = self._rebuild(msg, results, expected, top=True, unsigned_ok=unsigned_ok)
        finally:
            _OPENED.reset(opened)
        del msg  # its parts are no longer needed while the rebuilt message is written
        if not results:
            raise NotEncrypted("message holds no encrypted part")
        for what, result in results:
            if not result.signed:
                if not unsigned_ok:  # a cipher that ignored the flag: refused all the same
                    raise Unsigned(f"{what} is encrypted but not signed")
                continue
            if result.signer.upper() != expected:
                raise WrongSigner(f"{what} signed by {result.signer[-16:]}, expected the "
                                  f"sender's key {expected[-16:]}")
        signed = [r for _, r in results if r.signed]
        first = signed[0] if signed else results[0][1]
        # the next stage (compose) parses it again: a small one is handed as read too
        return OpenedMessage(mime.to_handover(out, reread=True), Verification(
            signer=first.signer, signer_uid=first.signer_uid,
            parts=tuple(what for what, _ in results),
            tools=tuple(result.tool for _, result in results),
            kinds=tuple("signed" if r.signed else "unsigned_v1" for _, r in results)))

    def _decrypt(self, data: bytes, signer: str, unsigned_ok: bool) -> PartResult:
        if unsigned_ok:
            result = self.cipher.decrypt_verify(data, signer=signer, unsigned_ok=True)
        else:
            result = self.cipher.decrypt_verify(data, signer=signer)
        self._count(len(result.plaintext))
        self._not_nested(result.plaintext)
        return result

    def _not_nested_name(self, filename: str | None) -> None:
        """Nor a file named as an encrypted one (``x.pgp`` inside a decrypted part: an
        OpenPGP message in binary, which no armour marker shows)."""
        if filename and filename.lower().rstrip(". ").endswith(self.suffixes):
            raise NestedArmour("a decrypted part holds a file named as an encrypted one")

    def _not_nested(self, plaintext: bytes) -> None:
        """A decrypted part may not hold another OpenPGP message: it would be passed on as
        ciphertext (or as signed text nobody checked) under the outer sender's name."""
        if any(marker in plaintext for marker in self.nested):
            raise NestedArmour("a decrypted part holds another OpenPGP message (armour)")

    def _count(self, size: int) -> None:
        """Add one part's plaintext to the message's total; past ``max_plaintext`` the
        message is refused for good (bounced ``too_big``), never retried."""
        total = _OPENED.get() + size
        _OPENED.set(total)
        if self.max_plaintext and total > self.max_plaintext:
            raise MessageTooBig(f"the message's parts decrypt to more than "
                                f"{self.max_plaintext} bytes (limits.max_decrypted_message)")

    def _rebuild(self, part: Message, results: list[tuple[str, PartResult]], signer: str, *,
                 top: bool, inside: bool = False, unsigned_ok: bool = False) -> EmailMessage:
        """Rebuild ``part`` with its encrypted pieces opened; ``inside`` = already within a
        decrypted (and signature-checked) PGP/MIME entity, whose leaves are plaintext."""
        ctype = mime.content_type(part)
        if ctype == "multipart/encrypted":
            payload = part.get_payload()
            if not isinstance(payload, list) or len(payload) != 2 or not isinstance(
                    payload[1], Message):
                raise MessageFormatError("PGP/MIME message without its two parts")
            data = payload[1].get_payload(decode=True)
            if not isinstance(data, bytes):
                raise MessageFormatError("PGP/MIME encrypted part is empty")
            payload[1].set_payload("")  # open's own parse: let go once read, as in _leaf
            result = self._decrypt(data, signer, unsigned_ok)
            del data
            results.append(("body:pgp-mime", _verdict(result)))
            inner = mime.parse(result.plaintext)
            del result
            rebuilt = self._rebuild(inner, results, signer, top=False, inside=True,
                                    unsigned_ok=unsigned_ok)
            return _with_headers(part, rebuilt) if top else rebuilt
        if part.is_multipart():
            new = mime.new()
            if top:
                _copy_headers(part, new)
                new["MIME-Version"] = "1.0"
            new["Content-Type"] = part.get("Content-Type", "multipart/mixed")
            payload = part.get_payload()
            assert isinstance(payload, list)
            new.set_payload([self._rebuild(p, results, signer, top=False, inside=inside,
                                           unsigned_ok=unsigned_ok)
                             for p in payload if isinstance(p, Message)])
            return new
        if inside:
            decoded = part.get_payload(decode=True)
            if isinstance(decoded, bytes):  # armour in base64 or quoted-printable too
                self._not_nested(decoded)
            del decoded
            self._not_nested_name(part.get_filename())
            leaf = mime.new()
            _copy_headers(part, leaf, skip_content=False)
            # its text as parsed: get_payload() gives an 8-bit text decoded, which the
            # writer (ASCII, 8-bit bytes kept as surrogates) then cannot write
            leaf.set_payload(getattr(part, "_payload", ""))
            return leaf
        return self._leaf(part, results, signer, top=top, unsigned_ok=unsigned_ok)

    def _leaf(self, part: Message, results: list[tuple[str, PartResult]], signer: str, *,
              top: bool, unsigned_ok: bool = False) -> EmailMessage:
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        # the parsed message is open's own: a part's text is let go once read, so that the
        # received attachments and the decrypted ones are not all held at once
        part.set_payload("")
        filename = part.get_filename()
        new = mime.new()
        if top:
            _copy_headers(part, new, skip_content=True)
        if filename and filename.lower().endswith(self.suffixes):
            opener = getattr(self.cipher, "open_attachment", None)
            if opener is None:
                files = [(filename[: filename.rfind(".")],
                          self._decrypt(data, signer, unsigned_ok))]
            else:  # a tool whose attachment may hold several files, named by the tool
                files = (opener(data, name=filename, signer=signer, unsigned_ok=True)
                         if unsigned_ok else opener(data, name=filename, signer=signer))
            del data  # not held while the plaintext is encoded
            if opener is not None:
                self._count(sum(len(result.plaintext) for _, result in files))
                for _, result in files:
                    self._not_nested(result.plaintext)
            for name, _ in files:
                self._not_nested_name(name)
            if not files:
                raise NotEncrypted(f"attachment {filename!r} holds no file")
            parts = []
            for name, result in files:
                results.append((f"attachment:{len(results) + 1}", _verdict(result)))
                guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
                maintype, _, subtype = guessed.partition("/")
                one = new if len(files) == 1 else mime.new()
                mime.set_base64(one, result.plaintext, maintype=maintype, subtype=subtype,
                                disposition="attachment", filename=name)
                parts.append(one)
            if len(parts) > 1:
                new.make_mixed()
                for one in parts:
                    new.attach(one)
            return new
        if any(marker in data for marker in self.markers):
            result = self._decrypt(data, signer, unsigned_ok)
            del data
            results.append(("body:inline", _verdict(result)))
            # Bytes as the author's software wrote them: the text stage finds the charset.
            mime.set_base64(new, result.plaintext, maintype="text", subtype="plain")
            return new
        if data.strip():
            what = f"attachment {filename!r}" if filename else "a text part"
            raise NotEncrypted(f"{what} is not encrypted")
        new.set_content(b"", maintype="text", subtype="plain")
        return new

    def seal(self, message: bytes | Handover, *, recipient: str) -> bytes:
        """Seal every part for ``recipient``; a handed-over message is let go as it is
        parsed."""
        return self.seal_traced(message, recipient=recipient)[0]

    def seal_traced(self, message: bytes | Handover, *, recipient: str
                    ) -> tuple[bytes, tuple[str, ...]]:
        """:meth:`seal`, and which tool sealed each part, in order."""
        tools: list[str] = []
        msg = mime.parse(message)
        out = mime.new()
        _copy_headers(msg, out, skip_content=True)
        out.make_mixed()
        leaves = mime.leaves(msg)
        leaves.reverse()
        seal_attachment = getattr(self.cipher, "seal_attachment", None)
        while leaves:  # each part decoded in turn and let go once sealed
            leaf = leaves.pop()
            data, is_attachment, filename = leaf.data, leaf.is_attachment, leaf.filename
            # its text let go before it is sealed, its plaintext before the sealed text is
            # stored: of a part, only two of the four are held at once
            leaf.source.set_payload("")
            del leaf
            name = f"{filename or 'piece-jointe'}.pgp"
            if is_attachment and seal_attachment is not None:
                # the tool's own attachment (name.ext.apz), the file name kept inside it
                sealed, name = seal_attachment(data, recipient=recipient,
                                               filename=filename or "piece-jointe")
            else:
                sealed = self.cipher.encrypt_sign(data, recipient=recipient)
            del data
            tools.append(sealed.tool)
            armored = sealed.data
            del sealed
            part = mime.new()
            if is_attachment:
                part.set_content(armored, maintype="application", subtype="octet-stream",
                                 disposition="attachment", filename=name,
                                 cte="7bit" if armored.isascii() else "base64")
            elif armored.isascii():
                part.set_content(armored.decode("ascii"), subtype="plain", charset="us-ascii",
                                 cte="7bit")
            else:  # a tool whose armour is not ASCII: its bytes, as they are
                part.set_content(armored, maintype="text", subtype="plain", cte="base64")
            del armored  # stored as the part's text: not held while the next is sealed
            out.attach(part)
        return mime.to_bytes(out, release=True), tuple(tools)


def _verdict(result: PartResult) -> PartResult:
    """What ``open`` keeps of a part once opened: who signed it, not its plaintext (every
    part's would otherwise be held until the whole message is written)."""
    return replace(result, plaintext=b"")


_CONTENT_HEADERS = ("content-type", "content-transfer-encoding", "content-disposition",
                    "mime-version")


def _copy_headers(src: Message, dst: EmailMessage, *, skip_content: bool = True) -> None:
    # decoded and checked first: a value whose RFC 2047 words decode to a line break would
    # otherwise be written back as two header fields (header injection)
    for name, value in mime.header_items(src):
        if skip_content and name.lower() in _CONTENT_HEADERS:
            continue
        mime.add_header(dst, name, value)


def _with_headers(outer: Message, inner: EmailMessage) -> EmailMessage:
    new = mime.new()
    _copy_headers(outer, new)
    for name, value in mime.header_items(inner):
        if name.lower() in _CONTENT_HEADERS:
            mime.add_header(new, name, value)
    if inner.is_multipart():
        new.set_payload(inner.get_payload())
    else:
        new.set_payload(inner.get_payload(), inner.get_content_charset())
    return new
