"""Who the operator is, and that a form came from the console: tokens, sessions, CSRF.

An operator is known by a client certificate issued by the configured CA (the TLS layer has
checked it; the name is its subject's common name) or by a bearer token listed in the tokens
file (``name token`` per line).  A browser without a certificate signs in once with its token
on ``/login``: it gets a session cookie (``HttpOnly; Secure; SameSite=Strict``) signed with a
key that lives only in this process, so a restart signs everyone out.

Every POST carries a CSRF token bound to the operator and the session: an HMAC under the same
key, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ConfigError

COOKIE = "passerelle_console"


@dataclass(frozen=True)
class Operator:
    name: str
    via: str  # "certificate", "token" or "session"
    session: str = ""  # the session's nonce (empty for a certificate or a bearer header)

    @property
    def identity(self) -> str:
        return f"{self.via}:{self.name}"


def load_tokens(path: Path | None) -> dict[str, str]:
    """``name token`` per line (``#`` comments); SHA-256 of the token → name."""
    if path is None:
        return {}
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"console tokens file {path}: {exc.strerror}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) < 16:
            raise ConfigError(f"console tokens file {path}, line {number}: expected "
                              "'name token' with a token of 16 characters or more")
        out[hashlib.sha256(parts[1].encode()).hexdigest()] = parts[0]
    return out


class Keys:
    """The process's secret for sessions and CSRF tokens."""

    def __init__(self, tokens: dict[str, str], *, session_seconds: float,
                 clock: object = time.time) -> None:
        self._key = os.urandom(32)
        self.tokens = tokens
        self.session_seconds = session_seconds
        self._clock = clock

    def _now(self) -> float:
        assert callable(self._clock)
        return float(self._clock())

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    def by_token(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for known, name in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return name
        return None

    def new_session(self, name: str) -> str:
        nonce = secrets.token_hex(12)
        expires = str(int(self._now() + self.session_seconds))
        return f"{name}|{expires}|{nonce}|{self._mac('session', name, expires, nonce)}"

    def session(self, cookie: str) -> Operator | None:
        parts = cookie.split("|")
        if len(parts) != 4:
            return None
        name, expires, nonce, mac = parts
        if not hmac.compare_digest(mac, self._mac("session", name, expires, nonce)):
            return None
        if not expires.isdigit() or int(expires) < self._now():
            return None
        return Operator(name, "session", nonce)

    def csrf(self, operator: Operator | None, anonymous: str = "") -> str:
        who = operator.identity + "|" + operator.session if operator else "login|" + anonymous
        return self._mac("csrf", who)

    def csrf_ok(self, operator: Operator | None, token: str, anonymous: str = "") -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf(operator, anonymous))
