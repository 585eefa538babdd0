"""Helpers for the end-to-end test: scrape ``/metrics`` over HTTP and see which families moved.

    before = scrape(ops_url)
    ... run the end-to-end suite through the daemon ...
    assert still_families(before, scrape(ops_url), E2E_FAMILIES) == set()
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

# Families the end-to-end run must move (a gauge counts as moved when its samples change).
E2E_FAMILIES = (
    "passerelle_messages_total", "passerelle_stage_duration_seconds",
    "passerelle_message_duration_seconds", "passerelle_spool_messages",
    "passerelle_spool_oldest_message_age_seconds", "passerelle_retries_total",
    "passerelle_text_repairs_total", "passerelle_tls_handshake_failures_total",
    "passerelle_crypto_failures_total", "passerelle_expiry_timestamp_seconds",
    "passerelle_domain_list_timestamp_seconds", "passerelle_crl_timestamp_seconds",
    "passerelle_journal_entries", "passerelle_journal_size_bytes",
)  # fmt: skip

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> dict[str, Samples]:
    """Family name (counters with ``_total``) → {(sample name, labels): value}."""
    out: dict[str, Samples] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        samples = out.setdefault(name, {})
        for s in family.samples:
            if not s.name.endswith("_created"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(base_url: str) -> dict[str, Samples]:
    with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=10) as resp:
        return parse(resp.read().decode("utf-8"))


def still_families(
    before: dict[str, Samples], after: dict[str, Samples], families: Iterable[str]
) -> set[str]:
    """The families among ``families`` whose samples did not change (empty: all moved)."""
    return {f for f in families if after.get(f, {}) == before.get(f, {}) or not after.get(f)}
