"""One exception hierarchy for passerelle; each error knows its SMTP reply, exit code and fate.

Errors are raised where they are detected and turned into an SMTP reply, a process exit code
or a spool decision (retry / bounce / quarantine) in exactly one place: the class attributes
below.  Nothing else in the code base picks reply codes or exit codes for an error.

Exit codes follow sysexits(3): 0 ok, 2 usage, 65 bad input (EX_DATAERR), 70 internal
(EX_SOFTWARE), 71 operating-system error (EX_OSERR: a port in use, a device gone), 73 cannot
create an output file (EX_CANTCREAT), 75 transient (EX_TEMPFAIL), 77 permission denied
(EX_NOPERM), 78 configuration (EX_CONFIG).
Enhanced status codes follow RFC 3463.
"""

from __future__ import annotations

import errno
import re
from enum import StrEnum
from typing import ClassVar

EX_OK = 0
EX_USAGE = 2
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class Fate(StrEnum):
    """What the spool does with a message whose processing raised this error."""

    RETRY = "retry"  # transient: keep, back off, try again until the lifetime ends
    BOUNCE = "bounce"  # permanent and the sender's doing: tell the sender in their format
    QUARANTINE = "quarantine"  # permanent but ours to look at: keep for an operator


class PasserelleError(Exception):
    """Base of every error passerelle raises on purpose.

    ``kind`` is a stable, patient-data-free label used in metrics, logs and the trace.
    The message (``str(err)``) must never contain patient data either: name files,
    line numbers, field names, key fingerprints — not contents.
    """

    exit_code: ClassVar[int] = EX_SOFTWARE
    smtp_code: ClassVar[int] = 451
    enhanced: ClassVar[str] = "4.3.0"
    fate: ClassVar[Fate] = Fate.RETRY
    kind: ClassVar[str] = "internal"
    # raised before the message's author was verified (a legacy message whose signature or
    # envelope did not check out): what it says of itself is nobody's word, and a notice
    # about it quotes none of it (set by the pipeline, kept across a worker process)
    unverified: bool = False

    @property
    def transient(self) -> bool:
        return self.smtp_code < 500

    def smtp_reply(self) -> str:
        """The reply line an SMTP handler sends for this error (no patient data)."""
        text = str(self).replace("\r", " ").replace("\n", " ")[:200] or self.kind
        return f"{self.smtp_code} {self.enhanced} {text}"


# --- usage and configuration ------------------------------------------------------------


class UsageError(PasserelleError):
    exit_code = EX_USAGE
    kind = "usage"


class ConfigError(PasserelleError):
    """The operator's configuration or tables are wrong: we must not accept work we cannot do."""

    exit_code = EX_CONFIG
    smtp_code = 451
    enhanced = "4.3.5"
    fate = Fate.RETRY
    kind = "config"


# --- transient trouble: 4xx, retry -----------------------------------------------------------


class ConfigProblems(ConfigError):
    """Every problem found in one configuration file: the first one is the message (one line),
    all of them are in ``problems`` as ``(key, why)`` for ``config check``."""

    kind = "config_invalid"

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    @classmethod
    def found(cls, source: str, problems: list[tuple[str, str]]) -> ConfigProblems:
        key, why = problems[0]
        more = f" (and {len(problems) - 1} more problem(s); run `passerelle config check`)" \
            if len(problems) > 1 else ""
        return cls(f"{source}: {key}: {why}{more}", problems)


class TransientError(PasserelleError):
    exit_code = EX_TEMPFAIL
    smtp_code = 451
    enhanced = "4.3.0"
    fate = Fate.RETRY
    kind = "transient"


class AlreadyRunning(TransientError):
    """Another ``serve`` holds this state directory."""

    kind = "already_running"


class SpoolUnavailable(TransientError):
    kind = "spool_unavailable"


class CrlOutOfDate(TransientError):
    """A CRL we hold is past its nextUpdate: a chain of its issuer cannot be judged now.
    Our own trouble, not the sender's: the message waits (retried) for a fresh CRL rather
    than being bounced."""

    kind = "crl_expired"


class SpoolFull(TransientError):
    smtp_code = 452
    enhanced = "4.3.1"
    kind = "spool_full"


class CryptoToolError(TransientError):
    """The crypto tool itself failed (crashed, timed out): not the message's fault."""

    enhanced = "4.7.0"
    kind = "crypto_tool"


class PeerTemporaryError(TransientError):
    enhanced = "4.4.1"
    kind = "peer_temporary"


# --- bad input: 5xx, the sender's doing --------------------------------------------------


class BadInputError(PasserelleError):
    exit_code = EX_DATAERR
    smtp_code = 554
    enhanced = "5.6.0"
    fate = Fate.QUARANTINE
    kind = "bad_input"


class TextError(BadInputError):
    """Bytes that cannot be read as text without losing some of them."""

    kind = "text"


class MessageFormatError(BadInputError):
    """Malformed RFC 5322 / MIME structure."""

    fate = Fate.BOUNCE
    kind = "message_format"


class MessageTooBig(BadInputError):
    smtp_code = 552
    enhanced = "5.3.4"
    fate = Fate.BOUNCE
    kind = "too_big"


class DocumentError(BadInputError):
    """An HPRIM, CDA, XDM or PDF document that cannot be read or built faithfully."""

    kind = "document"


class UnsafeDocumentError(DocumentError):
    """A document that tries something dangerous: entities, DTD, traversal, zip bomb."""

    kind = "unsafe_document"


class TranslationError(BadInputError):
    """The content was read but cannot be carried faithfully to the other side."""

    kind = "translation"


class UnknownLab(TranslationError):
    """An HPRIM report from a sender without a row in mappings/labs.csv: no author, custodian
    or legal authenticator can be named, and none is made up.  Quarantined: an operator adds
    the lab's row (FINESS, biologist's RPPS…) and releases the message."""

    kind = "unknown_lab"


# --- cryptography: the legacy side's end-to-end crypto and S/MIME ---------------------------


class CryptoError(BadInputError):
    smtp_code = 554
    enhanced = "5.7.5"
    fate = Fate.BOUNCE
    kind = "crypto"


class NotEncrypted(CryptoError):
    kind = "not_encrypted"


class Unsigned(CryptoError):
    enhanced = "5.7.7"
    kind = "unsigned"


class UnknownKey(CryptoError):
    kind = "unknown_key"


class BadSignature(CryptoError):
    enhanced = "5.7.7"
    kind = "bad_signature"


class WrongSigner(CryptoError):
    enhanced = "5.7.1"
    kind = "wrong_signer"


class NestedArmour(CryptoError):
    """A decrypted part holds another OpenPGP message (armour): someone else's ciphertext or
    signed text, which would reach the recipient under the outer sender's name."""

    enhanced = "5.7.1"
    kind = "nested_armour"


class KeyExpired(CryptoError):
    kind = "key_expired"


class KeyRevoked(CryptoError):
    kind = "key_revoked"


class CannotDecrypt(CryptoError):
    kind = "cannot_decrypt"


class NoRecipientKey(CryptoError):
    """We hold no usable key for the recipient: never fall back to plaintext."""

    fate = Fate.QUARANTINE
    kind = "no_recipient_key"


class SmimeError(CryptoError):
    enhanced = "5.7.7"
    kind = "smime"


# --- policy and trust: who may talk to whom -------------------------------------------------


class PolicyError(PasserelleError):
    exit_code = EX_DATAERR
    smtp_code = 550
    enhanced = "5.7.1"
    fate = Fate.BOUNCE
    kind = "policy"


class RelayDenied(PolicyError):
    smtp_code = 554
    kind = "relay_denied"


class UnmatchedReport(RelayDenied):
    """A delivery report (from the legacy hub) about a message this gateway did not hand to
    the recipient it names: refused, the trust-space sender is told nothing."""

    kind = "report_unmatched"


class SenderMismatch(PolicyError):
    """The ``From`` (or the null sender, or the S/MIME signer) is not the party that
    authenticated."""

    kind = "sender_mismatch"


class BadRecipientAddress(PolicyError):
    """A recipient that cannot be written in the form the next hop knows (an
    internationalised domain that is no valid IDNA 2008 name)."""

    smtp_code = 553
    enhanced = "5.1.3"
    kind = "bad_recipient_address"


class DomainNotListed(PolicyError):
    kind = "domain_not_listed"


class CertificateRejected(PolicyError):
    kind = "certificate_rejected"


class UnknownAddress(PolicyError):
    enhanced = "5.1.1"
    kind = "unknown_address"


class AmbiguousAddress(PolicyError):
    enhanced = "5.1.4"
    kind = "ambiguous_address"


class TrustListError(BadInputError):
    """A list of domains that is malformed, badly signed or older than the one in force."""

    kind = "trust_list"


class OSFailure(PasserelleError):
    """The operating system refused what a command asked of it (a port in use, a folder that
    does not exist, a permission): one line naming the port or path, a sysexits code."""

    kind = "os"

    def __init__(self, message: str, exit_code: int = EX_OSERR) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


_CANTCREAT = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EROFS,
              errno.ENOSPC, errno.EDQUOT}


def os_error(exc: OSError) -> OSFailure:
    """An ``OSError`` as one line naming what the system refused, with its sysexits code:
    77 permission, 73 a file or folder that cannot be created or found, 71 anything else
    (an address in use among them)."""
    where = " → ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    bind = _bind_target(exc)
    if exc.errno == errno.EADDRINUSE:
        return OSFailure(f"cannot listen on {bind or 'the address'}: address already in use "
                         "(is another passerelle or mail server running?)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return OSFailure(f"cannot listen on {bind or 'the address'}: no such local address")
    if exc.errno in (errno.EACCES, errno.EPERM):
        if bind:
            return OSFailure(f"cannot listen on {bind}: permission denied (a port below 1024 "
                             "needs CAP_NET_BIND_SERVICE)", EX_NOPERM)
        return OSFailure(f"permission denied: {where or exc.strerror or exc}", EX_NOPERM)
    why = exc.strerror or str(exc)
    code = EX_CANTCREAT if exc.errno in _CANTCREAT else EX_OSERR
    return OSFailure(f"{where}: {why}" if where else why, code)


def _bind_target(exc: OSError) -> str:
    """'127.0.0.1 port 25' out of asyncio's bind error message, when it names one."""
    m = re.search(r"on address \('([^']*)', (\d+)", str(exc))
    return f"{m.group(1)} port {m.group(2)}" if m else ""


EXIT_KINDS: dict[str, type[PasserelleError]] = {
    "cannot_decrypt": CannotDecrypt,
    "bad_signature": BadSignature,
    "unknown_key": UnknownKey,
    "unsigned": Unsigned,
    "key_expired": KeyExpired,
    "key_revoked": KeyRevoked,
    "no_recipient_key": NoRecipientKey,
    "transient": CryptoToolError,
}
"""What an exit status of a licensed legacy tool may mean (``[legacy.exit_codes]``, read by
the configuration and by the command adapter)."""


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for any exception (unexpected ones are EX_SOFTWARE)."""
    if isinstance(exc, PasserelleError):
        return exc.exit_code
    if isinstance(exc, OSError):
        return os_error(exc).exit_code
    return EX_SOFTWARE


def all_error_classes() -> list[type[PasserelleError]]:
    """Every error class, for the failure table and its test."""
    seen: list[type[PasserelleError]] = []
    stack: list[type[PasserelleError]] = [PasserelleError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
