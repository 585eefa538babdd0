"""The rnp adapter (``legacy.adapter = "rnp"``): librnp opens and seals in-process, on the GnuPG
home's keys, with the gateway's policy on keys out of date; gpg names what librnp refuses.

The verdicts shared with the gpg adapter are checked through each adapter in
``test_openpgp.py``."""

from __future__ import annotations

import ctypes.util
import io
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import structlog

from gateway import errors
from gateway import log as ops_logging
from gateway.crypto import rnp
from gateway.crypto.legacy import LegacyCrypto, PartResult, SealedPart
from gateway.crypto.rnp import RnpCipher
from gateway.crypto.sop import _listing
from gateway.crypto.world import World
from gateway.mail import mime
from tests.conftest import gateway_crypto, legacy_client, require_library
from tests.crypto.test_openpgp import _encrypt_signed, _inline, letter


@pytest.fixture
def rnp_crypto(world: World) -> LegacyCrypto:
    return gateway_crypto(world, "rnp")


def _cipher(crypto: LegacyCrypto) -> RnpCipher:
    assert isinstance(crypto.cipher, RnpCipher)
    return crypto.cipher


def _gpg_must_not_run(cipher: RnpCipher) -> list[str]:
    called: list[str] = []

    def decrypt_verify(data: bytes, *, signer: str = "") -> PartResult:
        called.append("decrypt_verify")
        raise AssertionError("gpg was asked")

    def encrypt_sign(data: bytes, *, recipient: str) -> SealedPart:
        called.append("encrypt_sign")
        raise AssertionError("gpg was asked")

    cipher.gpg.decrypt_verify = decrypt_verify  # type: ignore[method-assign]
    cipher.gpg.encrypt_sign = encrypt_sign  # type: ignore[method-assign]
    return called


def test_librnp_opens_and_seals_without_gpg(world: World, rnp_crypto: LegacyCrypto) -> None:
    cipher = _cipher(rnp_crypto)
    sealed = legacy_client(world, "dupont").seal(letter().as_bytes(),
                                                 recipient=world.fingerprints["gateway"])
    called = _gpg_must_not_run(cipher)
    opened = rnp_crypto.open(sealed, expected_signer=world.fingerprints["dupont"])
    assert opened.verification.tools == ("rnp", "rnp")
    assert "jean.DUPONT" in opened.verification.signer_uid
    assert mime.leaves(mime.parse(opened.message))[1].data == b"%PDF-1.4 scan"
    resealed, tools = rnp_crypto.seal_traced(letter().as_bytes(),
                                             recipient=world.fingerprints["martin"])
    assert called == []
    assert tools == ("rnp", "rnp")
    # martin's own software (gpg) opens what librnp sealed, signed by the gateway's key
    back = legacy_client(world, "martin").open(resealed,
                                                expected_signer=world.fingerprints["gateway"])
    assert back.verification.tools == ("gpg", "gpg")
    assert mime.leaves(mime.parse(back.message))[1].data == b"%PDF-1.4 scan"


def test_what_librnp_seals_the_recipients_gpg_decrypts_and_verifies(
        world: World, rnp_crypto: LegacyCrypto) -> None:
    """gpg's own status lines, in the recipient's home: integrity protected, a good signature
    by the gateway's key, the plaintext as it was."""
    data = os.urandom(200_000)  # larger than a pipe's buffer, and incompressible
    sealed = _cipher(rnp_crypto).encrypt_sign(data, recipient=world.fingerprints["martin"])
    assert sealed.tool == "rnp" and sealed.data.startswith(b"-----BEGIN PGP MESSAGE-----")
    done = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["martin"], "--batch", "--status-fd", "2",
         "--trust-model", "always", "--decrypt"], input=sealed.data, capture_output=True,
        check=True)
    status = done.stderr.decode()
    assert done.stdout == data
    assert "[GNUPG:] DECRYPTION_OKAY" in status and "[GNUPG:] GOODMDC" in status
    validsig = next(line for line in status.splitlines() if "VALIDSIG" in line).split()
    assert validsig[-1] == world.fingerprints["gateway"]


@pytest.mark.parametrize(("kind", "compressed"), [("zip", False), ("letter", True)])
def test_what_is_compressed_already_is_sealed_without_compression(
        world: World, rnp_crypto: LegacyCrypto, kind: str, compressed: bool) -> None:
    """A zip (a CR-BIO package) is not deflated a second time, a letter is (ZLIB, as gpg
    writes for these keys); the recipient's gpg reads both back as they were."""
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("IHE_XDM/SUBSET01/DOC0001.PDF", os.urandom(60_000))
            z.writestr("METADATA.XML", letter().as_string() * 20)
        data = buf.getvalue()
    else:
        data = letter().as_bytes() * 20
    sealed = _cipher(rnp_crypto).encrypt_sign(data, recipient=world.fingerprints["martin"])
    assert sealed.tool == "rnp"
    gpg = ["gpg", "--homedir", world.gnupg_users["martin"], "--batch", "--trust-model",
           "always"]
    packets = subprocess.run([*gpg, "--list-packets"], input=sealed.data, capture_output=True,
                             check=True).stdout.decode()
    assert (":compressed packet: algo=2" in packets) is compressed
    assert ":literal data packet:" in packets
    assert subprocess.run([*gpg, "--decrypt"], input=sealed.data, capture_output=True,
                          check=True).stdout == data


def test_librnp_alone_accepts_a_signature_made_before_expiry_the_adapter_does_not(
        world: World, rnp_crypto: LegacyCrypto) -> None:
    """The key check from gpg's listing is what refuses it, and gpg names the refusal."""
    gw = world.fingerprints["gateway"]
    signed = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["perime"], "--batch",
         "--faked-system-time", "20200101T120000", "--sign"], input=b"x",
        capture_output=True, check=True).stdout
    armored = _encrypt_signed(world, gw, signed)
    cipher = _cipher(rnp_crypto)
    cert = cipher._cert(world.fingerprints["perime"])
    assert cert is not None and not cert.primary.usable("", 1.9e9)
    ctx = cipher._context(cert)
    opened = ctx.decrypt_verify(armored)
    assert opened is not None and opened[0] == b"x"
    with pytest.raises(errors.KeyExpired):
        rnp_crypto.open(_inline(armored), expected_signer=world.fingerprints["perime"])


def test_a_sha1_signature_is_opened_as_the_gpg_adapter_opens_it(
        world: World, rnp_crypto: LegacyCrypto) -> None:
    """Legacy software that still signs with SHA-1: whichever of librnp and gpg checks it, the
    part opens, as with the default adapter."""
    armored = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--trust-model", "always",
         "--armor", "--digest-algo", "SHA1", "--sign", "--encrypt", "-r",
         world.fingerprints["gateway"]], input=b"signed with SHA-1", capture_output=True,
        check=True).stdout
    opened = rnp_crypto.open(_inline(armored), expected_signer=world.fingerprints["dupont"])
    assert opened.verification.signer == world.fingerprints["dupont"]
    assert mime.leaves(mime.parse(opened.message))[0].data == b"signed with SHA-1"


def test_a_key_revoked_while_running_is_refused_at_the_next_message(
        world: World, tmp_path: Path) -> None:
    """A revocation imported into the GnuPG home: every thread's librnp context is made again
    and the next part is refused, in this thread as in another."""
    require_library("rnp")
    home = tmp_path / "gw"
    shutil.copytree(world.gnupg_gateway, home, ignore=shutil.ignore_patterns("S.*"))
    try:
        crypto = LegacyCrypto(RnpCipher(home, gateway_fingerprint=world.fingerprints["gateway"]))
        dupont = world.fingerprints["dupont"]
        client = legacy_client(world, "dupont")
        first = client.seal(letter().as_bytes(), recipient=world.fingerprints["gateway"])
        assert crypto.open(first, expected_signer=dupont).verification.tools == ("rnp", "rnp")
        rev = (Path(world.gnupg_users["dupont"]) / "openpgp-revocs.d" / f"{dupont}.rev")
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"],
                       input=rev.read_bytes().replace(b":-----BEGIN", b"-----BEGIN"),
                       capture_output=True, check=True)
        second = client.seal(letter().as_bytes(), recipient=world.fingerprints["gateway"])
        with pytest.raises(errors.KeyRevoked):
            crypto.open(second, expected_signer=dupont)
        with pytest.raises(errors.NoRecipientKey):
            crypto.seal(letter().as_bytes(), recipient=dupont)
        raised: list[BaseException] = []

        def other_thread() -> None:
            try:
                crypto.open(second, expected_signer=dupont)
            except errors.KeyRevoked as exc:
                raised.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert len(raised) == 1
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


def test_a_seal_librnp_refuses_is_made_by_gpg_and_says_so(
        world: World, rnp_crypto: LegacyCrypto) -> None:
    """A seal librnp cannot make (here its encryption call failing, as a broken upgrade would):
    gpg seals the parts, the trace's tools say gpg, the log says why, without the text."""
    cipher = _cipher(rnp_crypto)
    ctx = cipher._context(cipher._cert(world.fingerprints["martin"]))
    real = ctx.lib
    log = io.StringIO()
    ops_logging.configure("info", stream=log)

    class Broken:
        def __getattr__(self, name: str) -> object:
            if name == "rnp_op_encrypt_execute":
                return lambda op: rnp.RNP_ERROR_GENERIC
            return getattr(real, name)

    ctx.lib = Broken()  # type: ignore[assignment]
    try:
        sealed, tools = rnp_crypto.seal_traced(letter().as_bytes(),
                                               recipient=world.fingerprints["martin"])
    finally:
        ctx.lib = real
        structlog.reset_defaults()
    assert tools == ("gpg", "gpg")
    back = legacy_client(world, "martin").open(sealed,
                                                expected_signer=world.fingerprints["gateway"])
    assert mime.leaves(mime.parse(back.message))[1].data == b"%PDF-1.4 scan"
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    refused = [e for e in events if e.get("event") == "legacy.rnp_not_accepted"]
    assert [(e["stage"], e["reason"]) for e in refused] == [("seal", "cannot_seal")] * 2
    assert "moglobine" not in json.dumps(events) and "scan.pdf" not in json.dumps(events)


def test_a_protected_gateway_key_is_refused_at_start(world: World, tmp_path: Path) -> None:
    require_library("rnp")
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", "a passphrase", "--quick-gen-key", "gw@example.org",
                    "ed25519", "sign", "never"], check=True, capture_output=True)
    listed = _listing(subprocess.run(
        ["gpg", "--homedir", str(home), "--with-colons", "--fixed-list-mode",
         "--with-subkey-fingerprint", "--list-keys"], capture_output=True, check=True,
        text=True).stdout)
    assert listed is not None
    try:
        with pytest.raises(errors.CryptoToolError, match="without a passphrase"):
            RnpCipher(home, gateway_fingerprint=listed[0].fingerprint)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


def test_threads_each_have_their_own_context_and_their_own_answers(
        world: World, rnp_crypto: LegacyCrypto) -> None:
    """As the daemon's translation threads (``[workers] processes = 0``) use one cipher: parts
    from two senders opened at once, each with its own signer and plaintext."""
    cipher = _cipher(rnp_crypto)
    parts = {user: [legacy_client(world, user).cipher.encrypt_sign(
        f"{user} {i}".encode(), recipient=world.fingerprints["gateway"]).data
        for i in range(5)] for user in ("dupont", "martin")}
    contexts: set[int] = set()
    failures: list[str] = []

    def work(user: str) -> None:
        for _ in range(20):
            for i, part in enumerate(parts[user]):
                got = cipher.decrypt_verify(part, signer=world.fingerprints[user])
                if (got.plaintext, got.signer, got.tool) != (
                        f"{user} {i}".encode(), world.fingerprints[user], "rnp"):
                    failures.append(user)
        contexts.add(id(cipher._local.ctx))

    threads = [threading.Thread(target=work, args=(u,)) for u in ("dupont", "martin") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(contexts) == 4


def _seal_in_child(cipher: RnpCipher, recipient: str, out: multiprocessing.Queue[bytes]) -> None:
    out.put(cipher.encrypt_sign(b"from the child", recipient=recipient).data)


def test_a_forked_process_makes_its_own_context(world: World, rnp_crypto: LegacyCrypto) -> None:
    """A child forked after the parent sealed does not reuse the parent's context (nor its
    random generator's state): what it seals still opens, and differs from the parent's."""
    cipher = _cipher(rnp_crypto)
    martin = world.fingerprints["martin"]
    cipher.encrypt_sign(b"from the parent", recipient=martin)
    parent_ctx = cipher._local.ctx
    queue: multiprocessing.Queue[bytes] = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=_seal_in_child, args=(cipher, martin, queue))
    child.start()
    sealed = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert cipher._local.ctx is parent_ctx
    opened = legacy_client(world, "martin").cipher.decrypt_verify(sealed)
    assert (opened.plaintext, opened.signer) == (b"from the child", world.fingerprints["gateway"])


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)


def test_two_thousand_parts_keep_memory_flat(world: World, rnp_crypto: LegacyCrypto) -> None:
    """Every librnp handle is freed: 2,000 parts opened and 2,000 sealed after a warm-up leave
    the resident size within a few megabytes (a leak of the 20 KB part alone would be 80 MB)."""
    cipher = _cipher(rnp_crypto)
    dupont, martin = world.fingerprints["dupont"], world.fingerprints["martin"]
    part = legacy_client(world, "dupont").cipher.encrypt_sign(
        os.urandom(20_000), recipient=world.fingerprints["gateway"]).data

    def run(n: int) -> None:
        for _ in range(n):
            assert cipher.decrypt_verify(part, signer=dupont).tool == "rnp"
            assert cipher.encrypt_sign(b"x" * 20_000, recipient=martin).tool == "rnp"

    run(200)
    before = _rss_kb()
    run(2000)
    grown = _rss_kb() - before
    assert grown < 8_000, f"RSS grew by {grown} KB over 2,000 parts"


def test_without_the_library_the_adapter_is_a_clear_transient_error(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rnp, "_lib", None)
    monkeypatch.setattr(rnp, "LIBRARY", "librnp-absent.so.0")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert not rnp.available()
    with pytest.raises(errors.CryptoToolError, match="librnp unavailable"):
        RnpCipher(world.gnupg_gateway, gateway_fingerprint=world.fingerprints["gateway"])


def test_auto_is_librnp_when_it_loads_else_gpg(world: World, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``legacy.adapter = "auto"`` (the default) in the daemon's factory: librnp here, and the
    gpg adapter when the library is absent; ``"rnp"`` asked for explicitly then fails."""
    from gateway import config
    from gateway.crypto.openpgp import OpenPgpCipher
    from gateway.translate.factory import legacy_cipher

    require_library("rnp")

    def settings(adapter: str) -> config.Settings:
        return config.load(world.write_config(tmp_path / f"{adapter}.toml", tmp_path / "state",
                                              {"legacy": {"adapter": adapter}}))

    assert isinstance(legacy_cipher(settings("auto")), RnpCipher)
    monkeypatch.setattr(rnp, "_lib", None)
    monkeypatch.setattr(rnp, "LIBRARY", "librnp-absent.so.0")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert type(legacy_cipher(settings("auto"))) is OpenPgpCipher
    with pytest.raises(errors.CryptoToolError, match="librnp unavailable"):
        legacy_cipher(settings("rnp"))


def test_librnp_alone_opens_a_part_without_integrity_protection_the_adapter_does_not(
        world: World, rnp_crypto: LegacyCrypto) -> None:
    """A well signed part encrypted without MDC (CAST5, RFC 2440): librnp decrypts it and finds
    the signature good; the adapter sees it unprotected and gpg refuses it."""
    gw, dupont = world.fingerprints["gateway"], world.fingerprints["dupont"]
    armored = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--trust-model", "always",
         "--armor", "--rfc2440", "--cipher-algo", "CAST5", "--sign", "--encrypt", "-r", gw],
        input=b"x", capture_output=True, check=True).stdout
    cipher = _cipher(rnp_crypto)
    opened = cipher._context(cipher._cert(dupont)).decrypt_verify(armored)
    assert opened is not None
    plain, signatures, protected = opened
    assert (plain, signatures, protected) == (b"x", [(0, signatures[0][1])], False)
    log = io.StringIO()
    ops_logging.configure("info", stream=log)
    try:
        with pytest.raises(errors.CannotDecrypt):
            rnp_crypto.open(_inline(armored), expected_signer=dupont)
    finally:
        structlog.reset_defaults()
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(e["event"], e["stage"], e["reason"]) for e in events
            if e["event"] == "legacy.rnp_not_accepted"] == [
        ("legacy.rnp_not_accepted", "open", "unprotected")]
