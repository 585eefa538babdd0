"""Small X.509 helpers shared by the PKI, S/MIME and the test world (no policy here)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from gateway.errors import ConfigError

# The order the list of domains writes DNs in: CN=…,OU=…,O=…,ST=…,C=FR
_LABELS = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
}


def dn_string(name: x509.Name) -> str:
    """A DN as the list of domains writes it: most specific first, ``CN=…,OU=…,…,C=FR``."""
    parts = []
    for rdn in reversed(list(name.rdns)):
        for attr in rdn:
            label = _LABELS.get(attr.oid, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.decode()
            parts.append(f"{label}={value}")
    return ",".join(parts)


def dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    """A comparable form of a DN string: attribute order, spacing and case do not matter."""
    pairs = []
    for piece in _split_dn(dn):
        label, _, value = piece.partition("=")
        pairs.append((label.strip().upper(), " ".join(value.split()).casefold()))
    return tuple(sorted(pairs))


def _split_dn(dn: str) -> list[str]:
    out: list[str] = []
    cur = ""
    depth = 0
    escaped = False
    for ch in dn:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            cur += ch
        elif ch == ")":
            depth = max(0, depth - 1)
            cur += ch
        elif ch in ",;" and depth == 0 and "=" in cur:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ConfigError(f"{path}: not a certificate") from None


def load_certificate(path: Path) -> x509.Certificate:
    return load_certificates(path)[0]


def load_private_key(path: Path) -> PrivateKeyTypes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not an unencrypted PEM private key") from None


def days_left(cert: x509.Certificate, at: datetime | None = None) -> float:
    at = at or datetime.now(UTC)
    return (cert.not_valid_after_utc - at).total_seconds() / 86400
