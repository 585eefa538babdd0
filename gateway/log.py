"""Structured logs: one JSON object per line on stdout, passed through a redaction allow-list.

Logs leave the box (journald, a collector, a support ticket), so they must never carry patient
data.  Rather than trying to spot patient data, `redact` keeps only what is known to be safe:
an allow-list of keys, each with the shape its value must have (a queue id, a hex digest, a
number, a lower-case host name, a word from the closed vocabulary `WORDS` (extend it with
`allow_words`), an SMTP code).  Any other key, and any value of the
wrong shape, becomes ``"[redacted]"``.  E-mail addresses are cut to their domain
(``***@medical33.legacy.example``): the local part names a person.  Strings that look like a
NIR or a date are refused even where a word would be allowed.  Exceptions are logged as their
type, error kind and code locations — never their message, which may quote the input.

Event names are part of the allow-list too: ``log.info("message.delivered", ...)`` is kept,
``log.info(f"delivered to {name}")`` is redacted.

Cost (issue 30; ``bench/logs.py``): a line is a few µs of CPU.  The loggers of `get_logger`
write their line themselves — the redaction, orjson, one write — rather than through
structlog's per-call binding and processor chain (which `configure` still sets up, and which
writes the same line: tests/ops/test_logging_fast.py); the verdict on each short string is
cached (a message's queue id recurs in its four lines, the peers and words in every line), a
string that passed in clear and one refused only as a hash; queue ids and addresses have
faster checks beside the full ones (`_queue_id_full`, `_address_full`), which the tests hold
them to.
"""

from __future__ import annotations

import builtins
import logging
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO, cast

import orjson
import structlog

from gateway import vocabulary
from gateway.errors import Fate, PasserelleError, all_error_classes

REDACTED = "[redacted]"

_WORD = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
# Events are dotted names from the code ("message.delivered"): a lone word could be text.
_EVENT = re.compile(r"(?=.{3,64}\Z)[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
_LOGGER = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_CHARSET = re.compile(r"(?:cp|iso-8859-|iso8859_|windows-|utf-|utf_|latin-|latin_)\d+(?:-sig)?")
_TLS_VERSION = re.compile(r"(?:TLS|SSL)v\d(?:\.\d)?")
_CIPHER = re.compile(r"(?=[A-Z0-9_-]*\d)[A-Z0-9][A-Z0-9_-]{3,63}")
_VERSION = re.compile(r"\d+(?:\.\d+){0,3}(?:[a-z0-9.+-]{0,16})?")
_QUEUE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_HEX = re.compile(r"(?:(?:sha256|sha1|sha512|blake2b):)?[0-9a-fA-F]{8,128}")
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"  # log host names lower-cased
_HOST = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})+\.?")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_IPV6 = re.compile(r"[0-9A-Fa-f:]{2,39}(?:%[a-z0-9]+)?")
_PORT = re.compile(r"\d{1,5}")
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_SMTP = re.compile(r"[2-5]\d\d")
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_ADDRESS_DOMAIN = re.compile(r"[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")
_ADDRESS = re.compile(rf"[^@\s]+@(?P<domain>{_ADDRESS_DOMAIN.pattern})")
_MESSAGE_ID = re.compile(r"<?(?P<left>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,128})@(?P<right>[^>\s]+)>?")
# A NIR: 13 characters (digits, 2A/2B for Corsica) and a 2-digit key, with or without spaces.
_NIR = re.compile(
    r"[12378]\s?\d\d\s?\d\d\s?(?:\d\d|2A|2B)\s?\d\d\d\s?\d\d\d\s?(?:\d\d)?", re.IGNORECASE
)
_LONG_DIGITS = re.compile(r"\d{8,}")
_SEPARATED_DATE = re.compile(
    r"(?<!\d)(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}[/.-]\d{1,2}[/.-]\d{1,2})(?!\d)"
)
_COMPACT_DATE = re.compile(r"(?:19|20)\d{2}[01]\d[0-3]\d")
_DATE = re.compile(rf"{_SEPARATED_DATE.pattern}|{_COMPACT_DATE.pattern}")
_ALPHA_RUN = re.compile(r"[A-Za-z]{4,}")


def _vocabulary() -> set[str]:
    v = vocabulary
    words = set(v.DIRECTIONS + v.EVENTS + v.REASONS + v.STAGES + v.SPOOL_STATES
                + v.REPAIR_KINDS + v.TLS_REASONS + v.CRYPTO_KINDS + v.EXPIRY_KINDS)
    words |= {f.value for f in Fate} | {c.kind for c in all_error_classes()}
    words |= set(_EXTRA_WORDS.split())
    return words


_EXTRA_WORDS = """
        debug info warning error critical exception
        ok fail failed failure success pass valid invalid good bad unknown none true false
        yes no partial skipped timeout other
        start started stop stopped stopping drain draining ready not_ready reload reloaded
        accepted refused rejected sent queued stored active retry retrying hold release released
        delete deleted drop dropped deliver delivering expired stale fresh loaded missing
        to_trust to_legacy legacy trust inbound outbound incoming outgoing
        sqlite postgres postgresql openpgp command smime tls starttls plain
        hprim cda xdm pdf text mime
        server client signing anchor gateway hub operator peer crl list journal spool
        verified unverified signed unsigned encrypted decrypted
"""


#: words allowed as values of the word keys (outcome, state, kind, ...); extend with allow_words.
WORDS: set[str] = _vocabulary()


def allow_words(*words: str) -> None:
    """Add words to the closed vocabulary (call at import time of the module that logs them)."""
    for word in words:
        if not _WORD.fullmatch(word) or _dangerous(word):
            raise ValueError(f"not a log word: {word!r}")
        WORDS.add(word)
    _forget_verdicts()


def _word(value: object) -> bool:
    return isinstance(value, str) and value in WORDS


def _shape(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, str) and bool(pattern.fullmatch(value)) and not _dangerous(value)

    return check


def _charset(value: object) -> bool:
    return _word(value) or value in ("ascii", "us-ascii", "mac_roman", "macroman", "latin-1") or (
        _shape(_CHARSET)(value)
    )


_SIGNALS = frozenset(s.name for s in signal.Signals)
_BUILTIN_ERRORS = frozenset(
    name for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
)  # fmt: skip


def _error_type(value: object) -> bool:
    if not isinstance(value, str):
        return False
    return value in _BUILTIN_ERRORS or value in {c.__name__ for c in all_error_classes()} or (
        bool(re.fullmatch(r"[A-Z][A-Za-z0-9]{0,63}(?:Error|Exception|Warning|Timeout)", value))
    )


def _dangerous(text: str) -> bool:
    """A NIR or a date hiding in an otherwise well-shaped string."""
    return bool(_NIR.search(text) or _DATE.search(text))


def _number(value: object) -> bool:
    # bool is an int: fine.  Integers of 13+ digits could be a NIR: refused.
    if isinstance(value, int):
        return abs(value) < 10**12
    return isinstance(value, float)


def _id_safe_full(text: str) -> bool:
    """Ids are machine-made and often hold a compact date (20240404...): refuse a NIR, a
    separated date (02/11/1948, 1948-11-02) or an id that is nothing but a compact date."""
    return not (
        _NIR.search(text) or _SEPARATED_DATE.search(text) or _COMPACT_DATE.fullmatch(text)
    )


def _queue_id_full(value: object) -> bool:
    """A spool/trace id: a token with at least one digit (ULID, UUID, hex), never a bare word."""
    return (
        isinstance(value, str)
        and bool(_QUEUE_ID.fullmatch(value))
        and any(c.isdigit() for c in value)
        and _id_safe_full(value)
    )


# The same two checks in fewer steps (each message's queue id is new to the caches): the
# digit asked for by a look-ahead of the id's pattern, a NIR looked for only where its shape
# is (below), a separated date only in a string holding one of its separators, a compact date
# only where the length is a compact date's.  tests/ops/test_logging_fast.py checks that they
# give `_id_safe_full`'s and `_queue_id_full`'s verdicts.
_QUEUE_ID_WITH_DIGIT = re.compile(rf"(?=[A-Za-z_-]*[0-9]){_QUEUE_ID.pattern}")


def _id_safe(text: str) -> bool:
    """`_id_safe_full`, faster."""
    return not (
        _NIR.search(text)
        or (("-" in text or "/" in text or "." in text) and _SEPARATED_DATE.search(text))
        or (len(text) == 8 and _COMPACT_DATE.fullmatch(text))
    )


# In an id (ASCII letters, digits, "_" and "-": no white space) a NIR is 13 digits in a row, or
# 2A/2B in the 6th and 7th places: with its digits written "0", six of them, one digit or
# A/B, six more.  Only where that shape is does _NIR itself look.
_DIGITS_AS_0 = bytes.maketrans(b"123456789", b"000000000")
_NIR_IN_ID_SHAPE = re.compile(rb"0{6}[0AaBb]0{6}")


def _queue_id(value: object) -> bool:
    """`_queue_id_full`, faster."""
    if not isinstance(value, str) or _QUEUE_ID_WITH_DIGIT.fullmatch(value) is None:
        return False
    masked = value.encode("ascii").translate(_DIGITS_AS_0)  # ASCII: the pattern says so
    if _NIR_IN_ID_SHAPE.search(masked) and _NIR.search(value):
        return False
    if "-" in value and _SEPARATED_DATE.search(value):  # an id holds no "/" nor "."
        return False
    return not (len(value) == 8 and _COMPACT_DATE.fullmatch(value))


def printable_queue_id(value: str) -> bool:
    """Whether a log line shows the queue id ``value`` whole: one whose digits happen to
    read as a NIR or a date is redacted like one, and the operator could not follow it."""
    return _queue_id(value)


_OPERATOR = re.compile(r"(?:certificate|token|session|unix):[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


def _operator(value: object) -> bool:
    """An operator's identity: how they proved it and their account name (an operator, not
    a patient; a NIR or a date in it is still refused)."""
    return isinstance(value, str) and bool(_OPERATOR.fullmatch(value)) and _id_safe(value)


def _digest(value: object) -> bool:
    # Real digests hold hex letters; a run of digits alone could be a NIR or a date.
    return isinstance(value, str) and bool(_HEX.fullmatch(value)) and not value.isdigit()


def _host(value: object) -> bool:
    """A host name, an IP address, optionally ``:port``; ``host [ip]:port`` too."""
    if not isinstance(value, str) or len(value) > 255:
        return False
    text = value.strip()
    m = re.fullmatch(r"(?P<name>[^\s\[\]]+)\s*\[(?P<ip>[^\]]+)\](?::(?P<port>\d{1,5}))?", text)
    if m:
        return _host(m["name"]) and _host(m["ip"])
    if text.startswith("[") and "]" in text:  # [v6]:port
        ip, _, rest = text[1:].partition("]")
        return bool(_IPV6.fullmatch(ip)) and (not rest or bool(re.fullmatch(r":\d{1,5}", rest)))
    if _IPV6.fullmatch(text) and text.count(":") >= 2:
        return True
    host, sep, port = text.rpartition(":")
    if sep and _PORT.fullmatch(port):
        text = host
    return bool(_HOST.fullmatch(text) or _IPV4.fullmatch(text))


def _smtp_code(value: object) -> bool:
    if isinstance(value, int):
        return 200 <= value <= 599
    return isinstance(value, str) and bool(_SMTP.fullmatch(value))


def _enhanced(value: object) -> bool:
    return isinstance(value, str) and bool(_ENHANCED.fullmatch(value))


def _timestamp(value: object) -> bool:
    return isinstance(value, int | float) or (
        isinstance(value, str) and bool(_ISO_TIME.fullmatch(value))
    )


def _message_id(value: object) -> bool:
    """Message-IDs are kept when their left part looks machine-made (no name-like words)."""
    if not isinstance(value, str):
        return False
    m = _MESSAGE_ID.fullmatch(value.strip())
    if not m or not _host(m["right"]):
        return _queue_id(value)
    left = m["left"]
    segments = re.split(r"[^A-Za-z0-9]+", left)
    # "jean.dupont.1234@host" names someone; "20240404.8f3a9c@host", "CAH7x9kQ@host" do not.
    wordy = any(_ALPHA_RUN.fullmatch(s) for s in segments if s)
    return not wordy and _id_safe(left)


def _address_full(value: object) -> object:
    """An e-mail address → ``***@domain``; anything else → redacted."""
    if isinstance(value, str):
        m = _ADDRESS.fullmatch(value.strip().strip("<>"))
        if m and _host(m["domain"].lower()):
            return f"***@{m['domain'].lower()}"
        if value.strip() in ("", "<>"):
            return "<>"  # the null reverse-path of a bounce
    return REDACTED


_DOMAIN_CHECK = object()  # the key under which an address domain's verdict is cached


def _address(value: object) -> object:
    """`_address_full`, faster: the local part (``[^@\\s]+``: no ``@``, no white space) checked
    by string methods, the domain's verdict cached (`_KEPT`, below)."""
    if isinstance(value, str):
        local, at, domain = value.strip().strip("<>").rpartition("@")
        if at and "@" not in local and local.split() == [local]:
            pair = (_DOMAIN_CHECK, domain)
            if pair in _KEPT:
                return f"***@{domain.lower()}"
            if hash(pair) not in _REFUSED:
                ok = bool(_ADDRESS_DOMAIN.fullmatch(domain)) and _host(domain.lower())
                if len(domain) <= _CACHED_LEN:
                    _remember(pair, ok)
                if ok:
                    return f"***@{domain.lower()}"
        if value.strip() in ("", "<>"):
            return "<>"  # the null reverse-path of a bounce
    return REDACTED


# Words SMTP servers use in their replies (RFC 5321, RFC 3463, common MTAs): a peer's reply
# is logged with these kept and any other word masked (a reply may quote a name or address).
_REPLY_WORDS = frozenset({
    "ok", "queued", "as", "accepted", "message", "mail", "delivered", "delivery", "requested",
    "action", "completed", "mailbox", "user", "address", "recipient", "recipients", "sender",
    "unknown", "not", "found", "no", "such", "here", "unavailable", "unavailable.", "full",
    "quota", "exceeded", "over", "size", "too", "big", "large", "limit", "rejected", "refused",
    "denied", "relay", "relaying", "access", "policy", "spam", "service", "temporarily",
    "temporary", "permanently", "permanent", "failure", "failed", "error", "try", "again",
    "later", "local", "processing", "insufficient", "storage", "system", "closing",
    "transmission", "channel", "connection", "timed", "out", "timeout", "lost", "network",
    "cannot", "connect", "tls", "starttls", "required", "certificate", "handshake",
    "authentication", "greylisted", "greylisting", "rate", "please", "syntax", "command",
    "parameter", "unrecognized", "invalid", "bad", "sequence", "of", "commands", "the", "a",
    "an", "is", "to", "for", "in", "on", "at", "by", "with", "from", "this", "that", "was",
    "has", "have", "be", "been", "ready", "go", "ahead", "data", "end", "line", "lines",
    "internal", "server", "domain", "host", "dns", "lookup", "route", "expired", "lifetime",
    "all",
})  # fmt: skip
_REPLY_TOKEN = re.compile(r"\S+")


def _reply_token(token: str) -> str:
    bare = token.strip(".,;:()[]<>\"'")
    if not bare:
        return token
    m = _ADDRESS.fullmatch(bare)
    if m and _host(m["domain"].lower()):
        return token.replace(bare, f"***@{m['domain'].lower()}")
    if bare.lower() in _REPLY_WORDS or bare.lower() in WORDS:
        return token
    if _SMTP.fullmatch(bare) or _ENHANCED.fullmatch(bare) or _host(bare.lower()):
        return token
    if _queue_id(bare) and not _dangerous(bare) and not _LONG_DIGITS.search(bare):
        return token
    return "*"


def clean_reply(value: object) -> object:
    """A peer's SMTP reply with its SMTP words, codes, hosts and ids kept, addresses cut to
    their domain, and every other word masked as ``*``."""
    if not isinstance(value, str):
        return REDACTED
    parts = _REPLY_SPACES.split(value[:300])  # words at even places, white space between
    parts[::2] = [w if w in _KEPT_TOKENS else _reply_token_cached(w) for w in parts[::2]]
    return "".join(parts)


_REPLY_SPACES = re.compile(r"(\s+)")


_KEPT_TOKENS: set[str] = set()  # reply tokens kept as they are (see _KEPT below)
_MASKED_TOKENS: set[int] = set()  # hashes of reply tokens masked as "*"


def _reply_token_cached(token: str) -> str:
    """`_reply_token`'s answer, from the verdict caches when the token was seen before."""
    if hash(token) in _MASKED_TOKENS:
        return "*"
    out = _reply_token(token)
    if len(token) <= _CACHED_LEN:
        if out is token:
            if len(_KEPT_TOKENS) >= _CACHE_MAX:
                _KEPT_TOKENS.clear()
            _KEPT_TOKENS.add(token)
        elif out == "*":
            if len(_MASKED_TOKENS) >= _CACHE_MAX:
                _MASKED_TOKENS.clear()
            _MASKED_TOKENS.add(hash(token))
    return out


Shape = Callable[[object], bool]

#: key → the shape its value must have.
KEYS: dict[str, Shape] = {
    # ids and digests
    "queue_id": _queue_id, "id": _queue_id, "trace_id": _queue_id, "worker": _queue_id,
    "message_id": _message_id, "in_reply_to": _message_id,
    "digest": _digest, "input_digest": _digest, "output_digest": _digest,
    "content_digest": _digest, "body_digest": _digest, "sha256": _digest,
    "fingerprint": _digest, "key_fingerprint": _digest, "signer_fingerprint": _digest,
    "certificate_sha1": _digest, "certificate_sha256": _digest, "serial": _digest,
    "entry_hash": _digest, "prev_hash": _digest,
    # sizes, counts, durations
    "size": _number, "bytes": _number, "size_bytes": _number, "input_size": _number,
    "output_size": _number, "count": _number, "recipients_count": _number,
    "attempt": _number, "attempts": _number, "retries": _number, "depth": _number,
    "duration": _number, "duration_seconds": _number, "seconds": _number, "age_seconds": _number,
    "delay_seconds": _number, "next_attempt_in": _number, "documents": _number,
    "repairs": _number, "entries": _number, "domains": _number, "pid": _number,
    "confidence": _number, "port": _number, "days_left": _number, "line": _number,
    "exit_code": _number,
    # peers (operators and hosts, not patients)
    "peer": _host, "peer_domain": _host, "peer_ip": _host, "host": _host, "ip": _host,
    "domain": _host, "remote": _host, "listen": _host, "next_hop": _host, "mx": _host,
    "relay": lambda v: v == "none" or _host(v),
    # who acted on a message: the console's ``via:name``, a box user's ``unix:name``
    "operator": _operator,
    # words from closed vocabularies
    "outcome": _word, "state": _word, "stage": _word, "kind": _word, "error_kind": _word,
    "direction": _word, "reason": _word, "fate": _word, "action": _word, "status": _word,
    "role": _word, "listener": _word, "command": _word, "adapter": _word,
    "verification": _word, "result": _word,
    "backend": _word, "from_state": _word, "to_state": _word, "document_type": _word,
    "repair_kinds": _word, "encoding": _charset, "charset": _charset,
    "tls_version": _shape(_TLS_VERSION), "cipher": _shape(_CIPHER), "version": _shape(_VERSION),
    "signal": lambda v: v in _SIGNALS, "error_type": _error_type,
    # SMTP replies
    "smtp_code": _smtp_code, "code": _smtp_code, "reply_code": _smtp_code,
    "enhanced": _enhanced, "enhanced_status": _enhanced, "dsn": _enhanced,
    # added by processors
    "level": _word, "logger": _shape(_LOGGER), "timestamp": _timestamp,
}  # fmt: skip

#: keys whose value is an e-mail address (or a list of them): kept as ``***@domain``.
ADDRESS_KEYS = frozenset({
    "sender", "recipient", "recipients", "mail_from", "rcpt_to", "rcpt", "from_address",
    "to_address", "envelope_from", "envelope_to", "address",
})  # fmt: skip

#: keys whose value is a number (`_number`): checked inline by `_redact_fields`.
_NUMBER_KEYS = frozenset(key for key, shape in KEYS.items() if shape is _number)


def _clean_full(key: str, value: object) -> object:
    """``value`` of ``key`` as it may be logged (the full path: every check, no cache)."""
    if key == "reply":
        return clean_reply(value)
    if key in ADDRESS_KEYS:
        if isinstance(value, list | tuple | set | frozenset):
            return [_address(v) for v in value]
        return _address(value)
    shape = KEYS.get(key)
    if shape is None:
        return REDACTED
    if isinstance(value, list | tuple):
        return [v if shape(v) else REDACTED for v in value]
    if isinstance(value, dict):  # e.g. {"mojibake": 2}: keys must be words, values numbers
        return {k: v for k, v in value.items() if k in WORDS and _number(v)} or REDACTED
    return value if shape(value) else REDACTED


# Verdict caches.  The same short strings come back line after line (a message's queue id in
# its four lines, the peers, the words, the relays, the SMTP words of the replies): each is
# checked once.  A string that passed is kept as it is (it is what the log prints anyway); one
# refused is kept only as a hash, so that a collision could only redact more, never let a
# string through; strings longer than _CACHED_LEN, and timestamps (never twice the same), are
# checked every time.  The checks depend on nothing but the value and WORDS, which only grows:
# allow_words empties the caches all the same.  KEYS and ADDRESS_KEYS are read as they are at
# import.  Each cache is emptied whole when full (a bound, not an LRU: the hits come from a
# message's lines following one another within a few hundred lines).
_CACHED_LEN = 256
_CACHE_MAX = 4096
_UNCACHED_KEYS = frozenset({"timestamp"}) | ADDRESS_KEYS
_KEPT: set[tuple[object, str]] = set()  # (key, value) kept as it is
_REFUSED: set[int] = set()  # hash((key, value)) of those redacted


def _forget_verdicts() -> None:
    _KEPT.clear()
    _REFUSED.clear()
    _KEPT_TOKENS.clear()
    _MASKED_TOKENS.clear()
    _KEPT_EVENTS.clear()


def _remember(pair: tuple[object, str], kept: bool) -> None:
    if kept:
        if len(_KEPT) >= _CACHE_MAX:
            _KEPT.clear()
        _KEPT.add(pair)
    else:
        if len(_REFUSED) >= _CACHE_MAX:
            _REFUSED.clear()
        _REFUSED.add(hash(pair))


def _clean(key: str, value: object) -> object:
    """``value`` of ``key`` as it may be logged: `_clean_full`'s answer, from the verdict
    caches when the string was seen before."""
    if type(value) is not str or len(value) > _CACHED_LEN or key in _UNCACHED_KEYS:
        return _clean_full(key, value)
    pair = (key, value)
    if pair in _KEPT:
        return value
    if hash(pair) in _REFUSED:
        return REDACTED
    out = _clean_full(key, value)
    if out in (value, REDACTED):  # a reply is a new string, equal when all was kept
        _remember(pair, out == value)
    return out


def _clean_event_full(text: str) -> str:
    return text if _EVENT.fullmatch(text) and not _dangerous(text) else REDACTED


def _clean_event(event: object) -> str:
    """An event name as it may be logged: a dotted name from the code, else redacted."""
    text = str(event)
    if text in _KEPT_EVENTS:
        return text
    out = _clean_event_full(text)
    if out is text and len(_KEPT_EVENTS) < _CACHE_MAX:  # the code's own names: a few hundred
        _KEPT_EVENTS.add(text)
    return out


_KEPT_EVENTS: set[str] = set()


def _exception_fields(exc: BaseException) -> dict[str, object]:
    """Type, kind and where — never ``str(exc)``, which may quote the input."""
    fields: dict[str, object] = {"error_type": type(exc).__name__}
    if isinstance(exc, PasserelleError):
        fields["error_kind"] = exc.kind
        fields["smtp_code"] = exc.smtp_code
    # where each frame is, without reading the source lines (extract_tb reads them)
    frames = traceback.StackSummary.extract(
        traceback.walk_tb(exc.__traceback__), lookup_lines=False)[-6:]
    fields["error_where"] = [
        f"{_short_path(f.filename)}:{f.lineno} in {f.name}" for f in frames
    ]
    return fields


def _short_path(filename: str) -> str:
    marker = "/gateway/"
    i = filename.rfind(marker)
    return "gateway/" + filename[i + len(marker):] if i >= 0 else filename.rsplit("/", 1)[-1]


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: keep allow-listed keys with safe-shaped values, redact the rest."""
    exc_info = event_dict.pop("exc_info", None)
    event = event_dict.pop("event", None)
    out = _redact_fields(event, event_dict)
    if exc_info is not None:
        _add_exception(out, exc_info)
    return out


def _redact_fields(event: object, fields: Mapping[str, Any],
                   logger: str | None = None) -> dict[str, Any]:
    """The line's event, ``logger`` if given, and fields as they may be logged (`_clean` for
    each, inlined here for the commonest cases: a string seen before, an integer or float of
    a number key)."""
    if event is None:
        out: dict[str, Any] = {}
    elif type(event) is str and event in _KEPT_EVENTS:
        out = {"event": event}
    else:
        out = {"event": _clean_event(event)}
    kept = _KEPT
    if logger is not None:
        out["logger"] = logger if ("logger", logger) in kept else _clean("logger", logger)
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            if (key, value) in kept:
                out[key] = value
                continue
        elif kind is int:
            if key in _NUMBER_KEYS and -10**12 < value < 10**12:
                out[key] = value
                continue
        elif kind is float and key in _NUMBER_KEYS:
            out[key] = value
            continue
        out[key] = _clean(key, value)
    return out


def _add_exception(out: dict[str, Any], exc_info: object) -> None:
    exc: BaseException | None = None
    if isinstance(exc_info, BaseException):
        exc = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
    elif exc_info is True:
        exc = sys.exc_info()[1]
    if exc is not None:
        out.update(_exception_fields(exc))


def configure(level: str | int = "info", stream: TextIO | None = None) -> None:
    """Send every log event as one JSON line to ``stream`` (stdout by default)."""
    if isinstance(level, str):
        number = logging.getLevelNamesMapping().get(level.upper())
        if number is None:
            raise ValueError(f"unknown log level {level!r}")
        level = number
    out = cast(TextIO, stream if stream else _Stdout())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    global _OUTPUT
    _OUTPUT = _Output(level, out)


class _Output:
    """What `configure` set: the lines' minimum level and their stream."""

    __slots__ = ("level", "lock", "stream")

    def __init__(self, level: int, stream: TextIO) -> None:
        self.level, self.stream = level, stream
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:  # lines from several threads never interleave (structlog's WriteLogger)
            self.stream.write(line + "\n")
            self.stream.flush()


_OUTPUT: _Output | None = None


class _Stdout:
    """Whatever ``sys.stdout`` is when a line is written, not when logging was configured:
    a stream swapped since (a test's capture, a closed pipe replaced) never takes the log
    down with it."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _dumps(obj: Any, **_: Any) -> str:
    """A log line's JSON, by orjson (about 10 × json.dumps; compact, UTF-8 as it is).  What
    it cannot write — nothing the redaction lets through, but never a lost line — is written
    as its ``repr`` (what structlog's own renderer falls back to)."""
    return orjson.dumps(obj, default=repr).decode()


_SECONDS: dict[int, str] = {}  # the current second → its ISO 8601 form up to the dot


def _timestamp_now() -> str:
    """The time in ISO 8601, UTC, to the microsecond (``2026-12-07T12:01:54.554137Z``, what
    structlog's ``TimeStamper(fmt="iso", utc=True)`` writes, but for its six digits always
    there); the date and the second are formatted once a second."""
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    prefix = _SECONDS.get(second)
    if prefix is None:
        _SECONDS.clear()
        prefix = _SECONDS[second] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    return prefix + str(nanoseconds // 1000 + 1_000_000)[1:] + "Z"


def get_logger(name: str) -> Any:
    """A logger whose events carry ``logger=name`` (a dotted module-like word)."""
    return _NamedLogger(name)


class _NamedLogger:
    """``debug``, ``info``, ``warning``, ``error``, ``exception``, ``critical``: one line each,
    straight through the redaction and `_dumps` to the stream `configure` set — the line
    structlog's chain would write (tests/ops/test_logging_fast.py compares them), without its
    per-call binding and processor calls.  The configuration is read at each call (`configure`
    after import applies); while structlog is not configured (never, or
    ``structlog.reset_defaults()`` since), and for anything else (``bind``, positional
    arguments), the call goes to structlog as it is configured."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        _configured()
        return getattr(structlog.get_logger().bind(logger=self._name), method)


def _configured() -> None:
    """Redacted JSON lines again where structlog was reset to its defaults since
    (``structlog.reset_defaults()``): its default renders a traceback with its frames' local
    variables — a message's addresses and bytes."""
    if not structlog.is_configured():
        configure("info")


def _level_method(method: str, level: int) -> Callable[..., None]:
    """`_NamedLogger`'s method ``method``, for lines of ``level``."""
    name = {"exception": "error", "warn": "warning"}.get(method, method)
    exc_default = method == "exception"  # like structlog: exc_info=True unless given

    def line(self: _NamedLogger, event: str, *args: Any, **kw: Any) -> None:
        if _OUTPUT is None or not structlog.is_configured():
            _configured()
        out = _OUTPUT
        if out is None or args:
            getattr(structlog.get_logger().bind(logger=self._name), method)(event, *args, **kw)
            return
        if level < out.level:
            return
        exc_info = kw.pop("exc_info", True if exc_default else None)
        if "level" in kw or "timestamp" in kw or "logger" in kw:  # structlog's order: the
            fields: dict[str, Any] = {"logger": self._name}  # bound logger name first, then
            fields.update(kw)  # the call's, level and timestamp replaced where they stand
            fields["level"], fields["timestamp"] = name, _timestamp_now()
            record = _redact_fields(event, fields)
        else:  # level and timestamp made here: safe by construction
            record = _redact_fields(event, kw, self._name)
            record["level"], record["timestamp"] = name, _timestamp_now()
        if exc_info is not None:
            _add_exception(record, exc_info)
        out.write(_dumps(record))

    line.__name__ = method
    return line


for _method, _level in (("debug", logging.DEBUG), ("info", logging.INFO),
                        ("warning", logging.WARNING), ("warn", logging.WARNING),
                        ("error", logging.ERROR), ("exception", logging.ERROR),
                        ("critical", logging.CRITICAL)):
    setattr(_NamedLogger, _method, _level_method(_method, _level))


# Redacted JSON lines from the first line on, even in a process that never calls
# `configure` (a library use, a test harness): structlog's own default renders a traceback
# with its frames' local variables — a message's addresses and bytes — and takes ~100 ms a
# traceback to do it.
configure("info")
