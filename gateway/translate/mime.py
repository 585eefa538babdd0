"""Reading and writing RFC 5322 / MIME messages safely, for both directions.

Incoming messages come from outside: the reader bounds header count, header line length and
nesting depth before anything else looks at them, and turns every parse problem into a
:class:`~gateway.errors.MessageFormatError` (never a traceback).
"""

from __future__ import annotations

import binascii
import email
import email.generator
import email.parser
import email.policy
import io
import re
import struct
from dataclasses import dataclass, field
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from functools import cached_property
from typing import Any

from gateway.errors import MessageFormatError
from gateway.translate.handover import Handover

MAX_HEADERS = 500
MAX_HEADER_LINE = 16 * 1024
# A header field folded over many short lines: the email package parses structured fields in
# worse than linear time (a 1 MB To: takes tens of seconds), so a field is bounded as a whole.
MAX_HEADER_FIELD = 64 * 1024
MAX_DEPTH = 20
MAX_PARTS = 500

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FEED = 64 * 1024  # bytes handed to the parser at a time


class _RememberingRegistry(HeaderRegistry):
    """The email package's header registry, remembering the header classes it makes and the
    short headers it has parsed.  The package builds a new class on every lookup and parses a
    part's Content-Type again on every ``get_content_type()`` (some forty times for one
    translated message); a parsed header is an immutable ``str`` whose parse depends only on
    its name and value, so the same one can be handed out again.  Bounded: long values are
    never kept, and the memory is emptied when full."""

    LONGEST = 256
    ENTRIES = 512

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if not isinstance(value, str) or len(value) > self.LONGEST:
            return self[name](name, value)
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            if len(self._parsed) >= self.ENTRIES:
                self._parsed.clear()
            header = self._parsed[key] = self[name](name, value)
        return header


class _Policy(email.policy.EmailPolicy):
    """``email.policy.default`` whose header handling fails with :class:`MessageFormatError`
    only.  Header values come from outside; the email package answers some of them with
    ValueError (a line break once decoded), AttributeError or IndexError (its parser on odd
    groups and brackets) or UnicodeEncodeError (8-bit text where only ASCII can be written):
    those are malformed input, to be bounced with a reason — not a crash to be retried."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        try:
            return super().header_store_parse(name, value)
        except Exception:
            raise MessageFormatError(f"{name} header cannot be written") from None

    def header_fetch_parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except Exception:
            raise MessageFormatError(f"unreadable {name} header") from None

    def fold_binary(self, name: str, value: str) -> bytes:
        try:
            return super().fold_binary(name, value)
        except Exception:
            raise MessageFormatError(f"{name} header cannot be written") from None


_REGISTRY = _RememberingRegistry()
# The policies every message of the gateway is read and written with: the standard ones
# (``email.policy.default``, and ``SMTP`` for the wire), with the remembering registry and
# typed failures.
POLICY = _Policy(header_factory=_REGISTRY)
WIRE = POLICY.clone(linesep="\r\n")


def new() -> EmailMessage:
    """An empty message under :data:`POLICY`."""
    return EmailMessage(policy=POLICY)


# MIME names of the charsets legacy software reads (RFC 1345 / IANA registry).
MIME_CHARSET = {"cp1252": "windows-1252", "mac_roman": "macintosh", "cp850": "IBM850",
                "utf-8": "utf-8"}


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


def content_type(part: Message) -> str:
    """``part.get_content_type()``, remembered (see :func:`_shape`)."""
    return _shape(part)[0]


def _shape(part: Message) -> tuple[str, str | None]:
    """``(part.get_content_type(), part.get_boundary())``, remembered by the value of the
    part's Content-Type field.

    The email package parses the field again on every call: a part's type some ten times,
    its boundary some five, in one translation.  Both are functions of the header the field
    is fetched as, which under the gateway's policies is a function of the value stored
    (the same header object, or the same text parsed the same way); a part without the
    field takes its type from its parent, and is not remembered.  Bounded like the
    remembering registry."""
    if part.policy is not POLICY and part.policy is not WIRE:
        return part.get_content_type(), part.get_boundary()
    value = next((v for k, v in part._headers  # type: ignore[attr-defined]
                  if k.lower() == "content-type"), None)
    if value is None:
        return part.get_content_type(), None
    if not isinstance(value, str) or len(value) > _SHAPE_LONGEST:
        return part.get_content_type(), part.get_boundary()
    # a stored header object is fetched as itself, a stored text parsed: the same text
    # may give either, and they are kept apart
    key = (value.__class__ is str, str(value))
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _SHAPE_ENTRIES:
            _SHAPES.clear()
        shape = _SHAPES[key] = (part.get_content_type(), part.get_boundary())
    return shape


_SHAPE_LONGEST = 512
_SHAPE_ENTRIES = 1024
_SHAPES: dict[tuple[bool, str], tuple[str, str | None]] = {}


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


def quoted_printable(data: bytes) -> str:
    """``data`` in quoted-printable with its line breaks as real line breaks (RFC 2045 §6.7
    rule 4), not ``=0D=0A``: CRLF ends a line when the text holds one, else LF does; a lone
    CR or LF left over is encoded (``=0D``, ``=0A``) so that the decoded bytes are ``data``'s.
    Lines are joined with ``\n``, which the writing policy turns into CRLF."""
    lines = data.split(b"\r\n") if b"\r\n" in data else data.split(b"\n")
    return "\n".join(
        binascii.b2a_qp(line, quotetabs=False, istext=False, header=False).decode("ascii")
        for line in lines)


def set_text(part: EmailMessage, data: bytes, *, charset: str, subtype: str = "plain",
             disposition: str | None = None, filename: str | None = None) -> None:
    """``part`` becomes a text part of ``data`` in quoted-printable (`quoted_printable`)."""
    part.set_content(b"", maintype="text", subtype=subtype, cte="quoted-printable",
                     disposition=disposition, filename=filename)
    part.set_payload(quoted_printable(data))
    part.set_param("charset", MIME_CHARSET.get(charset, charset))


def text_part(data: str, *, charset: str = "utf-8") -> EmailMessage:
    """A text/plain part with a 7-bit transfer encoding (S/MIME canonical form)."""
    part = new()
    body = data.replace("\r\n", "\n").replace("\n", "\r\n").encode(charset)
    set_text(part, body, charset=charset)
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


def to_bytes(msg: EmailMessage, *, release: bool = False) -> bytes:
    """Serialise with CRLF line ends, as it goes on the wire: the bytes
    ``msg.as_bytes(policy=WIRE)`` gives, written into one buffer.

    The email package's generator writes every part into a buffer of its own and copies it
    into its parent's, and splits each body into a list of lines: for a message with large
    attachments, some three times the message.  Here parts are written in place, bodies a
    slice at a time; what this does not write the same way (``message/*``,
    ``multipart/signed``, a payload that is not text) is written by the generator itself.

    ``release``: for a message built only to be written, each part's text is let go once
    written (the message and its bytes are then not both held whole).  Missing boundaries
    are drawn first; if one is found in the message's text (where it could make a delimiter
    line), nothing is let go and the boundaries are drawn as below.
    """
    out = io.BytesIO()
    _write(msg, out, release=release and _draw_boundaries(msg))
    return out.getvalue()  # hands over the buffer itself, no copy


def to_handover(msg: EmailMessage, *, reread: bool = False) -> Handover:
    """``to_bytes(msg, release=True)`` handed over in pieces of about :data:`PIECE` bytes:
    the stage it is handed to lets each piece go as it reads it (a buffer of the whole
    message would be held until it is read to its end).

    ``reread``: the next stage parses it again.  A message of at most :data:`REREAD` bytes
    of text is then kept, made what the parser would give for its bytes (:func:`_as_read`),
    for :func:`parse` to take instead of reading them (each part's text is not let go: a
    small message is held twice for a while; a large one is written as above)."""
    keep = reread and _text_size(msg) <= REREAD
    if not _draw_boundaries(msg):  # written whole, nothing let go (see to_bytes)
        whole = io.BytesIO()
        _write(msg, whole)
        handed = Handover.of(whole.getvalue())
    else:
        out = _Pieces()
        _write(msg, out, release=not keep)
        handed = Handover(out.close())
    if keep and _as_read(msg):
        handed.keep_read(msg)
    return handed


# The text a message may hold for to_handover to keep it for the next stage's parse: the
# parse of a small message costs a few times the writing of it, of a large one its memory.
REREAD = 1024 * 1024


def _text_size(msg: Message) -> int:
    return sum(len(p) for p in (getattr(part, "_payload", None) for part in msg.walk())
               if isinstance(p, str))


def _as_read(msg: Message) -> bool:
    """Make ``msg``, just written by :func:`_write`, the tree :func:`parse` gives for the
    bytes written: each header field as the parser stores it (its folded text, see
    ``email.policy.EmailPolicy.header_source_parse``), each text with CRLF line ends, the
    newline before a delimiter belonging to the delimiter (RFC 2046).  False, and ``msg``
    left as it is, when it holds what the parser could read otherwise: a part the email
    package's generator writes (``message/*``, ``multipart/signed``, a payload that is not
    text), a multipart without parts or with a preamble or epilogue, a text holding the
    delimiter of a multipart it is in."""
    delimiters: list[str] = []

    def readable(part: Message) -> bool:
        ctype, boundary = _shape(part)
        main = ctype.partition("/")[0]
        payload = getattr(part, "_payload", None)
        if main == "multipart":
            if (ctype == "multipart/signed" or not boundary
                    or not isinstance(payload, list) or not payload
                    or not all(isinstance(p, Message) for p in payload)
                    or part.preamble is not None or part.epilogue is not None):
                return False
            delimiters.append("--" + boundary)
            found = all(readable(p) for p in payload)
            delimiters.pop()
            return found
        return main != "message" and (payload is None or (isinstance(payload, str) and not any(
            d in payload for d in delimiters)))

    if not readable(msg):
        return False
    for part in msg.walk():
        part._headers = [_field_as_read(_folded(name, value))  # type: ignore[attr-defined]
                         for name, value in part.raw_items()]
        part._charset = None  # type: ignore[attr-defined]
        if part.is_multipart():
            part.epilogue = ""  # the text after the close delimiter: none, read as ""
        else:
            part._payload = _crlf(getattr(part, "_payload", None) or "")  # type: ignore[attr-defined]
    return True


def _field_as_read(folded: bytes) -> tuple[str, str]:
    """A header field written as ``folded``, as the parser stores it."""
    text = folded.decode("ascii", "surrogateescape")
    name, value = text.split(":", 1)
    return name, value.lstrip(" \t").rstrip("\r\n")


PIECE = 1024 * 1024


class _Pieces:
    """A writer for :func:`_write` (which only writes and tells when it lets parts go) into
    buffers of about :data:`PIECE` bytes."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._written = 0
        self._buffer = io.BytesIO()

    def write(self, data: bytes | memoryview) -> int:
        n = self._buffer.write(data)
        if self._buffer.tell() >= PIECE:
            self._seal()
        return n

    def _seal(self) -> None:
        piece = self._buffer.getvalue()
        self._pieces.append(piece)
        self._written += len(piece)
        self._buffer = io.BytesIO()

    def tell(self) -> int:
        return self._written + self._buffer.tell()

    def close(self) -> list[bytes]:
        if self._buffer.tell() or not self._pieces:
            self._seal()
        return self._pieces


_NL = "\r\n"
_SLICE = 64 * 1024


def _write(part: Message, out: io.BytesIO | _Pieces, *, release: bool = False) -> None:
    ctype = _shape(part)[0]
    main = ctype.partition("/")[0]
    payload = getattr(part, "_payload", None)  # what the generator writes, surrogates kept
    if main == "multipart" and ctype != "multipart/signed" and isinstance(
            payload, list) and all(isinstance(p, Message) for p in payload):
        _write_multipart(part, payload, out, release=release)
    elif main not in ("multipart", "message") and (payload is None or isinstance(payload, str)):
        _write_headers(part, out)
        if payload:
            _write_text(payload, out)
            if release:
                part.set_payload("")
    else:
        email.generator.BytesGenerator(out, mangle_from_=False, policy=WIRE).flatten(
            part, unixfrom=False, linesep=_NL)


def _draw_boundaries(msg: Message) -> bool:
    """Give every multipart without a boundary the one the generator would draw first; False
    (and no more drawn) when one is found anywhere in the text it would enclose."""
    shapes = [(part, *_shape(part)) for part in msg.walk()]
    used = {boundary for _, _, boundary in shapes}
    for part, ctype, drawn in shapes:
        if not ctype.startswith("multipart/") or drawn:
            continue
        boundary: str = email.generator.Generator._make_boundary()  # type: ignore[attr-defined]
        if boundary in used or _mentions(part, boundary):
            return False
        part.set_boundary(boundary)
        used.add(boundary)
    return True


def _mentions(msg: Message, token: str) -> bool:
    for part in msg.walk():
        payload = getattr(part, "_payload", None)
        if any(token in str(value) for _, value in part.raw_items()) or any(
                isinstance(text, str) and token in text
                for text in (payload, part.preamble, part.epilogue)):
            return True
    return False


def _write_headers(part: Message, out: io.BytesIO | _Pieces) -> None:
    for name, value in part.raw_items():
        out.write(_folded(name, value))
    out.write(b"\r\n")


def _folded(name: str, value: Any) -> bytes:
    """``WIRE.fold_binary(name, value)``, checked; a header object's remembered on it.

    Folding a header object refolds its parse tree, some 30 µs a field, and the remembering
    registry hands the same object out again for the same field (Content-Type,
    MIME-Version…, and a field copied from the opened message into the composed one): a
    header object is an immutable ``str`` whose fold depends only on it (its name, its
    parse tree) and the policy, always :data:`WIRE` here."""
    memo = getattr(value, "__dict__", None) if hasattr(value, "name") else None
    if memo is not None and (folded := memo.get("_wire_folded")) is not None:
        assert isinstance(folded, bytes)
        return folded
    folded = WIRE.fold_binary(name, value)
    if not folded.endswith(b"\r\n") or _NEWLINE_IN_FIELD.search(folded[:-2]):
        # the check newer generators make (policy.verify_generated_headers)
        raise MessageFormatError(f"{name} header cannot be written")
    if memo is not None:
        memo["_wire_folded"] = folded
    return folded


_NEWLINE_IN_FIELD = re.compile(rb"\r\n[^ \t]|\r[^ \n\t]|\n[^ \t]")


def _write_text(text: str, out: io.BytesIO | _Pieces) -> None:
    """``text`` with every line end as CRLF, as ASCII (surrogates back to their bytes)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + _SLICE)  # a slice never parts a CR from its LF
        end = len(text) if end < 0 else end + 1
        piece = text[start:end]
        out.write(_crlf(piece).encode("ascii", "surrogateescape"))
        start = end


def _crlf(text: str) -> str:
    """``text`` with every line end (CRLF, CR, LF) as CRLF: what ``_LINE_END.sub(_NL, text)``
    gives, in passes of ``str.replace`` (a third of the time: a quoted-printable text has
    CRLF line ends, the regex replaced each by itself)."""
    if "\r" not in text:
        return text.replace("\n", _NL)
    # each CRLF and each lone CR or LF is one line end, found left to right as the regex does
    return text.replace(_NL, "\n").replace("\r", "\n").replace("\n", _NL)


_LINE_END = re.compile(r"\r\n|\r|\n")


def _write_multipart(part: Message, children: list[Message], out: io.BytesIO | _Pieces, *,
                     release: bool = False) -> None:
    """A multipart as the generator writes it; a part without a boundary gets the one the
    generator would draw, checked against every line of its children once written."""
    begin = out.tell()
    boundary = _shape(part)[1]
    # the generator's own draw (a classmethod typeshed does not list)
    chosen = None if boundary else email.generator.Generator._make_boundary()  # type: ignore[attr-defined]
    assert not (release and chosen), "boundaries are drawn before parts are let go"
    counter = 0
    while True:
        if chosen is not None:
            boundary = chosen if counter == 0 else f"{chosen}.{counter - 1}"
            part.set_boundary(boundary)
        assert boundary
        _write_headers(part, out)
        if part.preamble is not None:
            _write_text(part.preamble, out)
            out.write(b"\r\n")
        dashed = b"--" + boundary.encode("ascii", "surrogateescape")
        delimiter = dashed + b"\r\n"
        spans: list[tuple[int, int]] = []
        for n, child in enumerate(children):
            out.write(delimiter if n == 0 else b"\r\n" + delimiter)
            start = out.tell()
            _write(child, out, release=release)
            spans.append((start, out.tell()))
        if not children:
            out.write(delimiter)
        out.write(b"\r\n" + dashed + b"--\r\n")
        if part.epilogue is not None:
            _write_text(part.epilogue, out)
        if chosen is None:
            return
        assert isinstance(out, io.BytesIO)  # pieces are written only once all are drawn
        if not _collides(out, spans, boundary):
            return
        out.seek(begin)
        out.truncate()
        counter += 1


def _collides(out: io.BytesIO, spans: list[tuple[int, int]], boundary: str) -> bool:
    """Whether a line of the children is a delimiter: the generator's test, ``^--B(--)?$``
    (multiline) over their texts joined by CRLF, where only the last text's end is an end."""
    literal = re.compile(re.escape(b"--" + boundary.encode("ascii", "surrogateescape")))
    last = spans[-1][1] if spans else -1
    with out.getbuffer() as view:

        def ends_line(at: int, end: int) -> bool:
            return at == last if at == end else view[at] == 0x0A

        for start, end in spans:
            for m in literal.finditer(view, start, end):
                if m.start() != start and view[m.start() - 1] != 0x0A:
                    continue
                after = m.end()
                if (after + 2 <= end and view[after] == view[after + 1] == 0x2D
                        and ends_line(after + 2, end)) or ends_line(after, end):
                    return True
    return False
