"""Build the translation pipeline from the configuration (shared by the CLI and the daemon)."""

from __future__ import annotations

from gateway.config import LegacyCryptoSettings, Settings
from gateway.crypto import rnp
from gateway.crypto.command import CommandCipher
from gateway.crypto.domainlist import DomainListStore, Publisher
from gateway.crypto.legacy import LegacyCrypto, PartCipher
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.pki import TrustAnchors
from gateway.crypto.smime import SigningIdentity, Smime
from gateway.crypto.sop import SopCipher
from gateway.directory.addresses import AddressBook
from gateway.directory.resolve import DirectoryResolver, Preference
from gateway.documents.codes import load_tables
from gateway.errors import ConfigError, CryptoToolError
from gateway.log import allow_words, get_logger
from gateway.translate.pipeline import Translator

log = get_logger("passerelle.translate.factory")
allow_words("openpgp", "rnp_unusable")


def legacy_cipher(settings: Settings) -> PartCipher:
    leg = settings.legacy
    cap = settings.daemon.decrypted_part_limit  # what one part may decrypt to
    if leg.adapter == "command":
        if not leg.open_command or not leg.seal_command:
            raise ConfigError("legacy.adapter = \"command\" needs open_command and seal_command")
        return CommandCipher(open_argv=leg.open_command, seal_argv=leg.seal_command,
                             key_dir=leg.key_dir, timeout=leg.timeout,
                             gateway_key=leg.gateway_fingerprint,
                             open_attachment_argv=leg.open_attachment_command,
                             seal_attachment_argv=leg.seal_attachment_command,
                             armor_markers=leg.armor_markers,
                             attachment_suffixes=leg.attachment_suffixes,
                             sealed_suffix=leg.sealed_suffix,
                             signer_pattern=leg.signer_pattern,
                             exit_codes=leg.exit_codes, max_output=cap)
    if leg.gnupg_home is None or not leg.gateway_fingerprint:
        raise ConfigError("legacy.gnupg_home and legacy.gateway_fingerprint are required")
    if leg.adapter == "sop":
        return SopCipher(leg.gnupg_home, gateway_fingerprint=leg.gateway_fingerprint,
                         command=leg.sop_command, timeout=leg.timeout, max_output=cap)
    if leg.adapter == "rnp" or (leg.adapter == "auto" and rnp.available()):
        try:
            return rnp.RnpCipher(leg.gnupg_home, gateway_fingerprint=leg.gateway_fingerprint,
                                 timeout=leg.timeout, max_output=cap)
        except CryptoToolError:
            if leg.adapter == "rnp":
                raise
            # e.g. a gateway key with a passphrase: `config check` says why
            log.warning("legacy.adapter_auto", adapter="openpgp", reason="rnp_unusable")
    return OpenPgpCipher(leg.gnupg_home, gateway_fingerprint=leg.gateway_fingerprint,
                         timeout=leg.timeout, max_output=cap)


def resolve_adapter(leg: LegacyCryptoSettings) -> tuple[str, str]:
    """The adapter ``legacy.adapter`` gives, ``"auto"`` resolved as :func:`legacy_cipher` does,
    and why ``"auto"`` is not librnp ("" when it is, or was not asked)."""
    if leg.adapter != "auto":
        return leg.adapter, ""
    if not rnp.available():
        return "openpgp", "librnp is not installed (Debian package librnp0)"
    if leg.gnupg_home is None or not leg.gateway_fingerprint:
        return "rnp", ""  # no keys to try it on: said by the checks of gnupg_home
    try:
        rnp.RnpCipher(leg.gnupg_home, gateway_fingerprint=leg.gateway_fingerprint,
                      timeout=leg.timeout)
    except CryptoToolError as exc:
        return "openpgp", str(exc)
    return "rnp", ""


def trust_anchors(settings: Settings) -> TrustAnchors:
    return TrustAnchors.load(settings.trust.anchors, settings.trust.crls)


def build_translator(settings: Settings, *, book: AddressBook | None = None,
                     anchors: TrustAnchors | None = None) -> Translator:
    """The translator the settings describe; ``book``, ``anchors``: an address book, trust
    anchors and CRLs already loaded (the daemon's, so that its workers never read a file
    the daemon refused on reload)."""
    t = settings.trust
    if t.signing_cert is None or t.signing_key is None:
        raise ConfigError("trust.signing_cert and trust.signing_key are required")
    identity = SigningIdentity.load(t.signing_cert, t.signing_key, t.chain)
    return Translator(
        book=book if book is not None else AddressBook.load(settings.addresses),
        legacy=LegacyCrypto(legacy_cipher(settings),
                            max_plaintext=settings.daemon.decrypted_message_limit),
        smime=Smime(identity, anchors if anchors is not None else trust_anchors(settings)),
        tables=load_tables(settings.mappings_dir),
        domain=settings.domain,
        accept_unsigned=t.accept_unsigned,
        default_legacy_mode=settings.legacy.default_mode,
        directory=directory_resolver(settings),
    )


def directory_resolver(settings: Settings) -> DirectoryResolver:
    d = settings.directory
    return DirectoryResolver(settings.directory_target, domain=settings.domain,
                             preference=Preference(d.types, d.preferred_domains),
                             hprim_alias=d.hprim_alias)


def domain_list_store(settings: Settings) -> DomainListStore | None:
    """The list of domains as configured: where it lives, the anchors its signer chains to,
    the pinned publisher, and whether an unsigned list is read (tests only)."""
    t = settings.trust
    if t.domain_list is None:
        return None
    return DomainListStore(
        t.domain_list, anchors=t.anchors,
        publisher=Publisher(t.list_signer_cert, t.list_signer_subject, t.list_signer_issuer),
        require_signature=not t.accept_unsigned_list)
