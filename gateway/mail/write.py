"""Writing a message out as it goes on the wire (CRLF), in place and a slice at a time.

:func:`to_bytes` gives the bytes ``msg.as_bytes(policy=WIRE)`` would, without the email
package's copies of every part; :func:`to_handover` hands them over in pieces, each let go
once read (see :mod:`gateway.mail.handover`).  Re-exported by :mod:`gateway.mail.mime`, the
module its callers use.
"""

from __future__ import annotations

import email
import email.generator
import email.parser
import email.policy
import io
import re
from email.message import EmailMessage, Message
from typing import Any

from gateway.errors import MessageFormatError
from gateway.mail.handover import Handover
from gateway.mail.policy import WIRE, shape


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
        ctype, boundary = shape(part)
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
    ctype = shape(part)[0]
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
    shapes = [(part, *shape(part)) for part in msg.walk()]
    used = {boundary for _, _, boundary in shapes}
    for part, ctype, drawn in shapes:
        if not ctype.startswith("multipart/") or drawn:
            continue
        boundary: str = email.generator.Generator._make_boundary()  # type: ignore[attr-defined]
        if boundary in used or _mentions(part, boundary):
            return False
        set_boundary(part, boundary)
        used.add(boundary)
    return True


def set_boundary(part: Message, boundary: str) -> None:
    """``part.set_boundary(boundary)``; for a boundary the generator draws (``=`` × 15, 19
    digits, ``==``) on a part whose Content-Type is a bare ``multipart/*`` header object
    (what ``make_mixed`` and the like store), without parsing the new field.

    The parse of ``multipart/mixed; boundary="…"`` (~0.2 ms) and its fold (~0.1 ms) are
    those of a template with another drawn boundary, its one ``ptext`` terminal (the
    boundary, quoted) and its folded text changed: the boundaries differ only in digits,
    which the header parser and the folder read alike (tests/translate/test_parse_once.py
    compares the two for drawn boundaries)."""
    fields = part._headers  # type: ignore[attr-defined]
    at = [n for n, (name, _) in enumerate(fields) if name.lower() == "content-type"]
    value = fields[at[0]][1] if len(at) == 1 else None
    template = _boundary_template(fields[at[0]][0], value) if (
        value is not None and _DRAWN.fullmatch(boundary)) else None
    if template is None:
        part.set_boundary(boundary)
        return
    header, folded = template
    drawn = str.__new__(type(header), str(header).replace(_TEMPLATE, boundary))
    drawn.init(header.name, parse_tree=_with_terminal(header._parse_tree, boundary),
               defects=[], params={"boundary": boundary})
    drawn.__dict__["_wire_folded"] = folded.replace(_TEMPLATE.encode("ascii"),
                                                    boundary.encode("ascii"))
    fields[at[0]] = (fields[at[0]][0], drawn)


_DRAWN = re.compile(r"={15}[0-9]{19}==")
_TEMPLATE = "=" * 15 + "0" * 19 + "=="
_BARE_MULTIPART = re.compile(r"multipart/[a-z]+")
_TEMPLATES: dict[tuple[str, str], tuple[Any, bytes]] = {}


def _boundary_template(name: str, value: Any) -> tuple[Any, bytes] | None:
    """The Content-Type header ``value`` (a header object without parameters) with the
    template boundary, and its folded text; None when ``value`` is not such a header."""
    if not (hasattr(value, "params") and not value.params and not value.defects
            and _BARE_MULTIPART.fullmatch(str(value)) and value.name == name):
        return None
    key = (name, str(value))
    found = _TEMPLATES.get(key)
    if found is None:
        header = WIRE.header_factory(name, f'{value}; boundary="{_TEMPLATE}"')
        if header.defects or header.params != {"boundary": _TEMPLATE}:
            return None
        found = _TEMPLATES[key] = (header, WIRE.fold_binary(name, header))
    return found


def _with_terminal(tree: Any, boundary: str) -> Any:
    """A copy of the template's parse tree (every node new: nothing shared between two
    headers), its template boundary terminal holding ``boundary``."""
    node: Any
    if isinstance(tree, list):
        node = type(tree)(_with_terminal(child, boundary) for child in tree)
    else:
        node = type(tree)(boundary if str(tree) == _TEMPLATE else str(tree), tree.token_type)
    node.__dict__.update(tree.__dict__)  # what the parser set on it (a type's maintype…)
    node.defects = list(tree.defects)
    return node


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
    boundary = shape(part)[1]
    # the generator's own draw (a classmethod typeshed does not list)
    chosen = None if boundary else email.generator.Generator._make_boundary()  # type: ignore[attr-defined]
    assert not (release and chosen), "boundaries are drawn before parts are let go"
    counter = 0
    while True:
        if chosen is not None:
            boundary = chosen if counter == 0 else f"{chosen}.{counter - 1}"
            set_boundary(part, boundary)
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
