"""The closed vocabularies of the gateway's metric labels and log words.

A label or a logged word outside these is never written as it is (see
:func:`gateway.ops.metrics.safe_label` and :mod:`gateway.log`): nothing from a message — no
name, no address, no patient data — can reach a metric or a log line by way of a label.
"""

from __future__ import annotations

import ssl

from gateway.errors import CryptoError, CryptoToolError, PasserelleError, all_error_classes

DIRECTIONS = ("to_trust", "to_legacy")
"""legacy → trust space, and trust space → legacy."""

EVENTS = ("received", "translated", "delivered", "deferred", "bounced", "quarantined")
"""The spool's state changes a message goes through (Postfix-style, named exactly)."""

ERROR_KINDS = tuple(sorted({cls.kind for cls in all_error_classes()}))
"""The ``kind`` of every error class in `gateway.errors`."""

OUTCOMES = (
    "ok",  # the step succeeded
    "duplicate",  # suppressed: same Message-ID and content digest already delivered
    "expired",  # the retry lifetime ended (bounce after 5 days by default)
    "delay_warning",  # a delay notice was sent to the sender
    "operator",  # an operator acted (queue retry/hold/release/delete, quarantine release/drop)
    "peer_permanent",  # the next hop answered 5xx
    "in_doubt",  # delivered again after an interrupted attempt: the peer may have it twice
    "shutdown",  # the daemon was stopping
)
REASONS = ERROR_KINDS + OUTCOMES
"""``reason`` label of ``passerelle_messages_total``: an error kind or an outcome word."""

STAGES = ("accept", "open", "repair", "documents", "sign", "seal", "deliver")
"""Pipeline stages: accept (SMTP DATA → fsync), open (decrypt/verify), repair (text), documents
(HPRIM ↔ CDA/XDM), sign (S/MIME, to_trust), seal (OpenPGP, to_legacy), deliver (next hop)."""

SPOOL_STATES = ("received", "translated", "deferred", "held", "quarantined")
"""States a message can sit in; messages in a final state (delivered, bounced) are not counted."""

REPAIR_KINDS = (
    "mojibake", "mac_pc", "misread", "mixed_encoding", "line_ends", "bom", "nfc", "dos_eof",
)  # fmt: skip
"""`gateway.text.model.Repair.kind` values."""

TLS_REASONS = (
    "certificate_unknown",  # chain does not lead to an anchor we hold
    "certificate_expired",
    "certificate_revoked",
    "hostname_mismatch",
    "certificate_rejected",  # verified, but refused by policy (not in the list, wrong usage)
    "no_client_certificate",
    "protocol",  # version / cipher negotiation failed
    "timeout",
    "refused",  # TCP connection refused or reset before the handshake ended
    "starttls_unsupported",
    "crl_expired",  # the CRL of the peer certificate's issuer is past its nextUpdate
)
CRYPTO_KINDS = (
    *sorted({c.kind for c in all_error_classes() if issubclass(c, CryptoError | CryptoToolError)}),
    "certificate_rejected",
)
"""`kind` of the crypto error classes (and the S/MIME policy refusal)."""

EXPIRY_KINDS = ("certificate", "openpgp_key", "crl")
"""What expires: an X.509 certificate, an OpenPGP key, a CRL (its nextUpdate)."""

TLS_DIRECTIONS = ("inbound", "outbound")
"""A handshake a peer started with one of our listeners, or one we started with a next hop."""

LISTENERS = ("legacy", "trust")
"""The two SMTP listeners."""

SMTP_REJECT_REASONS = (
    "domain_not_listed",  # a recipient's (legacy) or sender's (trust) domain is not listed
    "unknown_sender",  # legacy listener: the sender is not a legacy user served here
    "unknown_address",  # a recipient is not served here
    "relay_denied",
    "report_unmatched",  # legacy listener: a hub report on a delivery this gateway never made
    "auth_failed",  # legacy listener: the hub's SMTP AUTH refused (535)
    "starttls_required",  # a transaction before STARTTLS (530)
    "no_client_certificate",  # trust listener: STARTTLS without a client certificate (530)
    "certificate_rejected",  # the client certificate's subject is not the one published
    "malformed_address",
    "too_many_recipients",
    "too_many_connections",  # 421: the listener's sessions, in all or from one client address
    "too_big",
    "message_format",
    "policy",  # any other refusal of ours (5xx)
    "syntax",  # a command aiosmtpd refused: unknown, out of sequence, bad arguments
    "spool_full",
    "transient",  # any other 4xx: the sender tries again
    "internal",
    "shutdown",
)
"""``reason`` of ``passerelle_smtp_rejections_total``."""

EVENT_REASONS: dict[str, tuple[str, ...]] = {
    "received": ("ok", "duplicate"),
    "translated": ("ok",),
    "delivered": ("ok", "in_doubt"),
    "deferred": ("peer_temporary", *ERROR_KINDS),
    "bounced": ("peer_permanent", "expired", *ERROR_KINDS),
    "quarantined": ERROR_KINDS,
}
"""The reasons each event is counted with: these label sets exist at zero from the start."""
"""What expires: an X.509 certificate, an OpenPGP key, a CRL (its nextUpdate)."""

def tls_reason(exc: BaseException) -> str:
    """Map an exception from a TLS connection attempt to a `TLS_REASONS` word."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", 0)
        # OpenSSL X509_V_ERR_*: 10 expired, 12 CRL expired, 23 revoked, 62 hostname mismatch.
        return {10: "certificate_expired", 12: "crl_expired", 23: "certificate_revoked",
                62: "hostname_mismatch"}.get(code, "certificate_unknown")  # fmt: skip
    if isinstance(exc, PasserelleError) and exc.kind == "certificate_rejected":
        return "certificate_rejected"
    if isinstance(exc, ssl.SSLError):
        text = str(exc).lower()
        if "certificate required" in text or "peer did not return a certificate" in text:
            return "no_client_certificate"
        return "protocol"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "refused"
    return "other"
