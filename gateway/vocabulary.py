"""The closed vocabularies of the gateway's metric labels and log words.

A label or a logged word outside these is never written as it is (see
:func:`gateway.ops.metrics.safe_label` and :mod:`gateway.log`): nothing from a message — no
name, no address, no patient data — can reach a metric or a log line by way of a label.
"""

from __future__ import annotations

from gateway.errors import CryptoError, CryptoToolError, all_error_classes

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
)
CRYPTO_KINDS = (
    *sorted({c.kind for c in all_error_classes() if issubclass(c, CryptoError | CryptoToolError)}),
    "certificate_rejected",
)
"""`kind` of the crypto error classes (and the S/MIME policy refusal)."""

EXPIRY_KINDS = ("certificate", "openpgp_key", "crl")
"""What expires: an X.509 certificate, an OpenPGP key, a CRL (its nextUpdate)."""
