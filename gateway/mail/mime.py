"""Reading and writing RFC 5322 / MIME messages safely, for both directions.

Incoming messages come from outside: the reader bounds header count, header line length and
nesting depth before anything else looks at them, and turns every parse problem into a
:class:`~gateway.errors.MessageFormatError` (never a traceback).  Messages are read and built
under the policies of :mod:`gateway.mail.policy` and written out by :mod:`gateway.mail.write`
(:func:`to_bytes`, :func:`to_handover`, re-exported here with them).
"""

from __future__ import annotations

import binascii
import email
import email.generator
import email.parser
import email.policy
import re
import struct
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from functools import cached_property
from typing import Any

from gateway.errors import MessageFormatError
from gateway.mail.handover import Handover
from gateway.mail.policy import MIME_CHARSET, POLICY, WIRE, content_type, new
from gateway.mail.write import REREAD, to_bytes, to_handover

MAX_HEADERS = 500
MAX_HEADER_LINE = 16 * 1024
# A header field folded over many short lines: the email package parses structured fields in
# worse than linear time (a 1 MB To: takes tens of seconds), so a field is bounded as a whole.
MAX_HEADER_FIELD = 64 * 1024
MAX_DEPTH = 20
MAX_PARTS = 500
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FEED = 64 * 1024  # bytes handed to the parser at a time


@dataclass(frozen=True)
class Part:
    """A leaf of a MIME tree; :attr:`data` is its content decoded from its transfer
    encoding, decoded when first read (an attachment passed on as it is never is)."""

    content_type: str
    filename: str | None
    charset: str | None
    is_attachment: bool
    source: Message = field(repr=False, compare=False)

    @cached_property
    def data(self) -> bytes:
        encoded = self.base64_text()
        if encoded is not None:  # what get_payload gives, without its copies of the text
            return binascii.a2b_base64(encoded)
        try:
            data = self.source.get_payload(decode=True)
        except Exception:
            raise MessageFormatError("undecodable MIME part") from None
        return data if isinstance(data, bytes) else b""

    def base64_text(self) -> str | None:
        """The part's base64 text when it is exactly what :func:`attachment_part` would write
        for its content (76-character lines, CRLF or LF), else None."""
        text = getattr(self.source, "_payload", None)
        if not isinstance(text, str) or str(self.source.get(
                "content-transfer-encoding", "")).lower() != "base64":
            return None
        return text if _CANONICAL_BASE64.fullmatch(text) else None


# Base64 as the encoder writes it: full lines of 76, a last line of whole quanta whose
# padding leaves no bit set (else decoding and encoding again would not give it back).
# The full lines are taken possessively, each only when more text follows it (the last line
# may be full too): a plain ``*`` would keep a point to come back to for every line, some
# twice the text in the regex engine's memory for a large attachment.
_CANONICAL_BASE64 = re.compile(
    r"(?:[A-Za-z0-9+/]{76}\r?\n(?=[A-Za-z0-9+/]))*+(?:[A-Za-z0-9+/]{4}){0,18}"
    r"(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)\r?\n")


def check_shape(raw: bytes) -> None:
    """Refuse messages whose header block is too large or malformed before parsing them."""
    m = _HEADER_END.search(raw)
    head = raw[: m.start()] if m else raw
    lines = head.split(b"\n")
    fields = sum(1 for ln in lines if ln and ln[:1] not in (b" ", b"\t"))
    if fields > MAX_HEADERS:
        raise MessageFormatError(f"message has {fields} header fields (limit {MAX_HEADERS})")
    longest = max((len(ln) for ln in lines), default=0)
    if longest > MAX_HEADER_LINE:
        raise MessageFormatError(f"header line of {longest} bytes (limit {MAX_HEADER_LINE})")


def parse(raw: bytes | Handover) -> EmailMessage:
    """Parse a message with the modern policy, after the shape checks; a handover is let go
    as it is read (the parsed message takes its place)."""
    check_shape(raw.head() if isinstance(raw, Handover) else raw)
    if isinstance(raw, Handover) and (written := raw.take_read()) is not None:
        _check_tree(written)  # what the parser gives for the bytes (see to_handover)
        return written
    try:
        # fed in slices: ``message_from_bytes`` decodes the whole message into a str and
        # reads it back through a StringIO (four bytes a character), some six times the
        # message at its peak; the feed parser gives the same tree from slices
        parser = email.parser.BytesFeedParser(policy=POLICY)
        if isinstance(raw, Handover):
            for piece in raw.slices(release=True):
                parser.feed(piece)
        else:
            for start in range(0, len(raw), _FEED):
                parser.feed(raw[start:start + _FEED])
        msg = parser.close()
    except Exception as exc:  # the email package raises many types on hostile input
        raise MessageFormatError(f"unreadable message ({type(exc).__name__})") from None
    assert isinstance(msg, EmailMessage)
    _check_tree(msg)
    return msg


def parse_head(raw: bytes) -> EmailMessage:
    """Only the header block of a message (the body is not parsed), within the same bounds."""
    check_shape(raw)
    head = raw[: m.start()] if (m := _HEADER_END.search(raw)) else raw
    try:
        msg = email.parser.BytesHeaderParser(policy=POLICY).parsebytes(
            head + b"\r\n\r\n")
    except Exception as exc:
        raise MessageFormatError(f"unreadable header block ({type(exc).__name__})") from None
    assert isinstance(msg, EmailMessage)
    _check_fields(msg)
    return msg


def _check_fields(part: Message) -> None:
    fields = list(part.raw_items())
    if len(fields) > MAX_HEADERS:
        raise MessageFormatError(f"a MIME part has {len(fields)} header fields "
                                 f"(limit {MAX_HEADERS})")
    longest = max((len(name) + len(str(value)) for name, value in fields), default=0)
    if longest > MAX_HEADER_FIELD:
        raise MessageFormatError(f"header field of {longest} characters "
                                 f"(limit {MAX_HEADER_FIELD})")


def _check_tree(msg: Message) -> None:
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise MessageFormatError(f"MIME nesting deeper than {MAX_DEPTH}")
        if count > MAX_PARTS:
            raise MessageFormatError(f"more than {MAX_PARTS} MIME parts")
        _check_fields(part)  # every part's header block, not only the top one
        if part.is_multipart():
            payload = part.get_payload()
            if not isinstance(payload, list):
                raise MessageFormatError("multipart without parts")
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))
    for defect in msg.defects:
        if type(defect).__name__ in ("MultipartInvariantViolationDefect",
                                     "StartBoundaryNotFoundDefect"):
            raise MessageFormatError(f"malformed MIME: {type(defect).__name__}")


# Every character str.splitlines() breaks on: once RFC 2047 words are decoded, any of them in
# a value would end the header where it is written again (header injection).
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_FOLD = re.compile(r"\r\n|\r|\n")


def header(msg: Message, name: str) -> str:
    """A header's value as text, or "" (undecodable bytes never raise)."""
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    return "" if raw is None else _decoded(name, raw)


def header_items(msg: Message) -> list[tuple[str, str]]:
    """Every header field of ``msg``, decoded and checked (for copying into a new message)."""
    return [(name, _decoded(name, raw)) for name, raw in msg.raw_items()]


def _decoded(name: str, raw: object) -> str:
    """A header value as text: RFC 2047 words decoded, 8-bit bytes (which RFC 5322 forbids but
    legacy software writes) read as UTF-8, else Windows-1252 — never replaced by U+FFFD —
    and refused when it would break its header in two."""
    # (a surrogate is not ASCII: the scan a character at a time only for the others)
    if isinstance(raw, str) and not raw.isascii() and any(
            "\udc80" <= c <= "\udcff" for c in raw):
        data = raw.encode("ascii", "surrogateescape")
        for codec in ("utf-8", "cp1252", "latin-1"):
            try:
                raw = data.decode(codec)
                break
            except UnicodeDecodeError:
                continue
    try:  # the header registry raises ValueError and others on hostile fields
        value = raw if hasattr(raw, "name") else POLICY.header_factory(
            name, _unfolded(str(raw)))
        text = str(value)
    except Exception:
        raise MessageFormatError(f"unreadable {name} header") from None
    return one_line(name, text)


def _unfolded(text: str) -> str:
    """``"".join(_FOLD.split(text))``: every CR and LF taken out."""
    if "\r" not in text and "\n" not in text:
        return text
    return text.replace("\r", "").replace("\n", "")


def add_header(msg: Message, name: str, value: str) -> None:
    """Add a header copied from an input message; a second To, Subject, Message-ID… (which
    RFC 5322 allows once) makes the email package raise ValueError: a malformed message."""
    try:
        msg[name] = value
    except ValueError:
        raise MessageFormatError(f"more than one {name} header") from None


def one_line(name: str, text: str) -> str:
    """``text`` (a decoded header value), refused when it would break its header in two."""
    if not _LINE_BREAKS.isdisjoint(text):
        raise MessageFormatError(f"{name} header holds a line break once decoded")
    return text


def leaves(msg: Message) -> list[Part]:
    """Every non-multipart part (its content decoded from base64/quoted-printable when read)."""
    out: list[Part] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        disposition = (part.get_content_disposition() or "").lower()
        out.append(Part(
            content_type=content_type(part),
            filename=filename,
            charset=part.get_content_charset(),
            is_attachment=disposition == "attachment" or (filename is not None
                                                          and disposition != "inline"),
            source=part,
        ))
    return out


def text_part(data: str, *, charset: str = "utf-8") -> EmailMessage:
    """A text/plain part with a 7-bit transfer encoding (S/MIME canonical form)."""
    part = new()
    body = data.replace("\r\n", "\n").replace("\n", "\r\n").encode(charset)
    part.set_content(body, maintype="text", subtype="plain", cte="quoted-printable")
    part.set_param("charset", MIME_CHARSET.get(charset, charset))
    return part


def attachment_part(data: bytes, *, content_type: str, filename: str) -> EmailMessage:
    part = new()
    maintype, _, subtype = content_type.partition("/")
    set_base64(part, data, maintype=maintype or "application",
               subtype=subtype or "octet-stream", disposition="attachment", filename=filename)
    return part


def copy_attachment(part: Part, *, content_type: str, filename: str) -> EmailMessage:
    """``attachment_part(part.data, …)``, taking the part's base64 text as it is when it is
    the same as the encoder's: a large attachment is neither decoded nor encoded again."""
    encoded = part.base64_text()
    if encoded is None:
        return attachment_part(part.data, content_type=content_type, filename=filename)
    new_part = attachment_part(b"", content_type=content_type, filename=filename)
    new_part.set_payload(encoded)  # its line ends are written as CRLF like the encoder's
    return new_part


def set_base64(part: EmailMessage, data: bytes, **content: Any) -> None:
    """``part.set_content(data, cte="base64", **content)``, the text encoded a block of lines
    at a time (the content manager holds a string per line: three times the text)."""
    part.set_content(b"", cte="base64", **content)
    part.set_payload(_base64(data))


def _base64(data: bytes) -> str:
    """What the content manager's encoder writes: lines of 57 bytes as 76 characters, each
    ending in LF (``base64.encodebytes``, a block of lines at a time).

    Each block is encoded in one call and cut into its lines by one ``struct`` unpack, not
    one encoding call and one append per line (``encodebytes``' loop: some 800 a 46 KB PDF,
    twice the time of the encoding itself)."""
    view = memoryview(data)
    out: list[str] = []
    for at in range(0, len(data), _B64_BLOCK):
        encoded = binascii.b2a_base64(view[at:at + _B64_BLOCK], newline=False)
        full = len(encoded) // 76
        lines: tuple[bytes, ...] = (_B64_LINES.unpack(encoded) if full == _B64_ROWS
                                    else struct.unpack_from("76s" * full, encoded))
        if len(encoded) > full * 76:  # a last, shorter line
            lines += (encoded[full * 76:],)
        out.append((b"\n".join(lines) + b"\n").decode("ascii"))
    return "".join(out)


_B64_ROWS = 1024  # lines a block
_B64_BLOCK = 57 * _B64_ROWS
_B64_LINES = struct.Struct("76s" * _B64_ROWS)


__all__ = [  # what callers use, wherever it is defined
    "MAX_DEPTH", "MAX_HEADERS", "MAX_HEADER_FIELD", "MAX_HEADER_LINE", "MAX_PARTS",
    "MIME_CHARSET", "POLICY", "REREAD", "WIRE", "Part", "add_header", "attachment_part",
    "check_shape", "content_type", "copy_attachment", "header", "header_items", "leaves",
    "new", "one_line", "parse", "parse_head", "set_base64", "text_part", "to_bytes",
    "to_handover",
]
