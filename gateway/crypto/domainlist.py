"""The list of trust-space domains ("liste blanche"): read, verify, keep the last good one.

Format (namespace ``https://listeblanche.mssante.fr/schema``): a root holding
``DateDeGeneration`` and one ``Domaine`` per domain with ``Nom``, ``Description``,
``DNCertificatOperateur``, ``ResponsableContact``, ``SupportContact``, ``DateMAJ``.

Rules kept here (trust-space spec), each against a forgery tried on a running gateway:

* the list must carry an enveloped XML signature (an unsigned list is read only when the
  operator says so explicitly, ``trust.accept_unsigned_list``: a test setting), made by the
  **pinned publisher** — a configured certificate, or a configured subject and issuer — whose
  chain (dates, usage, CRL) leads to the trust anchors: any other certificate of the CA (a
  doctor's S/MIME certificate) is refused;
* the entries are read **only from what the signature covers**, the element the verifier
  returns, and only its direct ``Domaine`` children: an element placed inside the
  ``Signature`` (XML signature wrapping) or beside the signed root is never an entry;
* a list older than the newest one ever installed here (``DateDeGeneration`` going backwards)
  is refused however it arrives — imported, or copied over the file and reloaded: the newest
  date is kept beside the list (``<list>.newest``);
* a new list replaces the old one atomically (temporary file, fsync, rename) and the previous
  good copy is kept beside it.

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
class Publisher:
    """Who may sign the list: the exact certificate (``cert``, PEM or DER), or a subject and
    issuer (DN strings, compared whatever their spacing, case and attribute order)."""

    cert: Path | None = None
    subject: str = ""
    issuer: str = ""

    @property
    def configured(self) -> bool:
        return self.cert is not None or bool(self.subject)

    def check(self, cert: x509.Certificate) -> None:
        if self.cert is not None:
            try:
                raw = self.cert.read_bytes()
            except OSError as exc:
                raise TrustListError(f"{self.cert}: cannot read ({exc.strerror})") from None
            try:
                pinned = (x509.load_pem_x509_certificate(raw) if b"-----BEGIN" in raw
                          else x509.load_der_x509_certificate(raw))
            except ValueError:
                raise TrustListError(f"{self.cert}: not a certificate") from None
            if pinned != cert:
                raise TrustListError(f"list signed by {dn_string(cert.subject)!r}, not by the "
                                     "configured publisher's certificate")
        if self.subject and dn_key(self.subject) != dn_key(dn_string(cert.subject)):
            raise TrustListError(f"list signed by {dn_string(cert.subject)!r}, not by the "
                                 "configured publisher")
        if self.issuer and dn_key(self.issuer) != dn_key(dn_string(cert.issuer)):
            raise TrustListError(f"list signer's certificate issued by "
                                 f"{dn_string(cert.issuer)!r}, not the configured issuer")


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
              publisher: Publisher | None = None,
              require_signature: bool = True) -> DomainList:
        """The list in ``data``: its signature verified (required unless
        ``require_signature`` is false) and made by ``publisher``, its entries read from the
        signed content only."""
        root = _parse_xml(data)
        signed_by = None
        if root.find(f".//{{{DSIG}}}Signature") is not None:
            signed_by, root = _verify_signature(data, list(anchors), publisher or Publisher())
        elif require_signature:
            raise TrustListError("list of domains is not signed")
        if _local(root) != "ListeBlanche":
            raise TrustListError(f"list of domains: the signed element is {_local(root)!r}, "
                                 "not the ListeBlanche root")
        generated = _text(root, "DateDeGeneration")
        if not generated:
            raise TrustListError("list of domains has no DateDeGeneration")
        entries: dict[str, DomainEntry] = {}
        # direct children only: whatever sits deeper (inside a Signature, an Object) is not
        # an entry, signed or not
        for el in [*root.findall(f"{{{NS}}}Domaine"), *root.findall("Domaine")]:
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


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


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


def _verify_signature(data: bytes, anchors: list[Path], publisher: Publisher
                      ) -> tuple[str, etree._Element]:
    """Verify the enveloped signature with the certificate it carries, that certificate
    against the pinned publisher and its chain (expiry, usage, CRL) against our anchors;
    the signer's DN and the element the signature covers (what the verifier returns, never
    the document as received)."""
    import base64

    from signxml.exceptions import InvalidInput, InvalidSignature
    from signxml.verifier import XMLVerifier

    from gateway.crypto.pki import TrustAnchors, validate_chain

    if not anchors:
        raise TrustListError("list of domains is signed but no trust anchor is configured")
    if not publisher.configured:
        raise TrustListError("no publisher of the list is configured (trust.list_signer_cert, "
                             "or trust.list_signer_subject and list_signer_issuer)")
    root = _parse_xml(data)
    certs = root.findall(f".//{{{DSIG}}}X509Certificate")
    if len(certs) != 1 or not (certs[0].text or "").strip():
        raise TrustListError("list signature must carry exactly one X509Certificate")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(
            (certs[0].text or "").split())))
    except ValueError:
        raise TrustListError("list signature certificate unreadable") from None
    publisher.check(cert)
    try:
        validate_chain(cert, anchors=TrustAnchors.load(anchors), purpose="signing")
    except CertificateRejected as exc:
        raise TrustListError(f"list signer not trusted: {exc}") from None
    try:
        result = XMLVerifier().verify(data, x509_cert=cert, ignore_ambiguous_key_info=True,
                                      expect_references=1)
    except (InvalidSignature, InvalidInput) as exc:
        raise TrustListError(f"list of domains signature does not verify ({exc})") from None
    except Exception as exc:
        raise TrustListError(f"list of domains signature unreadable ({type(exc).__name__})")\
            from None
    signed = result.signed_xml  # type: ignore[union-attr]
    if signed is None:
        raise TrustListError("list of domains: the signature covers no element")
    return dn_string(cert.subject), signed


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
    """The list in force on disk (``path``), the previous good one (``path.prev``), and the
    newest generation date ever accepted here (``path.newest``), below which no list is taken
    again, whichever way it arrives."""

    def __init__(self, path: Path, *, anchors: Iterable[Path] = (),
                 publisher: Publisher | None = None, require_signature: bool = True) -> None:
        self.path = path
        self.anchors = list(anchors)
        self.publisher = publisher or Publisher()
        self.require_signature = require_signature
        self._lock = threading.Lock()
        self._current: DomainList | None = None
        self.loaded_at: datetime | None = None

    @property
    def _newest_path(self) -> Path:
        return self.path.with_name(self.path.name + ".newest")

    def _parse(self, data: bytes) -> DomainList:
        return DomainList.parse(data, anchors=self.anchors, publisher=self.publisher,
                                require_signature=self.require_signature)

    def newest(self) -> datetime | None:
        """The newest generation date accepted here (None: none recorded yet)."""
        try:
            return _date(self._newest_path.read_text("ascii").strip())
        except (OSError, UnicodeDecodeError, TrustListError):
            return None

    def _not_older(self, new: DomainList, other: DomainList | None) -> None:
        floor = max((d for d in (self.newest(), other.generated_at if other else None)
                     if d is not None), default=None)
        if floor is not None and new.generated_at < floor:
            raise TrustListError(
                f"list generated {new.generated_at:%Y-%m-%d %H:%M} is older than the newest "
                f"accepted here ({floor:%Y-%m-%d %H:%M}): refused")

    def _remember(self, listing: DomainList) -> None:
        newest = self.newest()
        if newest is None or listing.generated_at > newest:
            _write_atomically(self._newest_path,
                              listing.generated_at.strftime("%Y-%m-%dT%H:%M:%S%z").encode())

    def current(self) -> DomainList:
        with self._lock:
            if self._current is None:
                try:
                    data = self.path.read_bytes()
                except OSError as exc:
                    raise TrustListError(f"{self.path}: cannot read ({exc.strerror})") from None
                listing = self._parse(data)
                self._not_older(listing, None)  # a file copied over with an old list
                self._remember(listing)
                self._current = listing
            return self._current

    def install(self, data: bytes) -> DomainList:
        """Verify ``data`` and make it the list in force; the old one stays if refused."""
        new = self._parse(data)
        with self._lock:
            old = self._current
            if old is None and self.path.exists():
                try:
                    old = self._parse(self.path.read_bytes())
                except TrustListError:
                    old = None  # a broken list in force may be replaced by any good one
            self._not_older(new, old)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # the previous good copy, and never a moment without a list
                _write_atomically(self.path.with_name(self.path.name + ".prev"),
                                  self.path.read_bytes())
            _write_atomically(self.path, data)
            self._remember(new)
            self._current = new
            return new

    def reload(self) -> DomainList:
        """Read the file again; when it is refused (forged, older), the list in force stays
        and the error is raised for the caller to report."""
        with self._lock:
            previous, self._current = self._current, None
        try:
            return self.current()
        except TrustListError:
            with self._lock:
                self._current = previous
            raise


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
