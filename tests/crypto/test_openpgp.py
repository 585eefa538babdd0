"""The legacy crypto adapter with the real gpg: good messages open, every failure is typed."""

from __future__ import annotations

import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway import errors
from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.world import World
from gateway.mail import mime
from tests.conftest import gateway_crypto, legacy_client

DUPONT = "jean.DUPONT@medical33.legacy.example"


def letter(body: bytes = "Hémoglobine à 11,8 g/dL".encode("mac_roman"),
           attachment: bytes | None = b"%PDF-1.4 scan") -> EmailMessage:
    m = EmailMessage()
    m["From"] = DUPONT
    m["To"] = "dr.x@hopital-a.mssante.example"
    m["Subject"] = "Patient"
    m.set_content(body, maintype="text", subtype="plain")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="pdf", filename="scan.pdf")
    return m


def test_good_message_opens_with_every_part(world: World, adapter: str) -> None:
    sealed = legacy_client(world, "dupont").seal(letter().as_bytes(),
                                                 recipient=world.fingerprints["gateway"])
    assert b"-----BEGIN PGP MESSAGE-----" in sealed and b"scan.pdf.pgp" in sealed
    assert "Hémoglobine".encode("mac_roman") not in sealed
    opened = gateway_crypto(world, adapter).open(sealed,
                                                 expected_signer=world.fingerprints["dupont"])
    assert opened.verification.signer == world.fingerprints["dupont"]
    assert "jean.DUPONT" in opened.verification.signer_uid
    assert opened.verification.parts == ("body:inline", "attachment:2")
    tool = {"openpgp": "gpg", "sop": "sop", "rnp": "rnp"}[adapter]
    assert opened.verification.tools == (tool, tool)
    assert opened.verification.summary()["tools"] == [tool, tool]
    parts = mime.leaves(mime.parse(opened.message))
    assert parts[0].data == "Hémoglobine à 11,8 g/dL".encode("mac_roman")
    assert (parts[1].filename, parts[1].content_type, parts[1].data) == (
        "scan.pdf", "application/pdf", b"%PDF-1.4 scan")


def test_pgp_mime_opens(world: World, tmp_path: Path, adapter: str) -> None:
    inner = letter(attachment=None)
    del inner["From"], inner["To"], inner["Subject"]
    armored = subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--trust-model", "always",
         "--armor", "--sign", "--encrypt", "-r", world.fingerprints["gateway"]],
        input=inner.as_bytes(), capture_output=True, check=True).stdout
    outer = EmailMessage()
    outer["From"] = DUPONT
    outer["Subject"] = "PGP/MIME"
    outer.set_type("multipart/encrypted")
    outer.set_param("protocol", "application/pgp-encrypted")
    control = EmailMessage()
    control.set_content(b"Version: 1\n", maintype="application", subtype="pgp-encrypted")
    data = EmailMessage()
    data.set_content(armored, maintype="application", subtype="octet-stream",
                     filename="encrypted.asc")
    outer.set_payload([control, data])
    opened = gateway_crypto(world, adapter).open(outer.as_bytes(),
                                                 expected_signer=world.fingerprints["dupont"])
    assert opened.verification.parts == ("body:pgp-mime",)
    assert "Hémoglobine".encode("mac_roman") in mime.leaves(mime.parse(opened.message))[0].data


def _gpg_out(world: World, user: str, *args: str, data: bytes = b"secret") -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", world.gnupg_users[user], "--batch", "--trust-model", "always",
         "--armor", *args], input=data, capture_output=True, check=True).stdout


def _inline(armored: bytes) -> bytes:
    m = EmailMessage()
    m["From"] = DUPONT
    m.set_content(armored, maintype="text", subtype="plain")
    return m.as_bytes()


@pytest.mark.parametrize(("case", "error"), [
    ("unsigned", errors.Unsigned),
    ("wrong_signer", errors.WrongSigner),
    ("cannot_decrypt", errors.CannotDecrypt),
    ("unknown_key", errors.UnknownKey),
    ("bad_signature", errors.BadSignature),
    ("expired", errors.KeyExpired),
    ("revoked", errors.KeyRevoked),
    ("not_encrypted", errors.NotEncrypted),
    ("corrupt", errors.CannotDecrypt),
    ("no_integrity", errors.CannotDecrypt),
])
def test_each_failure_is_typed(world: World, tmp_path: Path, case: str,
                               error: type[errors.CryptoError], adapter: str) -> None:
    gw = world.fingerprints["gateway"]
    expected = world.fingerprints["dupont"]
    if case == "unsigned":
        raw = _inline(_gpg_out(world, "dupont", "--encrypt", "-r", gw))
    elif case == "wrong_signer":
        raw = _inline(_gpg_out(world, "martin", "--sign", "--encrypt", "-r", gw))
    elif case == "cannot_decrypt":  # encrypted to another key than the gateway's
        raw = _inline(_gpg_out(world, "dupont", "--sign", "--encrypt", "-r",
                               world.fingerprints["martin"]))
    elif case == "unknown_key":  # a signer the gateway has never heard of
        stranger = tmp_path / "g"
        stranger.mkdir(mode=0o700)
        subprocess.run(["gpg", "--homedir", str(stranger), "--batch", "--passphrase", "",
                        "--quick-gen-key", "stranger@evil.example", "ed25519", "sign", "never"],
                       check=True, capture_output=True)
        pub = subprocess.run(["gpg", "--homedir", str(world.gnupg_gateway), "--armor",
                              "--export", gw], capture_output=True, check=True).stdout
        subprocess.run(["gpg", "--homedir", str(stranger), "--batch", "--import"], input=pub,
                       check=True, capture_output=True)
        raw = _inline(subprocess.run(
            ["gpg", "--homedir", str(stranger), "--batch", "--trust-model", "always", "--armor",
             "--sign", "--encrypt", "-r", gw], input=b"x", capture_output=True,
            check=True).stdout)
        subprocess.run(["gpgconf", "--homedir", str(stranger), "--kill", "all"], check=False)
    elif case == "bad_signature":
        # a signed (not encrypted-and-signed) body altered after signing, then encrypted
        body = subprocess.run(
            ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--compress-algo",
             "none", "--sign"], input=b"original text of the letter", capture_output=True,
            check=True).stdout
        tampered = bytearray(body)
        idx = tampered.find(b"original")
        assert idx > 0
        tampered[idx] = ord("O")
        raw = _inline(subprocess.run(
            ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--trust-model",
             "always", "--armor", "--no-literal", "--encrypt", "-r", gw],
            input=bytes(tampered),
            capture_output=True, check=True).stdout)
    elif case == "expired":  # signed while the key was valid, received after it expired
        expected = world.fingerprints["perime"]
        raw = _inline(_encrypt_signed(world, gw, subprocess.run(
            ["gpg", "--homedir", world.gnupg_users["perime"], "--batch",
             "--faked-system-time", "20200101T120000", "--sign"], input=b"x",
            capture_output=True, check=True).stdout))
    elif case == "revoked":  # signed before the revocation, received after it
        expected = world.fingerprints["revoque"]
        raw = _inline(_encrypt_signed(world, gw, (
            Path(world.gnupg_users["revoque"]) / "signed-before-revocation.gpg").read_bytes()))
    elif case == "no_integrity":  # a well signed part encrypted without integrity protection
        armored = _gpg_out(world, "dupont", "--rfc2440", "--cipher-algo", "CAST5", "--sign",
                           "--encrypt", "-r", gw)
        assert armored.startswith(b"-----BEGIN PGP MESSAGE-----")
        raw = _inline(armored)
    elif case == "not_encrypted":
        raw = _inline(b"Bonjour, en clair.")
    else:
        armored = _gpg_out(world, "dupont", "--sign", "--encrypt", "-r", gw)
        lines = armored.splitlines()
        lines[3] = lines[3][::-1]
        raw = _inline(b"\n".join(lines))
    crypto = gateway_crypto(world, adapter)
    with pytest.raises(error):
        crypto.open(raw, expected_signer=expected)


def _encrypt_signed(world: World, gw: str, signed: bytes) -> bytes:
    """Encrypt an existing signed OpenPGP message to the gateway (no new literal packet)."""
    return subprocess.run(
        ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--trust-model", "always",
         "--armor", "--no-literal", "--encrypt", "-r", gw], input=signed,
        capture_output=True, check=True).stdout


def test_seal_refuses_plaintext_fallback(world: World, adapter: str) -> None:
    with pytest.raises(errors.NoRecipientKey):
        gateway_crypto(world, adapter).seal(letter().as_bytes(), recipient="F" * 40)


@pytest.mark.parametrize("user", ["perime", "revoque"])
def test_seal_refuses_a_key_out_of_date(world: World, adapter: str, user: str) -> None:
    with pytest.raises(errors.NoRecipientKey):
        gateway_crypto(world, adapter).seal(letter().as_bytes(),
                                            recipient=world.fingerprints[user])


def test_seal_then_user_opens(world: World, adapter: str) -> None:
    sealed = gateway_crypto(world, adapter).seal(letter().as_bytes(),
                                                 recipient=world.fingerprints["martin"])
    opened = legacy_client(world, "martin").open(sealed,
                                                 expected_signer=world.fingerprints["gateway"])
    assert mime.leaves(mime.parse(opened.message))[1].data == b"%PDF-1.4 scan"


def test_missing_home_is_transient(tmp_path: Path) -> None:
    with pytest.raises(errors.CryptoToolError):
        LegacyCrypto(OpenPgpCipher(tmp_path / "absent", gateway_fingerprint="A" * 40))


def test_gpg_output_is_written_into_one_buffer_as_python_gnupg_would_collect_it(
        world: World) -> None:
    """Many pieces (larger than a pipe's buffer): the plaintext and the armour are the bytes
    python-gnupg itself would have gathered, and the shared wrapper is left as it was."""
    import os

    cipher = OpenPgpCipher(Path(world.gnupg_users["dupont"]),
                           gateway_fingerprint=world.fingerprints["dupont"])
    data = os.urandom(300_000)
    sealed = cipher.encrypt_sign(data, recipient=world.fingerprints["dupont"])
    armored = sealed.data
    assert sealed.tool == "gpg"
    assert armored.startswith(b"-----BEGIN PGP MESSAGE-----")
    assert cipher.gpg.on_data is None
    collected = cipher.gpg.decrypt(armored, always_trust=True, extra_args=["--no-tty"]).data
    opened = cipher.decrypt_verify(armored)
    assert opened.plaintext == collected == data
    assert opened.signer == world.fingerprints["dupont"]
    assert cipher.gpg.on_data is None


def test_opened_parts_are_not_kept_with_their_verdicts(world: World) -> None:
    sealed = legacy_client(world, "dupont").seal(letter().as_bytes(),
                                                 recipient=world.fingerprints["gateway"])
    crypto = gateway_crypto(world)
    kept: list[object] = []
    rebuild = crypto._rebuild

    def spy(part: object, results: list[object], *args: object, **kwargs: object) -> object:
        kept.append(results)
        return rebuild(part, results, *args, **kwargs)  # type: ignore[arg-type]

    crypto._rebuild = spy  # type: ignore[assignment,method-assign]
    crypto.open(sealed, expected_signer=world.fingerprints["dupont"])
    results = kept[0]
    assert [what for what, _ in results] == ["body:inline", "attachment:2"]  # type: ignore[misc]
    assert all(r.plaintext == b"" and r.signer == world.fingerprints["dupont"]
               for _, r in results)  # type: ignore[attr-defined,misc]


@pytest.mark.parametrize("case", ["unsigned", "signed", "wrong_signer", "bad_signature"])
def test_unsigned_ok_gives_the_same_verdict_through_each_adapter(
        world: World, adapter: str, case: str) -> None:
    """The v1 path (``unsigned_ok``: a first-generation user over the hub's session): a part
    nobody signed opens, said unsigned; a signed one is still checked, as without the flag."""
    gw = world.fingerprints["gateway"]
    if case == "unsigned":
        raw = _inline(_gpg_out(world, "dupont", "--encrypt", "-r", gw))
    elif case == "signed":
        raw = _inline(_gpg_out(world, "dupont", "--sign", "--encrypt", "-r", gw))
    elif case == "wrong_signer":
        raw = _inline(_gpg_out(world, "martin", "--sign", "--encrypt", "-r", gw))
    else:
        body = bytearray(subprocess.run(
            ["gpg", "--homedir", world.gnupg_users["dupont"], "--batch", "--compress-algo",
             "none", "--sign"], input=b"original text of the letter", capture_output=True,
            check=True).stdout)
        body[body.find(b"original")] = ord("O")
        raw = _inline(_encrypt_signed(world, gw, bytes(body)))
    crypto = gateway_crypto(world, adapter)
    expected = world.fingerprints["dupont"]
    if case in ("wrong_signer", "bad_signature"):
        error = errors.WrongSigner if case == "wrong_signer" else errors.BadSignature
        with pytest.raises(error):
            crypto.open(raw, expected_signer=expected, unsigned_ok=True)
        return
    opened = crypto.open(raw, expected_signer=expected, unsigned_ok=True)
    assert mime.leaves(mime.parse(opened.message))[0].data == b"secret"
    if case == "unsigned":
        assert opened.verification.kinds == ("unsigned_v1",)
        assert opened.verification.tools == ("gpg",)  # gpg says nobody signed it
    else:
        assert opened.verification.kinds == ("signed",)
        assert opened.verification.signer == expected
        assert opened.verification.tools == ({"openpgp": "gpg", "sop": "sop", "rnp": "rnp"}[
            adapter],)
