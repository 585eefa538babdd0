"""Redaction: hostile values in every kind of key; only allow-listed, safe-shaped values pass."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.errors import BadSignature
from gateway.log import REDACTED, configure, get_logger, redact
from tests.ops.logscan import assert_clean, find_leaks, forbidden_terms_from_fixtures

HOSTILE = {
    "name": "LEFÈVRE François",
    "nir": "1481169123123 07",
    "nir_compact": "148116912312307",
    "dob": "02/11/1948",
    "dob_iso": "1948-11-02",
    "subject": "Résultats de Mme Pélissier — gonarthrose",
    "body": "Une prothèse totale du genou me paraît indiquée",
    "local_part": "jean.DUPONT",
}
ADDRESS = "jean.DUPONT@medical33.legacy.example"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure("debug", stream=out)
    yield out
    structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_json_line_per_event_with_safe_fields_kept(captured: io.StringIO) -> None:
    log = get_logger("gateway.smtp.delivery")
    log.info(
        "message.delivered",
        queue_id="01HV3J8Q6ZK9",
        message_id="<20240404.8f3a9c21@medical33.legacy.example>",
        input_digest="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        size=48213, duration_seconds=0.84, attempt=2,
        peer="mx.operator.example [192.0.2.7]:25", peer_domain="operator.example",
        direction="to_trust", outcome="delivered", state="delivered", stage="deliver",
        smtp_code=250, enhanced="2.0.0", error_kind="bad_signature",
        sender=ADDRESS, recipients=["dr.martin@operator.example", "<>"],
    )  # fmt: skip
    (record,) = lines(captured)
    assert record["event"] == "message.delivered"
    assert record["level"] == "info" and record["logger"] == "gateway.smtp.delivery"
    assert record["timestamp"].endswith("Z")
    for key in ("queue_id", "message_id", "input_digest", "size", "duration_seconds", "attempt",
                "peer", "peer_domain", "direction", "outcome", "state", "stage", "smtp_code",
                "enhanced", "error_kind"):  # fmt: skip
        assert record[key] != REDACTED, key
    assert record["sender"] == "***@medical33.legacy.example"
    assert record["recipients"] == ["***@operator.example", "<>"]


@pytest.mark.parametrize("value", [*HOSTILE.values(), ADDRESS])
@pytest.mark.parametrize(
    "key",
    ["patient", "subject", "body", "text", "detail", "error", "name", "queue_id", "message_id",
     "digest", "size", "peer", "peer_domain", "outcome", "state", "kind", "reason", "smtp_code",
     "enhanced", "timestamp", "event_detail", "sender"],
)  # fmt: skip
def test_hostile_values_never_pass(key: str, value: str) -> None:
    out = redact(None, "info", {"event": "x", key: value})
    text = json.dumps(out, ensure_ascii=False)
    assert_clean([text], [*HOSTILE.values(), "jean.DUPONT", "DUPONT"])


def test_hostile_event_names_are_redacted() -> None:
    for value in HOSTILE.values():
        assert redact(None, "info", {"event": value})["event"] == REDACTED
    assert redact(None, "info", {"event": "delivered 1948-11-02"})["event"] == REDACTED
    assert redact(None, "info", {"event": "spool.message_deferred"})["event"] == (
        "spool.message_deferred"
    )
    assert redact(None, "info", {"event": "amoxicilline"})["event"] == REDACTED  # not dotted


def test_word_keys_take_only_vocabulary_words() -> None:
    from gateway.log import allow_words

    assert redact(None, "info", {"outcome": "cardiologie"})["outcome"] == REDACTED
    assert redact(None, "info", {"kind": "bad_signature"})["kind"] == "bad_signature"
    allow_words("test_only_word")
    assert redact(None, "info", {"state": "test_only_word"})["state"] == "test_only_word"
    with pytest.raises(ValueError):
        allow_words("Pélissier")
    kept = redact(None, "info", {"charset": "cp1252", "tls_version": "TLSv1.2",
                                 "cipher": "ECDHE-RSA-AES256-GCM-SHA384", "signal": "SIGTERM",
                                 "error_type": "ConnectionResetError", "version": "0.1.0"})
    assert REDACTED not in kept.values()
    refused = redact(None, "info", {"charset": "gonarthrose", "tls_version": "Pélissier",
                                    "cipher": "DUPONT", "signal": "SIGNORET",
                                    "error_type": "Lefevre", "version": "Jean"})
    assert set(refused.values()) == {REDACTED}


@pytest.mark.parametrize(
    "value",
    ["1481169123123 07", "1 48 11 69 123 123 07", "148116912312307", "2A0775123456 45",
     "1948-11-02", "02/11/1948", "19481102"],
)  # fmt: skip
def test_nir_and_dates_are_refused_even_as_words(value: str) -> None:
    for key in ("outcome", "reason", "state"):
        assert redact(None, "info", {key: value})[key] == REDACTED


def test_big_integers_that_could_be_a_nir_are_refused() -> None:
    assert redact(None, "info", {"size": 148116912312307})["size"] == REDACTED
    assert redact(None, "info", {"size": 1_000_000})["size"] == 1_000_000


@pytest.mark.parametrize(
    ("value", "kept"),
    [("<20240404.8f3a9c21@medical33.legacy.example>", True), ("<CAH7x9kQ2@mail.example>", True),
     ("<jean.dupont.1234@medical33.legacy.example>", False), ("<Pelissier@x.example>", False),
     ("<1481169123123 07@x.example>", False)],
)  # fmt: skip
def test_message_ids_with_name_like_words_are_redacted(value: str, kept: bool) -> None:
    assert (redact(None, "info", {"message_id": value})["message_id"] != REDACTED) is kept


def test_addresses_keep_only_their_domain() -> None:
    out = redact(None, "info", {"recipient": "Élodie MARTIN <e.martin@Medical33.Legacy.Example>",
                                "sender": "not an address", "rcpt": [ADDRESS, "x"]})  # fmt: skip
    assert out["recipient"] == REDACTED  # a display name is not an address: refuse it whole
    assert out["sender"] == REDACTED
    assert out["rcpt"] == ["***@medical33.legacy.example", REDACTED]
    out = redact(None, "info", {"recipient": "<e.martin@Medical33.Legacy.Example>"})
    assert out["recipient"] == "***@medical33.legacy.example"


def test_exceptions_are_logged_without_their_message(captured: io.StringIO) -> None:
    log = get_logger("gateway.translate")
    try:
        raise BadSignature(f"signature of {HOSTILE['name']} ({HOSTILE['nir']}) does not verify")
    except BadSignature:
        log.exception("message.quarantined", queue_id="q1")
    try:
        raise ValueError(HOSTILE["subject"])
    except ValueError as exc:
        log.error("worker.crashed", exc_info=exc)
    first, second = lines(captured)
    assert first["error_type"] == "BadSignature" and first["error_kind"] == "bad_signature"
    assert first["smtp_code"] == 554
    assert any("test_logging.py" in where for where in first["error_where"])
    assert second["error_type"] == "ValueError"
    assert_clean(captured.getvalue().splitlines(), HOSTILE.values())


def test_nested_counts_keep_word_keys_and_numbers() -> None:
    out = redact(None, "info", {"repairs": {"mojibake": 2, "Pélissier": 1, "line_ends": "x"}})
    assert out["repairs"] == {"mojibake": 2}


def test_level_filtering(captured: io.StringIO) -> None:
    configure("warning", stream=captured)
    log = get_logger("t")
    log.info("test.ignored")
    log.warning("test.kept")
    assert [r["event"] for r in lines(captured)] == ["test.kept"]
    with pytest.raises(ValueError):
        configure("loud")


def test_logging_everything_from_the_fixtures_leaks_nothing(
    captured: io.StringIO, fixtures_dir: Path
) -> None:
    """Every forbidden fixture term, thrown at every kind of key, never reaches the output."""
    terms = forbidden_terms_from_fixtures(fixtures_dir)
    assert {"LEFÈVRE", "1481169123123 07", "Pélissier", "02/11/1948"} <= terms
    log = get_logger("gateway.daemon")
    keys = ["subject", "patient", "text", "peer", "state", "outcome", "queue_id", "message_id",
            "sender", "digest", "reason", "kind", "detail"]  # fmt: skip
    for term in sorted(terms):
        log.info(term, **{k: term for k in keys})
        log.info("message.received", **{k: f"<{term}@x.example>" for k in keys})
    output = captured.getvalue().splitlines()
    assert len(output) == 2 * len(terms)
    assert_clean(output, terms)


def test_the_scanner_catches_leaks_even_json_escaped() -> None:
    terms = {"LEFÈVRE", "1481169123123 07", "Lebœuf"}
    assert find_leaks([json.dumps({"x": "chez LEFÈVRE"})], terms) == [(1, "LEFÈVRE")]
    assert find_leaks(['{"x": "lefevre"}'], terms) == [(1, "LEFÈVRE")]
    assert find_leaks(['{"x": "nir 1481169123123  07"}'], terms) == [(1, "1481169123123 07")]
    assert find_leaks(['{"x": "Dr LEBOEUF"}'], terms) == [(1, "Lebœuf")]
    # a NIR-looking run inside a hex digest is not a leak
    assert find_leaks(['{"d": "ab1481169123123 07"}'], {"1481169123123"}) == []
    with pytest.raises(AssertionError, match="line 1"):
        assert_clean(["Lebœuf"], terms)


def test_lines_go_to_the_stdout_of_the_moment_even_after_the_first_one_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging configured once (at import, by a daemon, a test) writes to whatever stdout is
    when the line is written: a stream closed and replaced since does not break the log."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    configure("info")
    get_logger("passerelle.test").info("message.accepted", queue_id="A1B2C3D4E5F6A7B8C9D0")
    first.close()
    monkeypatch.setattr(sys, "stdout", second)
    get_logger("passerelle.test").info("message.delivered", queue_id="A1B2C3D4E5F6A7B8C9D0")
    assert '"event":"message.delivered"' in second.getvalue()
