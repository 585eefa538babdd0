"""Trust anchors, chain validation (expiry, key usage, CRL) and the TLS contexts of both sides.

TLS policy (trust-space spec): TLS 1.2 minimum, 1.3 allowed; for TLS 1.2 exactly the four
MSSanté suites by default (configurable); the trust listener requires and verifies a client
certificate against the anchors and the CRLs; the sender presents the gateway's client
certificate and verifies the server against the anchors.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.crypto.x509util import dn_string, load_certificates
from gateway.errors import CertificateRejected, ConfigError, CrlOutOfDate

MSSANTE_TLS12_SUITES = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256"
)
_PURPOSES = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "signing": ExtendedKeyUsageOID.EMAIL_PROTECTION,
}


@dataclass(frozen=True)
class TrustAnchors:
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    paths: tuple[Path, ...] = ()
    crl_paths: tuple[Path, ...] = ()

    @classmethod
    def load(cls, paths: Iterable[Path], crls: Iterable[Path] = ()) -> TrustAnchors:
        paths = tuple(paths)
        crl_paths = tuple(crls)
        certs = [c for p in paths for c in load_certificates(p)]
        if not certs:
            raise ConfigError("no trust anchor configured")
        loaded = []
        for p in crl_paths:
            try:
                data = p.read_bytes()
                loaded.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                              else x509.load_der_x509_crl(data))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{p}: not a readable CRL ({type(exc).__name__})") from None
            issuer = next((c for c in certs if c.subject == loaded[-1].issuer), None)
            if issuer is not None and not _crl_signed_by(loaded[-1], issuer):
                raise ConfigError(f"{p}: CRL not signed by its issuer "
                                  f"{dn_string(issuer.subject)!r}")
        return cls(tuple(certs), tuple(loaded), paths, crl_paths)

    def older_crls(self, than: TrustAnchors) -> list[str]:
        """The issuers whose CRL here was issued before the one ``than`` holds (a CRL put
        back: certificates revoked since would count again)."""
        held = {crl.issuer: crl.last_update_utc for crl in than.crls}
        return [dn_string(crl.issuer) for crl in self.crls
                if crl.issuer in held and crl.last_update_utc < held[crl.issuer]]

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as DER bytes (a worker process is given the anchors and CRLs the daemon
        accepted, never the files again: a CRL refused on reload stays refused there)."""
        return (_anchors_from_der, (tuple(_der(c) for c in self.certificates),
                                    tuple(c.public_bytes(serialization.Encoding.DER)
                                          for c in self.crls), self.paths, self.crl_paths))

    def reloaded(self) -> TrustAnchors:
        """The same files read again (a new CRL published in place): a file that cannot be
        read is :class:`ConfigError`, and the caller keeps these."""
        return TrustAnchors.load(self.paths, self.crl_paths)

    def files_state(self) -> tuple[tuple[int, int, int], ...]:
        """What tells that a file was replaced or rewritten (inode, size, mtime of each
        anchor and CRL file; a missing file reads as zeros)."""
        out = []
        for p in (*self.paths, *self.crl_paths):
            try:
                st = p.stat()
            except OSError:
                out.append((0, 0, 0))
            else:
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def expired_crls(self, at: datetime) -> list[tuple[str, datetime]]:
        """The CRLs in force whose nextUpdate is past at ``at``: (issuer, nextUpdate) each,
        the issuer as a DN (a CA's name, never a person's)."""
        return [(dn_string(crl.issuer), crl.next_update_utc) for crl in self.crls
                if crl.next_update_utc is not None and crl.next_update_utc < at]

    def next_crl_update(self) -> datetime | None:
        """The earliest nextUpdate of the CRLs in force (None without any)."""
        times = [c.next_update_utc for c in self.crls if c.next_update_utc is not None]
        return min(times) if times else None


def _anchors_from_der(certs: tuple[bytes, ...], crls: tuple[bytes, ...],
                      paths: tuple[Path, ...], crl_paths: tuple[Path, ...]) -> TrustAnchors:
    return TrustAnchors(tuple(x509.load_der_x509_certificate(c) for c in certs),
                        tuple(x509.load_der_x509_crl(c) for c in crls), paths, crl_paths)


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def validate_chain(cert: x509.Certificate, *, anchors: TrustAnchors,
                   intermediates: Sequence[x509.Certificate] = (), at: datetime | None = None,
                   purpose: str = "signing") -> list[x509.Certificate]:
    """Validate ``cert`` up to an anchor; returns the chain or raises CertificateRejected."""
    at = at or datetime.now(UTC)
    chain = [cert]
    current = cert
    pool = list(intermediates) + list(anchors.certificates)
    for _ in range(8):
        _check_validity(current, at)
        if current is cert:
            _check_usage(current, purpose)
        _check_revocation(current, anchors, at)
        if any(current == a for a in anchors.certificates):
            return chain
        issuer = next((c for c in pool if c.subject == current.issuer and c != current), None)
        if issuer is None:
            raise CertificateRejected(
                f"certificate of {dn_string(cert.subject)!r} does not chain to a trust anchor")
        try:
            current.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, Exception) as exc:
            raise CertificateRejected(f"certificate signature invalid ({type(exc).__name__})")\
                from None
        chain.append(issuer)
        current = issuer
    raise CertificateRejected("certificate chain too long")


class ChainCache:
    """Chain validations against one set of anchors, remembered for the time they hold.

    What :func:`validate_chain` decides about a certificate depends on the time only through
    the validity periods of the chain and the next-update of the CRLs it read; all else
    (signatures, key usage, revocation lists, which issuer) is a function of the exact bytes
    of the certificate and of the anchors, which are immutable.  So a validation that passed
    is kept, keyed by the certificate's DER (and the intermediates'), with the window
    [latest not-before, earliest not-after / next-update] of its chain: a later ``at`` inside
    the window needs nothing more; outside it the chain is validated again, and refused with
    the usual reason (expired, not yet valid, CRL out of date).  Failures are not kept."""

    def __init__(self, anchors: TrustAnchors, *, size: int = 1024) -> None:
        self.anchors = anchors
        self._size = size
        self._held: dict[tuple[bytes, ...],
                         tuple[datetime, datetime, tuple[x509.Certificate, ...]]] = {}
        self._lock = threading.Lock()

    def validate(self, cert: x509.Certificate, *, at: datetime,
                 intermediates: Sequence[x509.Certificate] = (), purpose: str = "signing",
                 der: bytes | None = None) -> list[x509.Certificate]:
        """:func:`validate_chain` of ``cert`` at ``at`` (``der``: its DER, when known)."""
        key = (purpose.encode(), der if der is not None else _der(cert),
               *(_der(c) for c in intermediates))
        held = self._held.get(key)
        if held is not None and held[0] <= at <= held[1]:
            return list(held[2])
        chain = validate_chain(cert, anchors=self.anchors, intermediates=intermediates, at=at,
                               purpose=purpose)
        start, until = validity_window(chain, self.anchors)
        with self._lock:
            while len(self._held) >= self._size:  # the oldest first
                del self._held[next(iter(self._held))]
            self._held[key] = (start, until, tuple(chain))
        return chain


def validity_window(chain: Sequence[x509.Certificate],
                    anchors: TrustAnchors) -> tuple[datetime, datetime]:
    """When a chain :func:`validate_chain` accepted stays valid: from the latest not-before
    of its certificates to the earliest of their not-after and of the next-update of every
    CRL it read (those of the issuers of its certificates)."""
    start = max(c.not_valid_before_utc for c in chain)
    until = min(c.not_valid_after_utc for c in chain)
    for crl in anchors.crls:
        if crl.next_update_utc is not None and any(crl.issuer == c.issuer for c in chain):
            until = min(until, crl.next_update_utc)
    return start, until


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateRejected(f"certificate {dn_string(cert.subject)!r} not yet valid")
    if at > cert.not_valid_after_utc:
        raise CertificateRejected(
            f"certificate {dn_string(cert.subject)!r} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}")


def _check_usage(cert: x509.Certificate, purpose: str) -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise CertificateRejected("certificate key usage does not allow signatures")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if _PURPOSES[purpose] not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise CertificateRejected(f"certificate not issued for {purpose} use")


def _check_revocation(cert: x509.Certificate, anchors: TrustAnchors, at: datetime) -> None:
    for crl in anchors.crls:
        if crl.issuer != cert.issuer:
            continue
        if crl.next_update_utc is not None and at > crl.next_update_utc:
            # ours to fix (docs/security.md, "Revocation"): retried, never bounced
            raise CrlOutOfDate(f"CRL of {dn_string(crl.issuer)!r} is out of date (nextUpdate "
                               f"{crl.next_update_utc:%Y-%m-%dT%H:%M:%SZ})")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise CertificateRejected(f"certificate {dn_string(cert.subject)!r} is revoked")


def _base_context(purpose: ssl.Purpose, protocol: int, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError(f"no usable TLS 1.2 cipher suite in {ciphers!r}") from None
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def server_tls_context(cert: Path, key: Path, *, anchors: TrustAnchors | None,
                       require_client_cert: bool = True,
                       ciphers: str = MSSANTE_TLS12_SUITES,
                       request_client_cert: bool = False) -> ssl.SSLContext:
    """The listener's context: our certificate; client certificates verified (and CRLs).
    ``request_client_cert`` (with ``anchors``, without ``require_client_cert``): a client
    certificate is asked for but not required; one that is sent must verify, or the
    handshake fails (the legacy listener, where the hub may prove itself that way)."""
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH, ssl.PROTOCOL_TLS_SERVER, ciphers)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{cert}: cannot load certificate and key ({exc})") from None
    if anchors is not None:
        for p in anchors.paths:
            ctx.load_verify_locations(cafile=str(p))
        for p in anchors.crl_paths:
            ctx.load_verify_locations(cafile=str(p))
        if anchors.crl_paths:
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif request_client_cert and anchors is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_tls_context(cert: Path | None, key: Path | None, *, anchors: TrustAnchors,
                       ciphers: str = MSSANTE_TLS12_SUITES) -> ssl.SSLContext:
    """The sender's context: our client certificate; the server verified against anchors."""
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, ssl.PROTOCOL_TLS_CLIENT, ciphers)
    for p in anchors.paths:
        ctx.load_verify_locations(cafile=str(p))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{cert}: cannot load certificate and key ({exc})") from None
    return ctx
