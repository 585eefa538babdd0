"""The log's fast paths give the full path's verdicts: the verdict caches, the faster id
checks, the reply's token cache, and the line written without structlog's chain — on random
strings that look like what must never pass (names with accents, addresses, NIRs, dates)."""

from __future__ import annotations

import io
import json
import string
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import log as glog
from gateway.log import REDACTED

# Characters of what must not pass and of what must: digits (ASCII and not), hex, accented
# letters of French names, the separators of dates, addresses and ids.
ALPHABET = (string.ascii_letters + string.digits + "éÉèÈêëçÇàÂôœŒïÎüÙ" + " ./-_:@<>[]+'"
            + "٣²\t\u00a0\u2009\x1c\n")
NIR = st.from_regex(glog._NIR, fullmatch=True)
DATE = st.one_of(st.from_regex(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}", fullmatch=True),
                 st.from_regex(r"\d{4}[/.-]\d{1,2}[/.-]\d{1,2}", fullmatch=True),
                 st.from_regex(glog._COMPACT_DATE, fullmatch=True))
HEX = st.text("0123456789ABCDEFabcdef", max_size=24)
ID = st.from_regex(glog._QUEUE_ID, fullmatch=True)
NAME = st.sampled_from(["LEFÈVRE", "François", "Pélissier", "jean.DUPONT", "Élodie MARTIN",
                        "Lebœuf", "dr.martin", "Zoé", "o'neil", "ÇA"])
DOMAIN = st.sampled_from(["medical33.legacy.example", "Hopital-A.MSSante.example",
                          "127.0.0.1", "x", "bad_domain.example", "mx.example."])


@st.composite
def hidden(draw: st.DrawFn) -> str:
    """A NIR, a date or a name inside an id-like string."""
    inner = draw(st.one_of(NIR, DATE, NAME, HEX))
    sep = draw(st.sampled_from(["", "-", "_", ".", " "]))
    return f"{draw(HEX)}{sep}{inner}{sep}{draw(HEX)}"


# ids (the spool's hex, UUIDs) with a NIR written without spaces (2A/2B included) or a date
# written with dashes inside, right against hex digits or letters
COMPACT_NIR = st.one_of(st.from_regex(r"[12378][0-9]{12}(?:[0-9][0-9])?", fullmatch=True),
                        st.from_regex(r"[12378][0-9]{4}2[AaBb][0-9]{6}", fullmatch=True))
DASHED_DATE = st.one_of(st.from_regex(r"[0-9]{1,2}-[0-9]{1,2}-[0-9]{2,4}", fullmatch=True),
                        st.from_regex(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}", fullmatch=True))
ID_WITH_NIR_OR_DATE = st.builds(lambda a, inner, b: a + inner + b, HEX,
                                st.one_of(COMPACT_NIR, DASHED_DATE,
                                          st.builds("-{}-".format, DASHED_DATE)), HEX)


ADDRESS = st.builds(lambda name, domain, around: around.replace("X", f"{name}@{domain}"),
                    st.one_of(NAME, st.text(ALPHABET, max_size=12)),
                    st.one_of(DOMAIN, st.text(ALPHABET, max_size=20)),
                    st.sampled_from(["X", "<X>", " X ", "Jean <X>", "X@x.example", "<<X>>"]))
STRINGS = st.one_of(st.text(ALPHABET, max_size=40), NIR, DATE, HEX, ID, hidden(), NAME,
                    ADDRESS, st.sampled_from(sorted(glog.WORDS)))
VALUES = st.one_of(STRINGS, st.integers(), st.floats(allow_nan=False), st.booleans(),
                   st.none(), st.lists(STRINGS, max_size=3),
                   st.dictionaries(st.sampled_from(["mojibake", "Pélissier", "x"]),
                                   st.integers(), max_size=2))
KEYS = sorted(glog.KEYS) + sorted(glog.ADDRESS_KEYS) + ["reply", "patient", "subject"]
FAST = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.one_of(STRINGS, hidden()))
def test_fast_id_checks_agree_with_the_full_ones(value: str) -> None:
    assert glog._queue_id(value) == glog._queue_id_full(value)
    assert glog._id_safe(value) == glog._id_safe_full(value)


@settings(max_examples=500, deadline=None)
@given(ID_WITH_NIR_OR_DATE)
def test_fast_id_checks_refuse_ids_holding_a_nir_or_a_date(value: str) -> None:
    assert glog._queue_id(value) == glog._queue_id_full(value)
    assert glog._id_safe(value) == glog._id_safe_full(value)


@FAST
@given(st.one_of(ADDRESS, STRINGS, st.none(), st.integers()))
def test_fast_address_agrees_with_the_full_one(value: object) -> None:
    for _ in range(2):  # the second time from the domain's cached verdict
        assert glog._address(value) == glog._address_full(value)


@FAST
@given(st.sampled_from(KEYS), VALUES)
def test_cached_verdicts_agree_with_the_full_path(key: str, value: object) -> None:
    full = glog._clean_full(key, value)
    for _ in range(2):  # the second time from the caches
        assert glog._redact_fields(None, {key: value})[key] == full
        assert glog._clean(key, value) == full


@FAST
@given(st.lists(st.one_of(STRINGS, st.sampled_from(["250", "2.0.0", "OK", "queued", "as",
                                                    "mx.example", "4F3C21A2B9"])), max_size=8))
def test_reply_cache_agrees_with_the_token_by_token_path(tokens: list[str]) -> None:
    reply = " ".join(tokens)
    full = glog._REPLY_TOKEN.sub(lambda m: glog._reply_token(m.group(0)), reply[:300])
    assert glog.clean_reply(reply) == full
    assert glog.clean_reply(reply) == full


@FAST
@given(st.one_of(st.text(ALPHABET, max_size=30), st.from_regex(glog._EVENT, fullmatch=True),
                 hidden()))
def test_event_cache_agrees_with_the_full_check(event: str) -> None:
    assert glog._clean_event(event) == glog._clean_event_full(event)
    assert glog._clean_event(event) == glog._clean_event_full(event)


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    glog.configure("debug", stream=stream)
    yield stream
    structlog.reset_defaults()


def _two_last(stream: io.StringIO) -> tuple[dict[str, Any], dict[str, Any]]:
    *_, fast, chain = (json.loads(line) for line in stream.getvalue().splitlines())
    return fast, chain


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["debug", "info", "warning", "warn", "error", "critical",
                               "exception"]),
       event=st.one_of(st.sampled_from(["message.accepted", "delivery.attempt"]), STRINGS),
       fields=st.dictionaries(st.sampled_from([*KEYS, "level", "timestamp", "logger"]),
                              VALUES, max_size=6))
def test_a_line_is_the_one_structlog_chain_writes(
    out: io.StringIO, method: str, event: str, fields: dict[str, Any]
) -> None:
    """The same call through the fast path and through structlog's configured chain: the same
    keys in the same order with the same values, but for the moment it was written."""
    logger = glog.get_logger("passerelle.daemon")
    getattr(logger, method)(event, **fields)
    getattr(structlog.get_logger().bind(logger="passerelle.daemon"), method)(event, **fields)
    fast, chain = _two_last(out)
    assert glog._ISO_TIME.fullmatch(fast.pop("timestamp"))
    chain.pop("timestamp")
    assert list(fast.items()) == list(chain.items())


def test_an_exception_line_is_the_one_structlog_chain_writes(out: io.StringIO) -> None:
    logger = glog.get_logger("passerelle.daemon")
    chain = structlog.get_logger().bind(logger="passerelle.daemon")
    try:
        raise ValueError("Résultats de Mme Pélissier")
    except ValueError as exc:
        logger.error("translation.crashed", queue_id="A1B2", exc_info=exc)
        chain.error("translation.crashed", queue_id="A1B2", exc_info=exc)
        fast_line, chain_line = _two_last(out)
        logger.exception("worker.failed", kind="internal")
        chain.exception("worker.failed", kind="internal")
    for fast, slow in ((fast_line, chain_line), _two_last(out)):
        fast.pop("timestamp"), slow.pop("timestamp")
        assert list(fast.items()) == list(slow.items())
        assert fast["error_type"] == "ValueError" and fast["level"] == "error"
    assert "Pélissier" not in out.getvalue()


def test_a_refused_value_is_refused_every_time_and_never_kept_in_clear() -> None:
    for _ in range(3):
        line = glog._redact_fields("LEFÈVRE François", {
            "queue_id": "1481169123123 07", "outcome": "Pélissier", "peer": "02/11/1948",
            "state": "19481102", "recipient": "jean.DUPONT@medical33.legacy.example"})
        assert line == {"event": REDACTED, "queue_id": REDACTED, "outcome": REDACTED,
                        "peer": REDACTED, "state": REDACTED,
                        "recipient": "***@medical33.legacy.example"}
    cached = {value for _, value in glog._KEPT} | glog._KEPT_TOKENS | glog._KEPT_EVENTS
    assert not cached & {"1481169123123 07", "Pélissier", "02/11/1948", "19481102",
                         "LEFÈVRE François", "jean.DUPONT@medical33.legacy.example"}


def test_a_word_allowed_later_is_no_longer_refused_from_the_cache() -> None:
    assert glog._redact_fields(None, {"outcome": "test_later_word"})["outcome"] == REDACTED
    glog.allow_words("test_later_word")
    assert glog._redact_fields(None, {"outcome": "test_later_word"})["outcome"] == (
        "test_later_word")


def test_the_caches_stay_bounded() -> None:
    for i in range(3 * glog._CACHE_MAX):
        glog._redact_fields(None, {"queue_id": f"Q{i:08X}", "outcome": f"x{i}"})
    assert len(glog._KEPT) <= glog._CACHE_MAX and len(glog._REFUSED) <= glog._CACHE_MAX


def test_the_timestamp_is_now_in_iso_8601_utc() -> None:
    before = datetime.now(UTC)
    stamp = glog._timestamp_now()
    after = datetime.now(UTC)
    assert glog._ISO_TIME.fullmatch(stamp) and stamp.endswith("Z")
    assert before - timedelta(microseconds=1) <= datetime.fromisoformat(stamp) <= after


def _deep(n: int) -> None:
    if n:
        _deep(n - 1)
    raise KeyError("Pélissier")


def test_an_exception_is_placed_where_the_traceback_module_places_it() -> None:
    for depth in (0, 3, 9):
        try:
            _deep(depth)
        except KeyError as exc:
            expected = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}"
                        for f in traceback.extract_tb(exc.__traceback__)[-6:]]
            assert glog._exception_fields(exc)["error_where"] == expected
