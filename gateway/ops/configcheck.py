"""`passerelle config check`: everything a configuration names is there, readable and coherent.

Each check yields `Problem`s (``ERROR``: the daemon would refuse to start or fail at work;
``WARNING``: it will run, but someone should look).  Messages name the key and the file and
say what is wrong; they never quote file contents.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from lxml import etree

from gateway import config
from gateway.crypto.domainlist import DomainList
from gateway.errors import ConfigError, ConfigProblems, PasserelleError

EXPIRY_WARNING = timedelta(days=30)
LIST_MAX_AGE = timedelta(hours=48)
_FPR = re.compile(r"[0-9A-F]{40}")


@dataclass(frozen=True)
class Problem:
    level: str  # "ERROR" or "WARNING"
    key: str  # the configuration key, e.g. "trust.server_cert"
    message: str  # what is wrong, naming the file: no contents

    def __str__(self) -> str:
        return f"{self.level} {self.key}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def _error(key: str, message: str) -> Problem:
    return Problem("ERROR", key, message)


def _warning(key: str, message: str) -> Problem:
    return Problem("WARNING", key, message)


def _read(key: str, path: Path) -> tuple[bytes | None, Problem | None]:
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return None, _error(key, f"{path}: cannot read ({exc.strerror or exc})")


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


def _certificates(
    key: str, path: Path, now: datetime
) -> tuple[list[x509.Certificate], list[Problem]]:
    data, problem = _read(key, path)
    if data is None:
        return [], [problem] if problem else []
    try:
        certs = (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                 else [x509.load_der_x509_certificate(data)])  # fmt: skip
    except ValueError:
        return [], [_error(key, f"{path}: not a PEM or DER X.509 certificate")]
    problems = []
    for cert in certs:
        label = "certificate" if len(certs) == 1 else f"certificate serial {cert.serial_number:x}"
        if cert.not_valid_after_utc < now:
            ended = _day(cert.not_valid_after_utc)
            problems.append(_error(key, f"{path}: {label} expired on {ended}"))
        elif cert.not_valid_before_utc > now:
            problems.append(
                _error(key, f"{path}: {label} not valid before {_day(cert.not_valid_before_utc)}")
            )
        elif cert.not_valid_after_utc - now < EXPIRY_WARNING:
            days = (cert.not_valid_after_utc - now).days
            problems.append(_warning(
                key, f"{path}: {label} expires on {_day(cert.not_valid_after_utc)} (in {days} days)"
            ))  # fmt: skip
    return certs, problems


def _private_key(key: str, path: Path) -> tuple[PrivateKeyTypes | None, Problem | None]:
    data, problem = _read(key, path)
    if data is None:
        return None, problem
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None), None
        return serialization.load_der_private_key(data, password=None), None
    except TypeError:
        return None, _error(key, f"{path}: private key is encrypted (a passphrase cannot be given)")
    except (ValueError, Exception):  # cryptography raises several types for garbage
        return None, _error(key, f"{path}: not a PEM or DER private key")


def _pair(s: config.TrustSettings, role: str, now: datetime) -> Iterator[Problem]:
    cert_path: Path | None = getattr(s, f"{role}_cert")
    key_path: Path | None = getattr(s, f"{role}_key")
    ck, kk = f"trust.{role}_cert", f"trust.{role}_key"
    if cert_path is None and key_path is None:
        return
    if cert_path is None or key_path is None:
        missing = ck if cert_path is None else kk
        yield _error(missing, f"is not set but {kk if cert_path is None else ck} is")
        return
    certs, problems = _certificates(ck, cert_path, now)
    yield from problems
    private, problem = _private_key(kk, key_path)
    if problem:
        yield problem
    if certs and private is not None:
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if certs[0].public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
            yield _error(kk, f"{key_path}: does not match the certificate in {cert_path}")


def _local(el: etree._Element) -> str:
    tag = el.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _domain_list(s: config.Settings, now: datetime) -> Iterator[Problem]:
    """The list as the daemon reads it (signature, pinned publisher, signed content only,
    not older than the newest accepted), then its age."""
    from gateway.translate.factory import domain_list_store

    key = "trust.domain_list"
    store = domain_list_store(s)
    assert store is not None
    try:
        listing = DomainList.parse(store.path.read_bytes(), anchors=store.anchors,
                                   publisher=store.publisher,
                                   require_signature=store.require_signature)
    except OSError as exc:
        yield _error(key, f"{store.path}: cannot read ({exc.strerror})")
        return
    except PasserelleError as exc:
        yield _error(key, f"{store.path}: {exc}")
        return
    if not listing.entries:
        yield _error(key, f"{store.path}: no Domaine entry")
    newest = store.newest()
    if newest is not None and listing.generated_at < newest:
        yield _error(key, f"{store.path}: older than the newest list accepted here "
                          f"({newest:%Y-%m-%d %H:%M}): the daemon will refuse it")
    if s.trust.accept_unsigned_list:
        yield _warning("trust.accept_unsigned_list", "an unsigned list of domains is read: "
                       "for tests only, never in production")
    age = now - listing.generated_at
    if age > LIST_MAX_AGE:
        yield _warning(
            key, f"{store.path}: list generated {age.total_seconds() / 3600:.0f} h ago "
                 f"(max {LIST_MAX_AGE.total_seconds() / 3600:.0f} h): refresh it"
        )  # fmt: skip


def _crl(path: Path, now: datetime) -> Iterator[Problem]:
    key = "trust.crls"
    data, problem = _read(key, path)
    if data is None:
        yield from [problem] if problem else []
        return
    try:
        crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
               else x509.load_der_x509_crl(data))  # fmt: skip
    except ValueError:
        yield _error(key, f"{path}: not a PEM or DER CRL")
        return
    nxt = crl.next_update_utc
    if nxt is not None and nxt < now:
        yield _error(key, f"{path}: CRL out of date since {_day(nxt)} (nextUpdate passed)")


def _legacy(s: config.LegacyCryptoSettings) -> Iterator[Problem]:
    if s.adapter in ("auto", "openpgp", "rnp", "sop"):
        if s.gnupg_home is None:
            yield _error("legacy.gnupg_home", f"is not set (needed by the {s.adapter} adapter)")
        elif not s.gnupg_home.is_dir():
            yield _error("legacy.gnupg_home", f"{s.gnupg_home}: not a directory")
        elif not os.access(s.gnupg_home, os.R_OK | os.X_OK):
            yield _error("legacy.gnupg_home", f"{s.gnupg_home}: not readable")
        if s.gateway_fingerprint and not _FPR.fullmatch(s.gateway_fingerprint):
            yield _error("legacy.gateway_fingerprint", "must be 40 hex digits")
        elif not s.gateway_fingerprint:
            yield _error("legacy.gateway_fingerprint", "is not set")
        if shutil.which("gpg") is None:
            yield _error("legacy.adapter", f"{s.adapter} adapter needs gpg on PATH; none found")
        if s.adapter == "sop":
            yield from _sop(s)
        if s.adapter in ("auto", "rnp"):
            yield from _rnp(s)
    else:
        for name in ("open_command", "seal_command"):
            argv: tuple[str, ...] = getattr(s, name)
            if not argv:
                yield _error(f"legacy.{name}", "is not set (needed by the command adapter)")
            elif shutil.which(argv[0]) is None:
                yield _error(f"legacy.{name}", f"{argv[0]}: not found or not executable")
    if s.key_dir is not None and not s.key_dir.is_dir():
        yield _error("legacy.key_dir", f"{s.key_dir}: not a directory")


def _sop(s: config.LegacyCryptoSettings) -> Iterator[Problem]:
    """The sop command runs and the gateway's key can be handed to it (no passphrase)."""
    from gateway.crypto.sop import SopCipher
    from gateway.errors import CryptoToolError

    if shutil.which(s.sop_command[0]) is None:
        yield _error("legacy.sop_command", f"{s.sop_command[0]}: not found or not executable "
                     "(Debian package sqop)")
        return
    if s.gnupg_home is None or not s.gnupg_home.is_dir() or not _FPR.fullmatch(
            s.gateway_fingerprint) or shutil.which("gpg") is None:
        return  # said above
    try:
        SopCipher(s.gnupg_home, gateway_fingerprint=s.gateway_fingerprint,
                  command=s.sop_command, timeout=s.timeout)
    except CryptoToolError as exc:
        yield _error("legacy.adapter", f"sop: {exc}")


def _rnp(s: config.LegacyCryptoSettings) -> Iterator[Problem]:
    """librnp loads and can use the gateway's key (no passphrase); with "auto", a warning
    naming why the gpg adapter is used instead."""
    from gateway.crypto import rnp
    from gateway.errors import CryptoToolError
    from gateway.translate.factory import resolve_adapter

    if s.gnupg_home is None or not s.gnupg_home.is_dir() or not _FPR.fullmatch(
            s.gateway_fingerprint) or shutil.which("gpg") is None:
        return  # said above
    if s.adapter == "auto":
        used, why = resolve_adapter(s)
        if used != "rnp":
            yield _warning("legacy.adapter", f"auto: {why}; the gpg adapter is used "
                           "(several times librnp's CPU per part)")
        return
    try:
        rnp.RnpCipher(s.gnupg_home, gateway_fingerprint=s.gateway_fingerprint,
                      timeout=s.timeout)
    except CryptoToolError as exc:
        yield _error("legacy.adapter", f"rnp: {exc}")


def legacy_adapter(path: Path) -> str:
    """The legacy adapter ``passerelle serve`` would use with the configuration at ``path``
    (``"auto"`` resolved), or "" when the configuration does not load."""
    from gateway.translate.factory import resolve_adapter

    try:
        return resolve_adapter(config.load(path).legacy)[0]
    except ConfigError:
        return ""


def _mappings(s: config.Settings) -> Iterator[Problem]:
    from gateway.directory.addresses import AddressBook
    from gateway.documents.codes import load_tables

    book: AddressBook | None = None
    try:
        book = AddressBook.load(s.addresses)
    except ConfigError as exc:
        yield _error("mappings.addresses", str(exc))
    else:
        for user in book.users():
            if not _FPR.fullmatch(user.legacy_fingerprint):  # AddressBook checks too: belt
                yield _error("mappings.addresses", f"{s.addresses}: a legacy_fingerprint is "
                                                   "not 40 hex digits")  # fmt: skip
        if len(book) == 0:
            yield _warning("mappings.addresses", f"{s.addresses}: no user")
        v1 = sum(1 for user in book.users() if user.mode(s.legacy.default_mode) == "v1")
        if v1 and not s.hub.configured:
            yield _warning("legacy.hub", f"{s.addresses}: {v1} first-generation (v1) user(s) "
                           "but the legacy hub's authentication is not configured "
                           "([legacy.hub] client_subject/client_fingerprint or auth_file): "
                           "their unsigned messages will all be bounced")
    if not s.mappings_dir.is_dir():
        yield _error("mappings.dir", f"{s.mappings_dir}: not a directory")
        return
    try:
        tables = load_tables(s.mappings_dir)
    except ConfigError as exc:
        yield _error("mappings.dir", str(exc))
        return
    if book is None:
        return
    # An address-book user without an RPPS is an organisation: a lab (or a service).  A lab
    # without a labs.csv row has every HPRIM report quarantined (no author is made up).
    labs = s.mappings_dir / "labs.csv"
    for user in book.users():
        if not user.rpps and tables.labs.lookup(user.legacy_address) is None:
            yield _warning("mappings.labs", f"{user.legacy_address}: no RPPS (a lab or a "
                           f"service) and no row in {labs}: its HPRIM reports will be "
                           "quarantined")
    known = {u.legacy_address.lower() for u in book.users()}
    for lab in tables.labs.by_address.values():
        if lab.legacy_address.lower() not in known:
            yield _warning("mappings.labs", f"{labs}: {lab.legacy_address} is not in the "
                           "address book: its row is never used")


def _hub(h: config.HubSettings) -> Iterator[Problem]:
    """The legacy hub's credentials and anchors, when configured."""
    from gateway.smtp.server import HubGate

    if h.auth_file is not None:
        try:
            HubGate.load(auth_file=h.auth_file)
        except ConfigError as exc:
            yield _error("legacy.hub.auth_file", str(exc))
        else:
            if h.auth_file.stat().st_mode & 0o077:
                yield _warning("legacy.hub.auth_file", f"{h.auth_file}: readable by others "
                               "than its owner (chmod 600)")
    if h.certificate and not h.anchors:
        yield _error("legacy.hub.anchors", "no anchor to verify the hub's certificate "
                     "(set it, or [trust] anchors)")


def _state(s: config.Settings) -> Iterator[Problem]:
    key = "gateway.state_dir"
    if s.state_dir.exists():
        if not s.state_dir.is_dir():
            yield _error(key, f"{s.state_dir}: not a directory")
        elif not os.access(s.state_dir, os.W_OK | os.X_OK):
            yield _error(key, f"{s.state_dir}: not writable")
    elif not s.state_dir.parent.is_dir():
        yield _error(key, f"{s.state_dir}: neither it nor its parent directory exists")
    else:
        yield _warning(key, f"{s.state_dir}: does not exist yet (it will be created)")
    url = s.spool_url
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        yield _error("spool.url", "must start with sqlite:/// or postgresql://")
    elif url.startswith(("postgresql://", "postgres://")):
        import psycopg

        from gateway.pgconn import safe_url

        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            why = " ".join(str(exc).split())[:200]
            yield _error("spool.url", f"cannot connect to {safe_url(url)}: {why}")


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def _at_rest(s: config.Settings) -> Iterator[Problem]:
    """The keyring sealing the spool, and the modes of what holds messages: the state
    directory 0700, its databases (and their -wal, -shm) and spill files 0600."""
    from gateway.atrest import Keyring, keyring_path

    ring = keyring_path(s.keys_file)
    if ring is None:
        yield _warning("keys.file", "no keyring: messages are stored in clear (make one with "
                       "`passerelle keys new`, give it as [keys] file or the systemd "
                       "credential passerelle-keys)")
    else:
        try:
            Keyring.load(ring)
        except ConfigError as exc:
            yield _error("keys.file", str(exc))
        else:
            mode = _mode(ring)
            if mode is not None and mode & 0o077:
                yield _error("keys.file", f"{ring}: mode {mode:04o}, readable by others "
                             "(chmod 600)")
            if ring.resolve().is_relative_to(s.state_dir.resolve()):
                yield _warning("keys.file", f"{ring}: inside the state directory, so a backup "
                               "of the spool holds its key (keep the keyring apart)")
    mode = _mode(s.state_dir)
    if mode is not None and s.state_dir.is_dir():
        if mode & 0o077:
            yield _error("gateway.state_dir", f"{s.state_dir}: mode {mode:04o}, open to "
                         "others (chmod 700)")
        spill = s.state_dir / "spill"
        files = list(spill.iterdir()) if spill.is_dir() else []
        if not s.spool_url.startswith(("postgresql://", "postgres://")):
            from gateway.spool.sqlitedb import spool_path

            db = spool_path(s.journal_url)
            files += [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        loose = sorted(p.name for p in files if (_mode(p) or 0) & 0o077)
        if loose:
            yield _error("gateway.state_dir", f"{s.state_dir}: {', '.join(loose[:5])} readable "
                         "by others (chmod 600)")


def check(path: Path, *, now: datetime | None = None) -> list[Problem]:
    """Every problem with the configuration at ``path`` (empty: all good)."""
    now = now or datetime.now(UTC)
    try:
        s = config.load(path)  # exactly serve's validation: every problem of the file, named
    except ConfigProblems as exc:
        return [_error(key, why) for key, why in exc.problems]
    except ConfigError as exc:
        return [_error("config", str(exc))]
    problems: list[Problem] = []
    problems += _state(s)
    problems += _at_rest(s)
    problems += _legacy(s.legacy)
    problems += _mappings(s)
    problems += _hub(s.hub)
    for role in ("signing", "server", "client"):
        problems += _pair(s.trust, role, now)
    for key, paths in (("trust.chain", s.trust.chain), ("trust.anchors", s.trust.anchors)):
        for p in paths:
            problems += _certificates(key, p, now)[1]
    if not s.trust.anchors:
        problems.append(_warning("trust.anchors", "none set: no trust-space peer can be verified"))
    for p in s.trust.crls:
        problems += _crl(p, now)
    if s.trust.domain_list is not None:
        problems += _domain_list(s, now)
    else:
        problems.append(_warning("trust.domain_list", "not set: every trust domain is refused"))
    return problems
