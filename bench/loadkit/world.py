"""The world the load bench runs in, beyond ``gateway.crypto.world``: the simulated trust
operator's signing certificate, client TLS contexts, and stopping the worlds' gpg-agents."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.crypto import smime
from gateway.crypto.world import World

TRUST_PEER = "dr.x@hopital-a.mssante.example"


def operator_identity(world: World, out: Path) -> smime.SigningIdentity:
    """An S/MIME signing certificate for the simulated operator, from the world's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(world.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(world.ca_cert.read_bytes())
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HOPITAL A"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, TRUST_PEER)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                     key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(TRUST_PEER)]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "op-signing.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "op-signing.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return smime.SigningIdentity.load(out / "op-signing.pem", out / "op-signing.key")


def client_tls(world: World, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(world.ca_cert))
    if cert:
        ctx.load_cert_chain(str(world.cert(cert)), str(world.key(cert)))
    return ctx




def stop_agents(world: World) -> None:
    for home in [world.gnupg_gateway, *(Path(h) for h in world.gnupg_users.values())]:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)
