"""The floors a gateway phase is measured against (the transport floor is a `run_phase`
straight to the sink): the crypto floor, the gateway's own crypto classes in a tight loop;
the physical floor, the crypto a message needs done in-process with `cryptography`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import config
from gateway.crypto import smime
from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.pki import TrustAnchors
from gateway.crypto.world import USERS, World
from gateway.translate.factory import legacy_cipher
from loadkit.measure import agent_cpu
from loadkit.messages import Msg, letter_text


def crypto_floor(world: World, legacy: Sequence[Msg], trust: Sequence[Msg], threads: int,
                 gateway_config: Path) -> dict[str, Any]:
    """The gateway's own crypto classes in a tight loop, ``threads`` at a time (the gateway
    translates on that many threads), through the legacy adapter the gateway's configuration
    ``gateway_config`` builds (``[legacy] adapter``)."""
    gw = LegacyCrypto(legacy_cipher(config.load(gateway_config)))
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    signer = smime.Smime(identity, TrustAnchors.load([world.ca_cert], [world.crl]))
    fpr = {u.legacy_address: world.fingerprints[u.key] for u in USERS}
    by_trust = {u.trust_address: world.fingerprints[u.key] for u in USERS}

    def to_trust(m: Msg) -> None:
        opened = gw.open(m.data, expected_signer=fpr[m.sender])
        signer.sign(opened.message)

    def to_legacy(m: Msg) -> None:
        content, _ = signer.verify(m.data, at=datetime.now(UTC))
        gw.seal(content, recipient=by_trust[m.rcpt])

    out: dict[str, Any] = {"threads": threads}
    for name, fn, msgs in (("legacy_to_trust", to_trust, legacy),
                           ("trust_to_legacy", to_legacy, trust)):
        c0 = os.times()
        agent0 = agent_cpu(world.gnupg_gateway)
        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, msgs))
        seconds = time.monotonic() - t0
        c1 = os.times()
        cpu = (c1.user + c1.system + c1.children_user + c1.children_system
               - c0.user - c0.system - c0.children_user - c0.children_system
               + agent_cpu(world.gnupg_gateway) - agent0)
        out[name] = {"n": len(msgs), "per_s": round(len(msgs) / seconds, 1),
                     "cpu_ms_per_msg": round(cpu / len(msgs) * 1000, 2)}
    return out


# -- the physical floor ------------------------------------------------------------------------

PAYLOAD_BYTES = 20 * 1024


def physical_floor(world: World, payload: bytes = b"", *, rounds: int = 5, reps: int = 40
                   ) -> dict[str, Any]:
    """The in-process crypto one message needs, each way, with `cryptography` and `zlib` in
    this process: what no gateway can do without, whatever its shell.

    Each operation is timed on ``payload`` (default: one of the bench's 20 KB letters): CPU
    time of this thread per call, ``reps`` calls a round, the best of ``rounds`` (other work
    on the machine only adds).
    Legacy → trust: unwrap the session key, verify the sender's signature (a SHA-256 of the
    text, then the signature), decrypt (AES-256-CFB, with the SHA-1 of OpenPGP's
    modification check), inflate, S/MIME-sign the output (PKCS#7, detached, with the world's
    gateway-signing certificate and key).  Trust → legacy: verify the operator's S/MIME
    signature (a SHA-256 of the content and one RSA verification: the certificate chain is
    checked once per certificate, not per message), deflate, sign, wrap a session key,
    encrypt.  Two key families: the world's OpenPGP keys (Ed25519 signatures, X25519 session
    keys, as `gateway.crypto.world` makes them) — the floor — and RSA-2048, given beside it."""
    import hashlib
    import zlib

    from cryptography import x509
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
    from cryptography.hazmat.primitives.serialization import pkcs7

    payload = payload or letter_text(0).encode("utf-8")[:PAYLOAD_BYTES]
    session = os.urandom(32)
    iv = os.urandom(16)
    digest = hashlib.sha256(payload).digest()
    compressed = zlib.compress(payload)
    # X25519: the sender's ephemeral key against ours, the KDF (a hash), the key unwrapped
    ours = x25519.X25519PrivateKey.generate()
    ephemeral = x25519.X25519PrivateKey.generate()
    kek = hashlib.sha256(ephemeral.exchange(ours.public_key()) + b"kdf-params").digest()
    wrapped = aes_key_wrap(kek, session + os.urandom(8))
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_sig = ed.sign(digest)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1 = padding.PKCS1v15()
    rsa_wrapped = rsa_key.public_key().encrypt(session, pkcs1)
    rsa_sig = rsa_key.sign(payload, pkcs1, hashes.SHA256())
    sealed = Cipher(algorithms.AES(session), CFB(iv)).encryptor().update(payload)
    cert = x509.load_pem_x509_certificate(world.cert("gateway-signing").read_bytes())
    key = serialization.load_pem_private_key(world.key("gateway-signing").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    smime_sig = key.sign(payload, pkcs1, hashes.SHA256())

    def unwrap_x25519() -> None:
        shared = ours.exchange(ephemeral.public_key())
        aes_key_unwrap(hashlib.sha256(shared + b"kdf-params").digest(), wrapped)

    def wrap_x25519() -> None:
        eph = x25519.X25519PrivateKey.generate()
        shared = eph.exchange(ours.public_key())
        aes_key_wrap(hashlib.sha256(shared + b"kdf-params").digest(), session + iv[:8])

    def aes_decrypt() -> None:
        Cipher(algorithms.AES(session), CFB(iv)).decryptor().update(sealed)
        hashlib.sha1(payload).digest()

    def aes_encrypt() -> None:
        Cipher(algorithms.AES(session), CFB(iv)).encryptor().update(payload)
        hashlib.sha1(payload).digest()

    ops: dict[str, Callable[[], object]] = {
        "unwrap_x25519": unwrap_x25519,
        "unwrap_rsa2048": lambda: rsa_key.decrypt(rsa_wrapped, pkcs1),
        "verify_ed25519": lambda: ed.public_key().verify(
            ed_sig, hashlib.sha256(payload).digest()),
        "verify_rsa2048": lambda: rsa_key.public_key().verify(
            rsa_sig, payload, pkcs1, hashes.SHA256()),
        "aes_decrypt": aes_decrypt,
        "inflate": lambda: zlib.decompress(compressed),
        "smime_sign": lambda: pkcs7.PKCS7SignatureBuilder().set_data(payload)
            .add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature]),
        "smime_verify": lambda: key.public_key().verify(
            smime_sig, payload, pkcs1, hashes.SHA256()),
        "deflate": lambda: zlib.compress(payload),
        "sign_ed25519": lambda: ed.sign(hashlib.sha256(payload).digest()),
        "sign_rsa2048": lambda: rsa_key.sign(payload, pkcs1, hashes.SHA256()),
        "wrap_x25519": wrap_x25519,
        "wrap_rsa2048": lambda: rsa_key.public_key().encrypt(session, pkcs1),
        "aes_encrypt": aes_encrypt,
    }
    us = {name: round(_best_cpu(fn, rounds, reps) * 1e6, 1) for name, fn in ops.items()}
    steps = {  # {sig}: the OpenPGP signature's algorithm, {kem}: the session key's
        "legacy_to_trust": ("unwrap_{kem}", "verify_{sig}", "aes_decrypt", "inflate",
                            "smime_sign"),
        "trust_to_legacy": ("smime_verify", "deflate", "sign_{sig}", "wrap_{kem}",
                            "aes_encrypt"),
    }
    out: dict[str, Any] = {"payload_bytes": len(payload), "rounds": rounds, "reps": reps,
                           "keys": "ed25519/x25519", "op_us": us}
    for direction, names in steps.items():
        ec = [n.format(sig="ed25519", kem="x25519") for n in names]
        rs = [n.format(sig="rsa2048", kem="rsa2048") for n in names]
        out[direction] = {"ms_per_msg": round(sum(us[n] for n in ec) / 1000, 3),
                          "ms_per_msg_rsa2048": round(sum(us[n] for n in rs) / 1000, 3),
                          "ops": ec}
    return out


def _best_cpu(fn: Callable[[], object], rounds: int, reps: int) -> float:
    """CPU seconds of this thread per call of ``fn``: the best of ``rounds`` rounds of
    ``reps`` calls, after one call to warm up."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(reps):
            fn()
        best = min(best, (time.thread_time() - t0) / reps)
    return best


def against_physical_floor(phase: dict[str, Any], floor_ms_per_msg: float) -> None:
    """Add to a gateway phase how many times the physical floor its CPU per message is:
    ``total`` — everything the gateway made the machine do (daemon, translation workers,
    their gpg or sqop processes, the gpg-agent) — and ``daemon_and_workers`` (the gateway's
    own processes alone)."""
    cpu = phase["cpu_ms_per_msg"]
    own = phase["gateway_cpu_ms_per_msg"]
    phase["cpu_x_physical_floor"] = {
        "total": round(cpu["total"] / floor_ms_per_msg, 1),
        "daemon_and_workers": round((own["daemon"] + own["workers"]) / floor_ms_per_msg, 1)}
