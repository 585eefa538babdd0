"""The list of trust-space domains ("liste blanche"): read, verify, keep the last good one.

Format (namespace ``https://listeblanche.mssante.fr/schema``): a root holding
``DateDeGeneration`` and one ``Domaine`` per domain with ``Nom``, ``Description``,
``DNCertificatOperateur``, ``ResponsableContact``, ``SupportContact``, ``DateMAJ``.

Rules kept here (trust-space spec): an enveloped XML signature is verified when present (and
required when the operator says so) against the trust anchors; a list older than the one in
force (``DateDeGeneration`` going backwards) is refused; a new list replaces the old one
atomically (temporary file, fsync, rename) and the previous good copy is kept beside it.
Domain names are compared in their IDNA (punycode) form, case-insensitively.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from lxml import etree

from gateway.crypto.x509util import dn_key, dn_string
from gateway.errors import CertificateRejected, DomainNotListed, TrustListError

NS = "https://listeblanche.mssante.fr/schema"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
MAX_BYTES = 50 * 1024 * 1024


def idna(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise DomainNotListed(f"invalid domain name {domain[:80]!r}") from None


@dataclass(frozen=True)
class DomainEntry:
    name: str  # as published (may be Unicode)
    ascii_name: str  # IDNA form, lower case
    dn: str
    description: str = ""
    contact: str = ""
    support: str = ""
    updated: str = ""


@dataclass(frozen=True)
class DomainList:
    generated_at: datetime
    entries: dict[str, DomainEntry] = field(default_factory=dict)  # by ascii name
    signed_by: str | None = None

    def lookup(self, domain: str) -> DomainEntry | None:
        return self.entries.get(idna(domain))

    def is_listed(self, domain: str) -> bool:
        try:
            return self.lookup(domain) is not None
        except DomainNotListed:
            return False

    def check_client(self, domain: str, der_certificate: bytes) -> str:
        """The certificate's DN must be the DN published for ``domain`` (any, when "")."""
        try:
            cert = x509.load_der_x509_certificate(der_certificate)
        except ValueError:
            raise CertificateRejected("client certificate unreadable") from None
        subject = dn_string(cert.subject)
        key = dn_key(subject)
        if not domain:
            if any(dn_key(e.dn) == key for e in self.entries.values()):
                return subject
            raise CertificateRejected("client certificate is no listed operator's")
        entry = self.lookup(domain)
        if entry is None:
            raise DomainNotListed(f"domain {idna(domain)} is not on the list")
        if dn_key(entry.dn) != key:
            raise CertificateRejected(
                f"client certificate DN does not match the list for {entry.ascii_name}")
        return subject

    @classmethod
    def parse(cls, data: bytes, *, anchors: Iterable[Path] = (),
              require_signature: bool = False) -> DomainList:
        root = _parse_xml(data)
        signed_by = None
        if root.find(f".//{{{DSIG}}}Signature") is not None:
            signed_by = _verify_signature(data, list(anchors))
        elif require_signature:
            raise TrustListError("list of domains is not signed")
        generated = _text(root, "DateDeGeneration")
        if not generated:
            raise TrustListError("list of domains has no DateDeGeneration")
        entries: dict[str, DomainEntry] = {}
        for el in root.iter(f"{{{NS}}}Domaine", "Domaine"):
            name = _text(el, "Nom")
            if not name:
                raise TrustListError("a Domaine has no Nom")
            try:
                ascii_name = idna(name)
            except DomainNotListed:
                raise TrustListError(f"invalid domain name in list: {name[:80]!r}") from None
            entries[ascii_name] = DomainEntry(
                name=name, ascii_name=ascii_name, dn=_text(el, "DNCertificatOperateur"),
                description=_text(el, "Description"), contact=_text(el, "ResponsableContact"),
                support=_text(el, "SupportContact"), updated=_text(el, "DateMAJ"))
        return cls(generated_at=_date(generated), entries=entries, signed_by=signed_by)


def _parse_xml(data: bytes) -> etree._Element:
    if len(data) > MAX_BYTES:
        raise TrustListError(f"list of domains larger than {MAX_BYTES} bytes")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise TrustListError(f"list of domains is not well-formed XML (line {exc.lineno})")\
            from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise TrustListError("list of domains carries a DOCTYPE: refused")
    return root


def _text(el: etree._Element, name: str) -> str:
    found = el.find(f"{{{NS}}}{name}")
    if found is None:
        found = el.find(name)
    return (found.text or "").strip() if found is not None else ""


def _date(value: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            when = datetime.strptime(value.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    raise TrustListError(f"unreadable DateDeGeneration {value[:40]!r}")


def _verify_signature(data: bytes, anchors: list[Path]) -> str:
    """Verify the enveloped signature with the certificate it carries, then that
    certificate's chain (expiry, usage, CRL) against our anchors."""
    import base64

    from signxml.exceptions import InvalidInput, InvalidSignature
    from signxml.verifier import XMLVerifier

    from gateway.crypto.pki import TrustAnchors, validate_chain

    if not anchors:
        raise TrustListError("list of domains is signed but no trust anchor is configured")
    root = _parse_xml(data)
    cert_el = root.find(f".//{{{DSIG}}}X509Certificate")
    text = cert_el.text if cert_el is not None else None
    if not text or not text.strip():
        raise TrustListError("list signature carries no X509Certificate")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except ValueError:
        raise TrustListError("list signature certificate unreadable") from None
    try:
        validate_chain(cert, anchors=TrustAnchors.load(anchors), purpose="signing")
    except CertificateRejected as exc:
        raise TrustListError(f"list signer not trusted: {exc}") from None
    try:
        XMLVerifier().verify(data, x509_cert=cert, ignore_ambiguous_key_info=True)
    except (InvalidSignature, InvalidInput) as exc:
        raise TrustListError(f"list of domains signature does not verify ({exc})") from None
    except Exception as exc:
        raise TrustListError(f"list of domains signature unreadable ({type(exc).__name__})")\
            from None
    return dn_string(cert.subject)


def write_list(entries: Iterable[tuple[str, str]], *, generated: datetime,
               signer: tuple[Path, Path] | None = None) -> bytes:
    """A list in the national format (used by `pki demo` and the tests)."""
    root = etree.Element(f"{{{NS}}}ListeBlanche", nsmap={None: NS})  # type: ignore[dict-item]
    etree.SubElement(root, f"{{{NS}}}DateDeGeneration").text = generated.strftime(
        "%Y-%m-%dT%H:%M:%S%z")
    for name, dn in entries:
        d = etree.SubElement(root, f"{{{NS}}}Domaine")
        for tag, value in (("Nom", name), ("Description", f"Opérateur {name}"),
                           ("DNCertificatOperateur", dn),
                           ("ResponsableContact", f"responsable@{idna(name)}"),
                           ("SupportContact", f"support@{idna(name)}"),
                           ("DateMAJ", generated.strftime("%Y-%m-%d"))):
            etree.SubElement(d, f"{{{NS}}}{tag}").text = value
    if signer is not None:
        from signxml import methods
        from signxml.signer import XMLSigner

        cert_pem, key_pem = signer[0].read_bytes(), signer[1].read_bytes()
        root = XMLSigner(method=methods.enveloped, digest_algorithm="sha256",
                         signature_algorithm="rsa-sha256").sign(root, key=key_pem,
                                                                cert=cert_pem.decode())
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


class DomainListStore:
    """The list in force on disk (``path``) and the previous good one (``path.prev``)."""

    def __init__(self, path: Path, *, anchors: Iterable[Path] = (),
                 require_signature: bool = False) -> None:
        self.path = path
        self.anchors = list(anchors)
        self.require_signature = require_signature
        self._lock = threading.Lock()
        self._current: DomainList | None = None
        self.loaded_at: datetime | None = None

    def current(self) -> DomainList:
        with self._lock:
            if self._current is None:
                try:
                    data = self.path.read_bytes()
                except OSError as exc:
                    raise TrustListError(f"{self.path}: cannot read ({exc.strerror})") from None
                self._current = DomainList.parse(data, anchors=self.anchors,
                                                 require_signature=self.require_signature)
            return self._current

    def install(self, data: bytes) -> DomainList:
        """Verify ``data`` and make it the list in force; the old one stays if refused."""
        new = DomainList.parse(data, anchors=self.anchors,
                               require_signature=self.require_signature)
        with self._lock:
            old = self._current
            if old is None and self.path.exists():
                try:
                    old = DomainList.parse(self.path.read_bytes(), anchors=self.anchors)
                except TrustListError:
                    old = None  # a broken list in force may be replaced by any good one
            if old is not None and new.generated_at < old.generated_at:
                raise TrustListError(
                    f"list generated {new.generated_at:%Y-%m-%d %H:%M} is older than the one "
                    f"in force ({old.generated_at:%Y-%m-%d %H:%M}): refused")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if self.path.exists():
                os.replace(self.path, self.path.with_name(self.path.name + ".prev"))
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._current = new
            return new

    def reload(self) -> DomainList:
        with self._lock:
            self._current = None
        return self.current()
