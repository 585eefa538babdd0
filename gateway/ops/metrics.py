"""Every Prometheus metric passerelle exports, on its own registry, and the helpers that feed them.

All families are defined here and nowhere else.  Names follow the Prometheus conventions: a
``passerelle_`` prefix, ``_total`` on counters, base units in the name (``_seconds``,
``_bytes``), absolute times as ``_timestamp_seconds`` (so a value set once never goes stale:
the age is ``time() - x`` in PromQL).

Labels never carry patient data.  Every label value comes from a closed vocabulary below, or —
for the only open one, a peer's domain — must look like a host name; anything else is counted
under ``other`` (see `safe_label`).

The daemon uses the module-level helpers (bound to the default `Metrics` on `REGISTRY`); a test
or a second instance in the same process can build its own ``Metrics(CollectorRegistry())``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from gateway import __version__
from gateway.crypto.legacy import TOOLS, VERIFICATION_KINDS
from gateway.vocabulary import (
    CRYPTO_KINDS,
    DIRECTIONS,
    EVENT_REASONS,
    EVENTS,
    EXPIRY_KINDS,
    LISTENERS,
    REASONS,
    REPAIR_KINDS,
    SMTP_REJECT_REASONS,
    SPOOL_STATES,
    STAGES,
    TLS_DIRECTIONS,
    TLS_REASONS,
)
from gateway.vocabulary import tls_reason as tls_reason  # the daemon's mapping, re-exported

OTHER = "other"

_REJECT_CODES = {
    "starttls_required": "530", "no_client_certificate": "530", "malformed_address": "553",
    "too_many_recipients": "452", "too_big": "552", "message_format": "554",
    "policy": "554", "syntax": "503",
    "spool_full": "452", "auth_failed": "535", "transient": "451", "internal": "451",
    "shutdown": "421",
    "certificate_rejected": "550", "relay_denied": "550", "unknown_address": "550",
    "unknown_sender": "550", "domain_not_listed": "550",
}  # fmt: skip
"""The usual code of each rejection reason (the label set initialised at zero)."""

_LABEL = re.compile(r"[a-z0-9_.:-]{1,64}")
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,64}}\Z){_DNS_LABEL}(?:\.{_DNS_LABEL})+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")

STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
E2E_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 86400)


def safe_label(value: object) -> str:
    """``value`` if it matches ``[a-z0-9_.:-]{1,64}``, else ``other``."""
    text = str(value)
    return text if _LABEL.fullmatch(text) else OTHER


def _closed(value: str, vocabulary: Iterable[str]) -> str:
    return value if value in vocabulary else OTHER


def peer_label(domain: str) -> str:
    """A peer's domain (operators, not patients) lower-cased, or ``other`` if not a host name."""
    text = domain.strip().rstrip(".").lower()
    if _HOST.fullmatch(text) or _IPV4.fullmatch(text):
        return safe_label(text)
    return OTHER




class Metrics:
    """The metric families on one registry, and the helpers that feed them."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 process: bool | None = None) -> None:
        """``process``: add the ``process_*`` and ``python_info`` collectors (by default when
        this builds its own registry)."""
        if process is None:
            process = registry is None
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.messages = Counter(
            "passerelle_messages_total",
            "Messages by spool event (received, translated, delivered, deferred, bounced, "
            "quarantined), direction (to_trust, to_legacy) and reason (error kind or outcome).",
            ["event", "direction", "reason"], registry=r,
        )  # fmt: skip
        self.stage = Histogram(
            "passerelle_stage_duration_seconds",
            "Time spent in one pipeline stage "
            "(accept, open, repair, documents, sign, seal, deliver).",
            ["stage"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.end_to_end = Histogram(
            "passerelle_message_duration_seconds",
            "Time from acceptance (250 after fsync) to delivery by the next hop, by direction.",
            ["direction"], buckets=E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self.spool_depth = Gauge(
            "passerelle_spool_messages",
            "Messages in the spool by state (received, translated, deferred, held, quarantined).",
            ["state"], registry=r,
        )  # fmt: skip
        self.oldest = Gauge(
            "passerelle_spool_oldest_message_age_seconds",
            "Age of the oldest message not yet in a final state (0 when the spool is empty).",
            registry=r,
        )
        self.retries = Counter(
            "passerelle_retries_total",
            "Delivery attempts after the first, by direction.",
            ["direction"], registry=r,
        )  # fmt: skip
        self.repairs = Counter(
            "passerelle_text_repairs_total",
            "Repairs made to legacy text, by kind (mojibake, mac_pc, line_ends, ...).",
            ["kind"], registry=r,
        )  # fmt: skip
        self.legacy_opens = Counter(
            "passerelle_legacy_parts_opened_total",
            "Legacy parts decrypted and verified, by the tool that verified them (gpg, sop, "
            "rnp, command); with legacy.adapter = \"sop\" or \"rnp\", tool=\"gpg\" counts the "
            "parts sqop or librnp did not accept and gpg did.",
            ["tool"], registry=r,
        )  # fmt: skip
        self.legacy_seals = Counter(
            "passerelle_legacy_parts_sealed_total",
            "Legacy parts signed and encrypted for a legacy user, by the tool that sealed them "
            "(gpg, sop, rnp, command); with legacy.adapter = \"sop\" or \"rnp\", tool=\"gpg\" "
            "counts the parts sqop or librnp did not seal and gpg did.",
            ["tool"], registry=r,
        )  # fmt: skip
        self.legacy_verified = Counter(
            "passerelle_legacy_parts_verified_total",
            "Legacy parts opened, by how the sender was established: signed (the sender's "
            "signature verified) or unsigned_v1 (a first-generation client's unsigned part, "
            "the sender asserted by the legacy hub's authenticated session).",
            ["kind"], registry=r,
        )  # fmt: skip
        for kind in VERIFICATION_KINDS:  # both series exist from the start, at zero
            self.legacy_verified.labels(kind)
        self.tls_failures = Counter(
            "passerelle_tls_handshake_failures_total",
            "TLS handshakes that failed, by direction (inbound: a peer to our listeners; "
            "outbound: we to a next hop), peer domain (an operator; inbound: \"other\") "
            "and reason.",
            ["direction", "peer_domain", "reason"], registry=r,
        )  # fmt: skip
        self.smtp_rejections = Counter(
            "passerelle_smtp_rejections_total",
            "SMTP commands our listeners refused, by listener (legacy, trust), reply code "
            "and reason.",
            ["listener", "code", "reason"], registry=r,
        )  # fmt: skip
        self.crypto_failures = Counter(
            "passerelle_crypto_failures_total",
            "Legacy OpenPGP and S/MIME failures, by error kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.expiry = Gauge(
            "passerelle_expiry_timestamp_seconds",
            "When each certificate, key or CRL in use expires (Unix time), by kind and role "
            "(server, client, signing, gateway, anchor:<sha1 prefix>, crl:<issuer>).",
            ["kind", "name"], registry=r,
        )  # fmt: skip
        self.list_time = Gauge(
            "passerelle_domain_list_timestamp_seconds",
            "When the list of domains in force was issued (Unix time); age = time() - this.",
            registry=r,
        )
        self.list_domains = Gauge(
            "passerelle_domain_list_domains",
            "Domains in the list of domains in force.",
            registry=r,
        )
        self.crl_time = Gauge(
            "passerelle_crl_timestamp_seconds",
            "When each CRL in use was issued (thisUpdate, Unix time), by issuer label.",
            ["issuer"], registry=r,
        )  # fmt: skip
        self.crl_expired = Gauge(
            "passerelle_crl_expired",
            "CRLs in force whose nextUpdate has passed (0 when every CRL is current): client "
            "certificates of their issuers are refused at the handshake until a new CRL is "
            "read, and /readyz fails.",
            registry=r,
        )
        self.journal_entries = Gauge(
            "passerelle_journal_entries", "Entries in the trace journal.", registry=r
        )
        self.journal_bytes = Gauge(
            "passerelle_journal_size_bytes", "Size of the trace journal on disk.", registry=r
        )
        self.build = Gauge(
            "passerelle_build_info", "Always 1; the version in a label.", ["version"], registry=r
        )
        self.build.labels(__version__).set(1)
        self._spool_states_seen: set[str] = set()
        self._zero()

    def _zero(self) -> None:
        """Create every known label set at 0: a series that exists before it moves (after a
        restart with the peers down, ``increase(...{event="delivered"}[30m])`` is 0, not
        absent, and the alerts that compare it can fire)."""
        for event, reasons in EVENT_REASONS.items():
            for direction in DIRECTIONS:
                for reason in reasons:
                    self.messages.labels(event, direction, reason)
        for direction in DIRECTIONS:
            self.retries.labels(direction)
            self.end_to_end.labels(direction)
        for stage in STAGES:
            self.stage.labels(stage)
        for kind in REPAIR_KINDS:
            self.repairs.labels(kind)
        for tool in TOOLS:
            self.legacy_opens.labels(tool)
            self.legacy_seals.labels(tool)
        for reason in TLS_REASONS:
            self.tls_failures.labels("inbound", OTHER, reason)
        for kind in CRYPTO_KINDS:
            self.crypto_failures.labels(kind)
        for listener in LISTENERS:
            for reason in SMTP_REJECT_REASONS:
                self.smtp_rejections.labels(listener, _REJECT_CODES.get(reason, "550"), reason)
        self.set_spool_depth({})

    # --- helpers the daemon calls -------------------------------------------------------------

    def count_message(self, event: str, direction: str, reason: str = "ok") -> None:
        """One message changed state; ``reason`` is an error ``kind`` or an outcome word."""
        self.messages.labels(
            _closed(event, EVENTS), _closed(direction, DIRECTIONS), _closed(reason, REASONS)
        ).inc()

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage.labels(_closed(stage, STAGES)).observe(max(0.0, seconds))

    def observe_end_to_end(self, direction: str, seconds: float) -> None:
        self.end_to_end.labels(_closed(direction, DIRECTIONS)).observe(max(0.0, seconds))

    def set_spool_depth(self, counts_by_state: Mapping[str, int]) -> None:
        """Set every state's count; states seen before and absent now drop to 0."""
        counts: dict[str, int] = {}
        for state, n in counts_by_state.items():
            label = _closed(state, SPOOL_STATES)
            counts[label] = counts.get(label, 0) + n
        for state in self._spool_states_seen | set(SPOOL_STATES):
            counts.setdefault(state, 0)
        for state, n in counts.items():
            self.spool_depth.labels(state).set(n)
        self._spool_states_seen |= set(counts)

    def set_oldest_age(self, seconds: float) -> None:
        self.oldest.set(max(0.0, seconds))

    def count_retry(self, direction: str) -> None:
        self.retries.labels(_closed(direction, DIRECTIONS)).inc()

    def count_repair(self, kind: str, n: int = 1) -> None:
        self.repairs.labels(_closed(kind, REPAIR_KINDS)).inc(n)

    def count_legacy_part(self, operation: str, tool: str) -> None:
        """A legacy part ``opened`` (decrypted and verified) or ``sealed``, by ``tool``."""
        counter = {"opened": self.legacy_opens, "sealed": self.legacy_seals}[operation]
        counter.labels(_closed(tool, TOOLS)).inc()

    def count_verifications(self, verification: Mapping[str, object]) -> None:
        """The parts of one opened legacy message, by verification kind (a trace step's
        ``verification``; a summary without kinds counts its parts as signed)."""
        kinds = verification.get("kinds")
        if not isinstance(kinds, list):
            parts = verification.get("parts")
            kinds = ["signed"] * (len(parts) if isinstance(parts, list) else 0)
        for kind in kinds:
            self.legacy_verified.labels(_closed(str(kind), VERIFICATION_KINDS)).inc()

    def count_tls_failure(self, peer_domain: str, reason: str,
                          direction: str = "outbound") -> None:
        """A failed handshake; inbound ones (a peer to our listener) carry no domain: the
        handshake failed before the peer said who it is."""
        domain = peer_label(peer_domain) if direction == "outbound" else OTHER
        self.tls_failures.labels(
            _closed(direction, TLS_DIRECTIONS), domain, _closed(reason, TLS_REASONS)
        ).inc()

    def count_smtp_rejection(self, listener: str, code: int | str, reason: str) -> None:
        """One SMTP command refused by a listener, with the reply code it got."""
        text = str(code)
        code_label = text if re.fullmatch(r"[45]\d\d", text) else OTHER
        self.smtp_rejections.labels(
            _closed(listener, LISTENERS), code_label, _closed(reason, SMTP_REJECT_REASONS)
        ).inc()

    def count_crypto_failure(self, kind: str) -> None:
        self.crypto_failures.labels(_closed(kind, CRYPTO_KINDS)).inc()

    def set_expiry_at(self, kind: str, name: str, not_after: datetime | float) -> None:
        """``name`` is a role (``server``, ``anchor:3f2a9c01``), never a person's name."""
        ts = not_after.timestamp() if isinstance(not_after, datetime) else float(not_after)
        self.expiry.labels(_closed(kind, EXPIRY_KINDS), safe_label(name)).set(ts)

    def set_expiry(self, kind: str, name: str, days: float) -> None:
        """Like `set_expiry_at`, from a number of days left counted from now."""
        self.set_expiry_at(kind, name, time.time() + days * 86400)

    def set_list_timestamp(self, issued: datetime | float, domains: int | None = None) -> None:
        ts = issued.timestamp() if isinstance(issued, datetime) else float(issued)
        self.list_time.set(ts)
        if domains is not None:
            self.list_domains.set(domains)

    def set_list_age(self, seconds: float) -> None:
        """The list in force is ``seconds`` old now."""
        self.list_time.set(time.time() - seconds)

    def set_crl_timestamp(self, issuer_label: str, issued: datetime | float) -> None:
        ts = issued.timestamp() if isinstance(issued, datetime) else float(issued)
        self.crl_time.labels(safe_label(issuer_label)).set(ts)

    def set_crl_expired(self, count: int) -> None:
        self.crl_expired.set(count)

    def drop_crl(self, label: str) -> None:
        """A CRL no longer in force (replaced by a newer one): its series go."""
        for gauge, labels in ((self.crl_time, (safe_label(label),)),
                              (self.expiry, ("crl", safe_label(label)))):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def set_crl_age(self, issuer_label: str, seconds: float) -> None:
        self.crl_time.labels(safe_label(issuer_label)).set(time.time() - seconds)

    def set_journal_size(self, entries: int, size_bytes: int) -> None:
        self.journal_entries.set(entries)
        self.journal_bytes.set(size_bytes)

    def family_names(self) -> set[str]:
        """Names of the families on this registry, as exposed (counters with ``_total``)."""
        names: set[str] = set()
        for family in self.registry.collect():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
        return names

    def sample_names(self) -> set[str]:
        """Every sample name a scrape can show (``_bucket``, ``_count``, ``_sum``, ``_created``)."""
        names = self.family_names()
        for family in self.registry.collect():
            if family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_count", "_sum", "_created")}
            elif family.type == "counter":
                names.add(family.name + "_created")
        return names


REGISTRY = CollectorRegistry()
METRICS = Metrics(REGISTRY, process=True)

count_message = METRICS.count_message
observe_stage = METRICS.observe_stage
observe_end_to_end = METRICS.observe_end_to_end
set_spool_depth = METRICS.set_spool_depth
set_oldest_age = METRICS.set_oldest_age
count_retry = METRICS.count_retry
count_repair = METRICS.count_repair
count_tls_failure = METRICS.count_tls_failure
count_smtp_rejection = METRICS.count_smtp_rejection
count_crypto_failure = METRICS.count_crypto_failure
set_expiry = METRICS.set_expiry
set_expiry_at = METRICS.set_expiry_at
set_list_age = METRICS.set_list_age
set_list_timestamp = METRICS.set_list_timestamp
set_crl_age = METRICS.set_crl_age
set_crl_timestamp = METRICS.set_crl_timestamp
set_journal_size = METRICS.set_journal_size
