"""`passerelle pki demo`: a complete, self-consistent test world built in seconds.

A national-style CA with its CRL; the gateway's server, client and S/MIME signing
certificates; two other operators (and one with an internationalised domain name); the legacy
hub's client certificate; the certificates the failure tests need (revoked, expired, from
another CA, DN not listed); a list of domains in the national format, signed with an
enveloped XML signature; OpenPGP keys for the gateway and a handful of legacy users (plus an
expired and a revoked one), with a GnuPG home for the gateway and one per user; the address
book; and a configuration file that ties it together.  Used by the tests, the demo and the
benchmark — never in production.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.atrest import Keyring
from gateway.crypto.domainlist import write_list
from gateway.errors import ConfigError

GATEWAY_DOMAIN = "legacy.mssante.example"
OPERATORS = {
    "gateway": GATEWAY_DOMAIN,
    "hopital-a": "hopital-a.mssante.example",
    "clinique-b": "clinique-b.mssante.example",
    "medecins-c": "médecins-c.mssante.example",
}


@dataclass(frozen=True)
class LegacyUserSpec:
    key: str  # short name, also the GnuPG home name
    legacy_address: str
    trust_address: str
    display_name: str
    rpps: str
    charset: str
    hprim_code: str


USERS = (
    LegacyUserSpec("dupont", "jean.DUPONT@medical33.legacy.example",
                   "jean.dupont@legacy.mssante.example", "Dr Jean Dupont", "10001234567",
                   "mac_roman", "DUPJ33"),
    LegacyUserSpec("martin", "marie.MARTIN@medical75.legacy.example",
                   "marie.martin@legacy.mssante.example", "Dr Marie Martin", "10009876543",
                   "cp1252", "MARM75"),
    LegacyUserSpec("biolab", "labo.BIOLAB@medical69.legacy.example",
                   "labo.biolab@legacy.mssante.example", "Laboratoire Biolab", "",
                   "cp850", "BIOLAB"),
    LegacyUserSpec("durand", "paul.DURAND@medical13.legacy.example",
                   "paul.durand@legacy.mssante.example", "Dr Paul Durand", "10005550123",
                   "utf-8", "DURP13"),
    LegacyUserSpec("petit", "claire.PETIT@medical59.legacy.example",
                   "claire.petit@legacy.mssante.example", "Dr Claire Petit", "10007770456",
                   "cp1252", "PETC59"),
)
EXPIRED_USER = LegacyUserSpec("perime", "alain.PERIME@medical21.legacy.example",
                              "alain.perime@legacy.mssante.example", "Dr Alain Périmé", "",
                              "cp1252", "PERA21")
REVOKED_USER = LegacyUserSpec("revoque", "rose.REVOQUE@medical44.legacy.example",
                              "rose.revoque@legacy.mssante.example", "Dr Rose Révoqué", "",
                              "cp1252", "REVR44")


@dataclass
class World:
    """Paths of everything built (all absolute); serialised as world.json."""

    root: Path
    ca_cert: Path
    ca_key: Path
    crl: Path
    evil_ca_cert: Path
    certs: dict[str, dict[str, str]] = field(default_factory=dict)  # name → {cert, key, dn}
    domain_list: Path = Path()
    domain_list_unsigned: Path = Path()
    gnupg_gateway: Path = Path()
    gnupg_users: dict[str, str] = field(default_factory=dict)  # user key → home
    fingerprints: dict[str, str] = field(default_factory=dict)  # user key / "gateway" → fpr
    addresses: Path = Path()
    config: Path = Path()

    def cert(self, name: str) -> Path:
        return Path(self.certs[name]["cert"])

    def key(self, name: str) -> Path:
        return Path(self.certs[name]["key"])

    def dn(self, name: str) -> str:
        return self.certs[name]["dn"]

    def write_crl(self, path: Path, revoked: Sequence[str] = (), *,
                  next_update: datetime | None = None,
                  last_update: datetime | None = None) -> Path:
        """A new CRL of this world's CA into ``path``: the certificates named in
        ``revoked`` (names of :attr:`certs`) revoked, issued at ``last_update`` (an hour
        ago) and valid until ``next_update`` (a week from now; a past time makes an
        expired CRL) — what the CA publishes when it revokes an operator's certificate."""
        now = datetime.now(UTC)
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        issuer = x509.load_pem_x509_certificate(self.ca_cert.read_bytes()).subject
        until = next_update or now + timedelta(days=7)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
                   .last_update(last_update or min(now - timedelta(hours=1),
                                                   until - timedelta(days=1)))
                   .next_update(until))
        for name in revoked:
            serial = x509.load_pem_x509_certificate(self.cert(name).read_bytes()).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - timedelta(minutes=1)).build())
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM))
        tmp.replace(path)  # as an operator's refresh job does: never half a file
        return path

    def write_config(self, path: Path, state: Path,
                     tables: dict[str, dict[str, object]]) -> Path:
        """This world's configuration with its state in ``state`` and more TOML tables
        (``{"listen.legacy": {"port": 2525}, "routes": {...}}``), written to ``path``: how the
        tests, the demo and the benchmarks run a gateway in the world.  A table the world's
        configuration already has (``{"legacy": {"adapter": "sop"}}``) has the keys given
        replaced or added."""
        text = self.config.read_text("utf-8").replace('state_dir = "state"',
                                                      f'state_dir = "{state}"')
        for name, values in tables.items():
            lines = [f"{k if k.isidentifier() else _toml(k)} = {_toml(v)}"
                     for k, v in values.items()]
            header = f"[{name}]\n"
            if header not in text:
                text += header + "".join(f"{line}\n" for line in lines)
                continue
            head, _, rest = text.partition(header)
            end = rest.find("\n[")
            body, tail = (rest, "") if end < 0 else (rest[:end + 1], "\n" + rest[end + 1:])
            kept = [line for line in body.splitlines()
                    if line and line.partition(" = ")[0] not in values]
            text = head + header + "".join(f"{line}\n" for line in kept + lines) + tail
        path.write_text(text, "utf-8")
        return path

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]

    @classmethod
    def load(cls, path: Path) -> World:
        data = json.loads(path.read_text("utf-8"))
        for key in ("root", "ca_cert", "ca_key", "crl", "evil_ca_cert", "domain_list",
                    "domain_list_unsigned", "gnupg_gateway", "addresses", "config"):
            data[key] = Path(data[key])
        return cls(**data)


def _toml(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(cn: str, ou: str, o: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Paris (75)"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class _Ca:
    def __init__(self, name: x509.Name, now: datetime) -> None:
        self.key = _key()
        self.name = name
        self.now = now
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, subject: x509.Name, *, usage: str, sans: list[x509.GeneralName] | None = None,
              not_before: datetime | None = None, not_after: datetime | None = None,
              ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        key = _key()
        eku = {
            "server": [ExtendedKeyUsageOID.SERVER_AUTH],
            "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
            "signing": [ExtendedKeyUsageOID.EMAIL_PROTECTION],
            "org": [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION],
        }[usage]
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before or self.now - timedelta(days=1))
            .not_valid_after(not_after or self.now + timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=usage in (
                "signing", "org"), key_encipherment=True, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
                decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def crl(self, revoked: list[x509.Certificate]) -> x509.CertificateRevocationList:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.name)
                   .last_update(self.now - timedelta(hours=1))
                   .next_update(self.now + timedelta(days=7)))
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(self.now - timedelta(minutes=30)).build())
        return builder.sign(self.key, hashes.SHA256())


def _operator_dn(domain: str, name: str) -> x509.Name:
    ascii_domain = domain.encode("idna").decode()
    return _name(f"mx.{ascii_domain}", f"31875127510{zlib.crc32(name.encode()) % 10000:04d}",
                 name.upper().replace("-", " "))


def build_world(out: Path, *, now: datetime | None = None) -> World:
    """Build the whole world under ``out`` (created; must be empty or absent)."""
    now = now or datetime.now(UTC)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ConfigError(f"{out}: not empty; pki demo writes a fresh world")
    pki = out / "pki"
    pki.mkdir()
    ca = _Ca(_name("AC TEST IGC-SANTE ORGANISATIONS", "0002 187512751", "TEST IGC-SANTE"), now)
    evil = _Ca(_name("AC PIRATE", "0000 000000000", "PIRATE"), now)
    ca_cert = pki / "ca.pem"
    ca_cert.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki / "ca.key", ca.key)
    evil_cert = pki / "evil-ca.pem"
    evil_cert.write_bytes(evil.cert.public_bytes(serialization.Encoding.PEM))
    world = World(root=out, ca_cert=ca_cert, ca_key=pki / "ca.key", crl=pki / "crl.pem",
                  evil_ca_cert=evil_cert)

    def save(name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
        (pki / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pki / f"{name}.key", key)
        from gateway.crypto.x509util import dn_string

        world.certs[name] = {"cert": str(pki / f"{name}.pem"), "key": str(pki / f"{name}.key"),
                             "dn": dn_string(cert.subject)}
        return cert

    local = [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
    for op, domain in OPERATORS.items():
        dn = _operator_dn(domain, op)
        mx = f"mx.{domain.encode('idna').decode()}"
        save(f"{op}-server", *ca.issue(dn, usage="server", sans=[x509.DNSName(mx), *local]))
        save(f"{op}-client", *ca.issue(dn, usage="client"))
    save("gateway-signing", *ca.issue(
        _name("passerelle@legacy.mssante.example", "318751275100099", "PASSERELLE"),
        usage="signing", sans=[x509.RFC822Name("passerelle@legacy.mssante.example")]))
    # a trust-space operator's S/MIME signer for two of its mailboxes (the test sender, a lab)
    a_domain = OPERATORS["hopital-a"]
    save("hopital-a-signing", *ca.issue(
        _name(f"labo@{a_domain}", "0001 000000001", "HOPITAL A"), usage="signing",
        sans=[x509.RFC822Name(f"dr.x@{a_domain}"), x509.RFC822Name(f"labo@{a_domain}")]))
    save("list-signer", *ca.issue(_name("LISTE BLANCHE MSSANTE TEST", "0002 187512751",
                                        "AGENCE TEST"), usage="org"))
    revoked = save("revoked-client", *ca.issue(_operator_dn(OPERATORS["hopital-a"], "hopital-a"),
                                               usage="client"))
    save("expired-client", *ca.issue(_operator_dn(OPERATORS["hopital-a"], "hopital-a"),
                                     usage="client", not_before=now - timedelta(days=400),
                                     not_after=now - timedelta(days=35)))
    save("evil-client", *evil.issue(_operator_dn(OPERATORS["hopital-a"], "hopital-a"),
                                    usage="client"))
    save("rogue-client", *ca.issue(_name("mx.rogue.example", "999", "ROGUE"), usage="client"))
    # the legacy network's hub, which may prove itself to the legacy listener ([legacy.hub])
    save("legacy-hub-client", *ca.issue(_name("hub.legacy.example", "CONCENTRATEUR",
                                              "RESEAU HISTORIQUE"), usage="client"))
    world.crl.write_bytes(ca.crl([revoked]).public_bytes(serialization.Encoding.PEM))

    lists = out / "lists"
    lists.mkdir()
    entries = [(domain, world.dn(f"{op}-client")) for op, domain in OPERATORS.items()]
    world.domain_list_unsigned = lists / "domains-unsigned.xml"
    world.domain_list_unsigned.write_bytes(write_list(entries, generated=now))
    world.domain_list = lists / "domains.xml"
    world.domain_list.write_bytes(write_list(entries, generated=now,
                                             signer=(world.cert("list-signer"),
                                                     world.key("list-signer"))))

    _build_openpgp(world, now)
    _write_addresses(world)
    _write_config(world)
    (out / "world.json").write_text(json.dumps(world.to_json(), indent=2), "utf-8")
    return world


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--quiet",
                           "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          input=data, capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise ConfigError(f"gpg {args[0]} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def _new_home(path: Path) -> Path:
    path.mkdir(parents=True, mode=0o700)
    (path / "gpg.conf").write_text("trust-model always\nno-auto-key-retrieve\n")
    (path / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    return path


def _genkey(home: Path, uid: str, *, faked_time: str | None = None, expire: str = "0") -> str:
    params = (f"Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nSubkey-Type: ecdh\n"
              f"Subkey-Curve: cv25519\nSubkey-Usage: encrypt\nName-Email: {uid}\n"
              f"Expire-Date: {expire}\n%no-protection\n%commit\n")
    extra = ["--faked-system-time", faked_time] if faked_time else []
    _gpg(home, *extra, "--gen-key", data=params.encode())
    listing = _gpg(home, "--with-colons", "--list-secret-keys", f"<{uid}>").decode()
    fprs = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")]
    return fprs[0] if fprs else ""


def _build_openpgp(world: World, now: datetime) -> None:
    # Short paths: gpg-agent's socket path must stay under ~107 bytes.
    base = world.root / "gnupg"
    gateway_home = _new_home(base / "gw")
    world.gnupg_gateway = gateway_home
    world.fingerprints["gateway"] = _genkey(gateway_home, "passerelle@legacy.mssante.example")
    gateway_pub = _gpg(gateway_home, "--armor", "--export", world.fingerprints["gateway"])
    publics: list[bytes] = []
    for spec in (*USERS, EXPIRED_USER, REVOKED_USER):
        home = _new_home(base / spec.key)
        world.gnupg_users[spec.key] = str(home)
        if spec is EXPIRED_USER:
            fpr = _genkey(home, spec.legacy_address, faked_time="20200101T000000", expire="1d")
        else:
            fpr = _genkey(home, spec.legacy_address)
        world.fingerprints[spec.key] = fpr
        if spec is REVOKED_USER:
            # A signature made before the revocation, for the failure tests.
            (home / "signed-before-revocation.gpg").write_bytes(
                _gpg(home, "--sign", data=b"signed before the key was revoked"))
            rev = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
            _gpg(home, "--import", data=rev.replace(":-----BEGIN", "-----BEGIN").encode())
        _gpg(home, "--import", data=gateway_pub)
        publics.append(_gpg(home, "--armor", "--export", fpr))
    for pub in publics:
        _gpg(gateway_home, "--import", data=pub)
    for spec in USERS:  # legacy users know each other too
        for pub in publics:
            _gpg(Path(world.gnupg_users[spec.key]), "--import", data=pub)
    for home in [gateway_home, *(Path(h) for h in world.gnupg_users.values())]:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


def _write_addresses(world: World) -> None:
    from gateway.directory.addresses import COLUMNS

    mappings = world.root / "mappings"
    mappings.mkdir(exist_ok=True)
    lines = [",".join(COLUMNS)]
    for spec in (*USERS, EXPIRED_USER, REVOKED_USER):
        lines.append(",".join([spec.legacy_address, spec.trust_address,
                               f'"{spec.display_name}"', spec.rpps,
                               world.fingerprints[spec.key], spec.charset, spec.hprim_code]))
    world.addresses = mappings / "addresses.csv"
    world.addresses.write_text("\n".join(lines) + "\n", "utf-8")
    repo_mappings = Path(__file__).resolve().parents[2] / "mappings"
    for table in ("lab-codes.csv", "units.csv", "labs.csv"):
        if (repo_mappings / table).exists():
            shutil.copy(repo_mappings / table, mappings / table)


def _write_config(world: World) -> None:
    c = world.certs
    world.config = world.root / "passerelle.toml"
    world.config.write_text(f"""\
# Written by `passerelle pki demo`: a test world, never for production.
[gateway]
domain = "{GATEWAY_DOMAIN}"
state_dir = "state"

[mappings]
dir = "{world.root / 'mappings'}"
addresses = "{world.addresses}"

[legacy]
gnupg_home = "{world.gnupg_gateway}"
gateway_fingerprint = "{world.fingerprints['gateway']}"

[trust]
signing_cert = "{c['gateway-signing']['cert']}"
signing_key = "{c['gateway-signing']['key']}"
server_cert = "{c['gateway-server']['cert']}"
server_key = "{c['gateway-server']['key']}"
client_cert = "{c['gateway-client']['cert']}"
client_key = "{c['gateway-client']['key']}"
anchors = ["{world.ca_cert}"]
crls = ["{world.crl}"]
domain_list = "{world.domain_list}"
list_signer_cert = "{world.cert('list-signer')}"

[keys]
file = "{world.root / 'keyring.json'}"
""", "utf-8")
    # the spool seals what it stores with it (kept outside every state directory)
    Keyring.generate().save(world.root / "keyring.json")
