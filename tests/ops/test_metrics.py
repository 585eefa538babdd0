"""Metric families: Prometheus naming conventions, labels kept in their vocabularies."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from gateway.errors import all_error_classes
from gateway.ops import metrics as m


@pytest.fixture
def fresh() -> m.Metrics:
    return m.Metrics(CollectorRegistry())


def value(mx: m.Metrics, sample: str, /, **labels: str) -> float | None:
    return mx.registry.get_sample_value(sample, labels)


EXPECTED = {
    "passerelle_messages_total": ("counter", {"event", "direction", "reason"}),
    "passerelle_stage_duration_seconds": ("histogram", {"stage"}),
    "passerelle_message_duration_seconds": ("histogram", {"direction"}),
    "passerelle_spool_messages": ("gauge", {"state"}),
    "passerelle_spool_oldest_message_age_seconds": ("gauge", set()),
    "passerelle_retries_total": ("counter", {"direction"}),
    "passerelle_text_repairs_total": ("counter", {"kind"}),
    "passerelle_legacy_parts_opened_total": ("counter", {"tool"}),
    "passerelle_legacy_parts_sealed_total": ("counter", {"tool"}),
    "passerelle_legacy_parts_verified_total": ("counter", {"kind"}),
    "passerelle_tls_handshake_failures_total": ("counter",
                                                {"direction", "peer_domain", "reason"}),
    "passerelle_smtp_rejections_total": ("counter", {"listener", "code", "reason"}),
    "passerelle_crypto_failures_total": ("counter", {"kind"}),
    "passerelle_expiry_timestamp_seconds": ("gauge", {"kind", "name"}),
    "passerelle_domain_list_timestamp_seconds": ("gauge", set()),
    "passerelle_domain_list_domains": ("gauge", set()),
    "passerelle_crl_timestamp_seconds": ("gauge", {"issuer"}),
    "passerelle_crl_expired": ("gauge", set()),
    "passerelle_journal_entries": ("gauge", set()),
    "passerelle_journal_size_bytes": ("gauge", set()),
    "passerelle_build_info": ("gauge", {"version"}),
}


def test_every_family_is_there_with_its_type_and_labels(fresh: m.Metrics) -> None:
    fresh.observe_stage("accept", 0.01)  # histograms/labelled metrics show labels once used
    families = {f.name + ("_total" if f.type == "counter" else ""): f
                for f in fresh.registry.collect()}  # fmt: skip
    assert set(families) == set(EXPECTED)
    collectors = fresh.registry._names_to_collectors  # the declared label names
    for name, (kind, labels) in EXPECTED.items():
        assert families[name].type == kind, name
        assert set(collectors[name]._labelnames) == labels, name


def test_names_follow_prometheus_conventions(fresh: m.Metrics) -> None:
    for family in fresh.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert re.fullmatch(r"passerelle_[a-z][a-z0-9_]*", name), name
        assert family.documentation, name
        if family.type == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations in seconds"
        # base units only
        assert not re.search(r"_(ms|milliseconds|minutes|hours|days|kilobytes|mb)(_|$)", name)
        words = set(name.split("_"))
        if words & {"age", "timestamp", "duration"}:
            assert name.endswith("_seconds"), name
        if "size" in words:
            assert name.endswith("_bytes"), name


def test_default_registry_is_dedicated_and_exposes_process_metrics() -> None:
    text = generate_latest(m.REGISTRY).decode()
    assert "passerelle_build_info" in text
    assert "process_start_time_seconds" in text or "python_info" in text
    from prometheus_client import REGISTRY as GLOBAL

    assert m.REGISTRY is not GLOBAL
    assert GLOBAL.get_sample_value("passerelle_build_info", {"version": "0.1.0"}) is None


def test_helpers_move_the_families(fresh: m.Metrics) -> None:
    fresh.count_message("received", "to_trust")
    fresh.count_message("bounced", "to_legacy", "bad_signature")
    fresh.observe_stage("sign", 0.2)
    fresh.observe_end_to_end("to_trust", 3.0)
    fresh.set_spool_depth({"received": 2, "deferred": 1})
    fresh.set_oldest_age(120)
    fresh.count_retry("to_trust")
    fresh.count_repair("mojibake", 3)
    fresh.count_legacy_part("opened", "sop")
    fresh.count_legacy_part("sealed", "gpg")
    fresh.count_tls_failure("MX.Operator.example.", "certificate_expired")
    fresh.count_crypto_failure("bad_signature")
    fresh.set_expiry("certificate", "server", 10)
    fresh.set_list_age(3600)
    fresh.set_crl_age("igc-sante", 7200)
    fresh.set_journal_size(10, 4096)
    v = value
    assert v(fresh, "passerelle_messages_total", event="received", direction="to_trust",
             reason="ok") == 1  # fmt: skip
    assert v(fresh, "passerelle_messages_total", event="bounced", direction="to_legacy",
             reason="bad_signature") == 1  # fmt: skip
    assert v(fresh, "passerelle_stage_duration_seconds_count", stage="sign") == 1
    assert v(fresh, "passerelle_message_duration_seconds_sum", direction="to_trust") == 3.0
    assert v(fresh, "passerelle_spool_messages", state="received") == 2
    assert v(fresh, "passerelle_spool_messages", state="held") == 0
    assert v(fresh, "passerelle_spool_oldest_message_age_seconds") == 120
    assert v(fresh, "passerelle_retries_total", direction="to_trust") == 1
    assert v(fresh, "passerelle_text_repairs_total", kind="mojibake") == 3
    assert v(fresh, "passerelle_legacy_parts_opened_total", tool="sop") == 1
    assert v(fresh, "passerelle_legacy_parts_opened_total", tool="gpg") == 0  # there, at 0
    assert v(fresh, "passerelle_legacy_parts_sealed_total", tool="gpg") == 1
    assert v(fresh, "passerelle_tls_handshake_failures_total", direction="outbound",
             peer_domain="mx.operator.example", reason="certificate_expired") == 1  # fmt: skip
    assert v(fresh, "passerelle_crypto_failures_total", kind="bad_signature") == 1
    expiry = v(fresh, "passerelle_expiry_timestamp_seconds", kind="certificate", name="server")
    assert expiry is not None and abs(expiry - (time.time() + 10 * 86400)) < 60
    listed = v(fresh, "passerelle_domain_list_timestamp_seconds")
    assert listed is not None and abs(time.time() - listed - 3600) < 60
    crl = v(fresh, "passerelle_crl_timestamp_seconds", issuer="igc-sante")
    assert crl is not None and abs(time.time() - crl - 7200) < 60
    assert v(fresh, "passerelle_journal_entries") == 10
    assert v(fresh, "passerelle_journal_size_bytes") == 4096


def test_legacy_parts_are_counted_by_verification_kind_from_zero(fresh: m.Metrics) -> None:
    """Both kinds are exported at 0 before any message (a rate of unsigned parts can be
    alerted on from the first one); an opened message counts each of its parts."""
    for kind in ("signed", "unsigned_v1"):
        assert value(fresh, "passerelle_legacy_parts_verified_total", kind=kind) == 0
    fresh.count_verifications({"parts": ["body:inline", "attachment:2"],
                               "kinds": ["unsigned_v1", "signed"]})
    fresh.count_verifications({"parts": ["body:inline"]})  # a summary without kinds: signed
    fresh.count_verifications({"parts": ["body:inline"], "kinds": ["Dr Dupont"]})
    assert value(fresh, "passerelle_legacy_parts_verified_total", kind="signed") == 2
    assert value(fresh, "passerelle_legacy_parts_verified_total", kind="unsigned_v1") == 1
    assert value(fresh, "passerelle_legacy_parts_verified_total", kind="other") == 1


def test_spool_state_that_drains_drops_to_zero(fresh: m.Metrics) -> None:
    fresh.set_spool_depth({"deferred": 4})
    fresh.set_spool_depth({})
    assert value(fresh, "passerelle_spool_messages", state="deferred") == 0


def test_words_outside_the_vocabularies_become_other(fresh: m.Metrics) -> None:
    fresh.count_message("received", "sideways", "Jean Dupont")
    fresh.count_repair("Mme Pélissier")
    fresh.count_legacy_part("opened", "/opt/legacy/bin/open --key dupont")
    fresh.count_legacy_part("sealed", "/opt/legacy/bin/seal --key dupont")
    fresh.count_tls_failure("jean.dupont@medical33.legacy.example", "weird")
    fresh.count_tls_failure("dupont", "timeout")
    fresh.count_crypto_failure("1481169123123 07")
    fresh.set_expiry("certificate", "Dr François Lebœuf", 3)
    assert value(fresh, "passerelle_messages_total", event="received", direction="other",
                 reason="other") == 1  # fmt: skip
    assert value(fresh, "passerelle_text_repairs_total", kind="other") == 1
    assert value(fresh, "passerelle_legacy_parts_opened_total", tool="other") == 1
    assert value(fresh, "passerelle_legacy_parts_sealed_total", tool="other") == 1
    assert value(fresh, "passerelle_tls_handshake_failures_total", direction="outbound",
                 peer_domain="other", reason="other") == 1  # fmt: skip
    assert value(fresh, "passerelle_tls_handshake_failures_total", direction="outbound",
                 peer_domain="other", reason="timeout") == 1  # fmt: skip
    assert value(fresh, "passerelle_crypto_failures_total", kind="other") == 1
    assert value(fresh, "passerelle_expiry_timestamp_seconds", kind="certificate",
                 name="other") is not None  # fmt: skip


def test_every_error_kind_is_a_reason() -> None:
    for cls in all_error_classes():
        assert cls.kind in m.REASONS
        assert m.safe_label(cls.kind) == cls.kind


@given(st.text(max_size=80))
def test_safe_label_only_lets_label_shaped_text_through(text: str) -> None:
    out = m.safe_label(text)
    assert out == "other" or (out == text and re.fullmatch(r"[a-z0-9_.:-]{1,64}", text))


@pytest.mark.parametrize("value", ["", "Jean", "a b", "x" * 65, "é", "a@b.c", "1\n2"])
def test_safe_label_refuses(value: str) -> None:
    assert m.safe_label(value) == "other"


@pytest.mark.parametrize("value", ["anchor:3f2a9c01", "server", "mx.op-1.example", "crl:igc"])
def test_safe_label_keeps(value: str) -> None:
    assert m.safe_label(value) == value


def test_tls_reason_maps_exceptions() -> None:
    import ssl

    err = ssl.SSLCertVerificationError(1, "certificate has expired")
    err.verify_code = 10
    assert m.tls_reason(err) == "certificate_expired"
    assert m.tls_reason(ssl.SSLError(1, "wrong version number")) == "protocol"
    assert m.tls_reason(TimeoutError()) == "timeout"
    assert m.tls_reason(ConnectionRefusedError()) == "refused"
    assert m.tls_reason(ValueError()) == "other"
    for reason in m.TLS_REASONS:
        assert m.safe_label(reason) == reason
