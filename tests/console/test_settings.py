"""[console] settings, the language choice and the operators' tokens file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config
from gateway.errors import ConfigError
from gateway.ops.console.auth import Keys, Operator, load_tokens
from gateway.ops.console.i18n import pick


def test_console_is_off_by_default_and_refuses_a_half_setup(tmp_path: Path) -> None:
    assert config.from_dict({}, base=tmp_path, source="t").console.enabled is False
    with pytest.raises(config.ConfigProblems) as err:
        config.from_dict({"console": {"enabled": True, "tokens_file": "t"}}, base=tmp_path,
                         source="t")
    assert "TLS only" in str(err.value)
    with pytest.raises(config.ConfigProblems) as err:
        config.from_dict({"console": {"enabled": True, "tls_cert": "c", "tls_key": "k"}},
                         base=tmp_path, source="t")
    assert "authenticate" in str(err.value)
    s = config.from_dict({"console": {"enabled": True, "tls_cert": "c", "tls_key": "k",
                                      "client_ca": "ca", "listen": "127.0.0.1:9400"}},
                         base=tmp_path, source="t").console
    assert s.listen == ("127.0.0.1", 9400) and s.client_ca == (tmp_path / "ca").resolve()


@pytest.mark.parametrize(("query", "accept", "lang"), [
    (None, "fr-FR,fr;q=0.9,en;q=0.8", "fr"), (None, "en-GB,fr;q=0.5", "en"),
    ("en", "fr-FR", "en"), ("fr", None, "fr"), (None, "de-DE", "en"), ("xx", "fr", "fr")])
def test_language(query: str | None, accept: str | None, lang: str) -> None:
    assert pick(query, accept) == lang


def test_tokens_file_sessions_and_csrf(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("# ops\nalice 0123456789abcdef0123\nbob   fedcba9876543210fedc  # night\n")
    now = [1000.0]
    keys = Keys(load_tokens(f), session_seconds=60, clock=lambda: now[0])
    assert keys.by_token("0123456789abcdef0123") == "alice"
    assert keys.by_token("fedcba9876543210fedc") == "bob"
    assert keys.by_token("0123456789abcdef0124") is None
    cookie = keys.new_session("alice")
    op = keys.session(cookie)
    assert op is not None and op.identity == "session:alice"
    assert keys.session(cookie.replace("alice", "bob", 1)) is None  # forged name
    assert keys.csrf_ok(op, keys.csrf(op))
    other = Operator("alice", "session", "another-session")
    assert not keys.csrf_ok(other, keys.csrf(op))  # bound to the session
    assert not keys.csrf_ok(op, "")
    now[0] += 61
    assert keys.session(cookie) is None  # expired
    f.write_text("alice short\n")
    with pytest.raises(ConfigError):
        load_tokens(f)
