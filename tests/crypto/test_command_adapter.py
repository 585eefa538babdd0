"""The external-command adapter, driven against a fake of the licensed first-generation tools.

The fake (``fake_legacy_tool.py``) works as those tools do: files in, files out, a directory
of keys, its own armour (``$APICRYPT`` blocks in the body, ``.apz`` attachments holding one or
several named files), its own exit statuses and a line of prose for its verdict.  The adapter
is configured for it exactly as an operator would configure the real binaries.
"""

from __future__ import annotations

import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway import errors
from gateway.crypto.command import CommandCipher
from gateway.crypto.legacy import LegacyCrypto
from gateway.mail import mime

TOOL = str(Path(__file__).with_name("fake_legacy_tool.py"))
PY = sys.executable
EXIT_CODES = {10: "cannot_decrypt", 11: "bad_signature", 12: "unknown_key",
              13: "no_recipient_key"}  # the fake tool's own statuses, as [legacy.exit_codes]
SIGNER = r"^Signature valide : (\S+)"
USERS = ("GATEWAY", "DUPONT", "MARTIN")


def keydir(root: Path, owner: str) -> Path:
    """``owner``'s key directory: its secret, and everybody's public key."""
    d = root / owner.lower()
    d.mkdir(parents=True, exist_ok=True)
    for name in USERS:
        material = (name.encode() * 8)
        (d / f"{name}.key").write_bytes(material)
        if name == owner:
            (d / f"{name}.secret").write_bytes(material)
    return d


def cipher(keys: Path, me: str, *, timeout: float = 10,
           exit_codes: dict[int, str] | None = None, max_output: int = 0) -> CommandCipher:
    """The adapter as an operator configures it for the apicrypt-like tools."""
    return CommandCipher(
        open_argv=(PY, TOOL, "uncrypt", "-s", "{in}", "-o", "{out}", "-k", "{keydir}"),
        seal_argv=(PY, TOOL, "crypt", "-s", "{in}", "-o", "{out}", "-u", "{signer}", "-k",
                   "{keydir}", "-d", "{recipient}"),
        open_attachment_argv=(PY, TOOL, "uncryptpj", "-s", "{in}", "-o", "{outdir}", "-k",
                              "{keydir}"),
        seal_attachment_argv=(PY, TOOL, "cryptpj", "-s", "{in}", "-o", "{out}", "-u",
                              "{signer}", "-k", "{keydir}", "-d", "{recipient}"),
        key_dir=keys, timeout=timeout, gateway_key=me, signer_pattern=SIGNER,
        exit_codes=EXIT_CODES if exit_codes is None else exit_codes, max_output=max_output)


def tool(*args: str | Path) -> bytes:
    """Run the fake tool as a legacy user's own software does."""
    subprocess.run([PY, TOOL, *map(str, args)], check=True, capture_output=True)
    return b""


def client_body(tmp: Path, keys: Path, text: bytes, *, sender: str = "",
                recipient: str = "GATEWAY") -> bytes:
    """A body as the user's client encrypts it (``sender`` empty: a first-generation client,
    which does not sign)."""
    src, dst = tmp / "body.txt", tmp / "body.api"
    src.write_bytes(text)
    tool("crypt", "-s", src, "-o", dst, "-k", keys, "-d", recipient,
         *(("-u", sender) if sender else ()))
    return dst.read_bytes()


def client_apz(tmp: Path, keys: Path, files: dict[str, bytes], *, sender: str = "") -> bytes:
    paths = []
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        paths.append(tmp / name)
    dst = tmp / "out.apz"
    tool("cryptpj", *[x for p in paths for x in ("-s", str(p))], "-o", dst, "-k", keys, "-d",
         "GATEWAY", *(("-u", sender) if sender else ()))
    return dst.read_bytes()


def letter(body: bytes, attachments: dict[str, bytes] | None = None, *,
           prose: str = "") -> bytes:
    """The mail the client sends: the armoured body in the text (with ``prose`` around it, as
    some clients write), the ``.apz`` files attached."""
    m = EmailMessage()
    m["From"] = "jean.DUPONT@medical33.legacy.example"
    m["To"] = "dr.x@hopital-a.mssante.example"
    m.set_content(prose.encode() + body + prose.encode(), maintype="text", subtype="plain",
                  cte="7bit")
    for name, data in (attachments or {}).items():
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return m.as_bytes()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return {name: keydir(tmp_path / "keys", name) for name in USERS}


def test_legacy_to_trust_way_signed_body_and_several_files_in_one_apz(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """A second-generation client: every piece signed; one .apz unpacks into two files,
    each under the name the tool kept."""
    body = client_body(tmp_path, keys["DUPONT"], "Kaliémie 5,1".encode("cp1252"),
                       sender="DUPONT")
    apz = client_apz(tmp_path, keys["DUPONT"], {"cr.pdf": b"%PDF-1.4 cr",
                                                "bilan.hpr": b"HPRIM"}, sender="DUPONT")
    gateway = LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY"))
    opened = gateway.open(letter(body, {"resultats.apz": apz}, prose="Bonjour\r\n"),
                          expected_signer="DUPONT")
    leaves = mime.leaves(mime.parse(opened.message))
    assert leaves[0].data == "Kaliémie 5,1".encode("cp1252")
    assert {(p.filename, p.data) for p in leaves[1:]} == {("cr.pdf", b"%PDF-1.4 cr"),
                                                          ("bilan.hpr", b"HPRIM")}
    assert [p.content_type for p in leaves[1:]].count("application/pdf") == 1
    v = opened.verification
    assert v.signer == "DUPONT" and not v.unsigned
    assert v.kinds == ("signed", "signed", "signed") and set(v.tools) == {"command"}


def test_trust_to_legacy_way_the_users_own_tool_opens_what_the_gateway_sealed(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    m = EmailMessage()
    m["From"] = "Dr X <dr.x@hopital-a.mssante.example>"
    m.set_content("Bien reçu.".encode("cp1252"), maintype="text", subtype="plain")
    m.add_attachment(b"%PDF-1.4 reponse", maintype="application", subtype="pdf",
                     filename="reponse.pdf")
    sealed, tools = LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY")).seal_traced(
        m.as_bytes(), recipient="DUPONT")
    assert tools == ("command", "command")
    parts = mime.leaves(mime.parse(sealed))
    assert parts[0].data.startswith(b"$APICRYPT 2 DUPONT GATEWAY ")  # the tool's own armour
    assert parts[1].filename == "reponse.pdf.apz"  # the tool's attachment, name kept inside
    assert b"reponse" not in parts[0].data + parts[1].data and b"PDF" not in parts[1].data
    opened = LegacyCrypto(cipher(keys["DUPONT"], "DUPONT")).open(sealed,
                                                                  expected_signer="GATEWAY")
    leaves = mime.leaves(mime.parse(opened.message))
    assert leaves[0].data == "Bien reçu.".encode("cp1252")
    assert (leaves[1].filename, leaves[1].data) == ("reponse.pdf", b"%PDF-1.4 reponse")
    assert opened.verification.signer == "GATEWAY"


def test_a_first_generation_clients_parts_are_an_unsigned_verdict(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """The tool decrypts and names no signer: refused as unsigned, unless the caller allows
    it (a v1 user over the hub's session), and then said so part by part."""
    raw = letter(client_body(tmp_path, keys["DUPONT"], b"Courrier V1"),
                 {"cr.pdf.apz": client_apz(tmp_path, keys["DUPONT"], {"cr.pdf": b"%PDF"})})
    gateway = LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY"))
    with pytest.raises(errors.Unsigned):
        gateway.open(raw, expected_signer="DUPONT")
    opened = gateway.open(raw, expected_signer="DUPONT", unsigned_ok=True)
    leaves = mime.leaves(mime.parse(opened.message))
    assert [p.data for p in leaves] == [b"Courrier V1", b"%PDF"]
    v = opened.verification
    assert v.unsigned and v.kinds == ("unsigned_v1", "unsigned_v1")
    assert v.summary()["result"] == "unsigned" and "first-generation" in v.summary()["note"]


def test_a_signed_part_among_unsigned_ones_must_still_be_the_senders(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    raw = letter(client_body(tmp_path, keys["MARTIN"], b"x", sender="MARTIN"))
    with pytest.raises(errors.WrongSigner):
        LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY")).open(
            raw, expected_signer="DUPONT", unsigned_ok=True)


@pytest.mark.parametrize(("make", "error"), [
    ("for-another", errors.CannotDecrypt),  # encrypted to Dr Martin: exit 10
    ("tampered", errors.BadSignature),  # exit 11
    ("unknown-sender", errors.UnknownKey),  # exit 12
    ("no-armour", errors.NotEncrypted),  # plain text: never handed on
    ("marker-only", errors.CannotDecrypt),  # a marker the tool cannot read: exit 10
])
def test_the_tools_exit_statuses_become_typed_failures(
        tmp_path: Path, keys: dict[str, Path], make: str, error: type[Exception]) -> None:
    if make == "for-another":
        raw = letter(client_body(tmp_path, keys["DUPONT"], b"x", sender="DUPONT",
                                 recipient="MARTIN"))
    elif make == "tampered":
        body = client_body(tmp_path, keys["DUPONT"], b"Compte rendu", sender="DUPONT")
        lines = body.split(b"\r\n")
        lines[1] = lines[1][::-1]
        raw = letter(b"\r\n".join(lines))
    elif make == "unknown-sender":
        stranger = keydir(tmp_path / "keys", "STRANGER")  # a key the gateway does not hold
        (stranger / "STRANGER.secret").write_bytes(b"STRANGER" * 8)
        raw = letter(client_body(tmp_path, stranger, b"x", sender="STRANGER"))
    elif make == "no-armour":
        raw = letter(b"Kaliemie 6,9 en clair")
    else:
        raw = letter(b"$APICRYPT mais rien de lisible")
    with pytest.raises(error):
        LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY")).open(raw, expected_signer="DUPONT")


def test_an_unmapped_exit_status_is_a_transient_tool_failure(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """Without the mapping of its statuses, the tool's 10 means nothing we know: the
    message is kept and retried, never passed on or bounced on a guess."""
    raw = letter(client_body(tmp_path, keys["DUPONT"], b"x", sender="DUPONT",
                             recipient="MARTIN"))
    with pytest.raises(errors.CryptoToolError, match="exit 10"):
        LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY", exit_codes={})).open(
            raw, expected_signer="DUPONT")


def test_seal_to_a_recipient_without_key_never_falls_back(keys: dict[str, Path]) -> None:
    m = EmailMessage()
    m.set_content("x")
    with pytest.raises(errors.NoRecipientKey):
        LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY")).seal(m.as_bytes(), recipient="NOBODY")


def test_timeout_is_transient(keys: dict[str, Path]) -> None:
    with pytest.raises(errors.CryptoToolError, match="timed out"):
        LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY", timeout=0.5)).open(
            letter(b"$HANG $APICRYPT"), expected_signer="DUPONT")


def test_missing_tool_is_transient(keys: dict[str, Path]) -> None:
    broken = CommandCipher(open_argv=("/nonexistent/apiuncrypt", "{in}"), seal_argv=(),
                           key_dir=keys["GATEWAY"], timeout=5, gateway_key="GATEWAY")
    with pytest.raises(errors.CryptoToolError, match="cannot run"):
        LegacyCrypto(broken).open(letter(b"$APICRYPT x"), expected_signer="DUPONT")


MIB = 1 << 20


def test_a_body_that_decrypts_past_the_limit_stops_the_tool(tmp_path: Path,
                                                            keys: dict[str, Path]) -> None:
    """The tool runs under a file-size limit one octet past ``max_output``: writing more
    stops it (SIGXFSZ), which is the permanent too_big, never a transient tool failure."""
    body = client_body(tmp_path, keys["DUPONT"], b"x" * (3 * MIB), sender="DUPONT")
    small = LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY", max_output=MIB))
    with pytest.raises(errors.MessageTooBig, match="max_decrypted_part"):
        small.open(letter(body), expected_signer="DUPONT")
    roomy = LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY", max_output=4 * MIB))
    assert roomy.open(letter(body), expected_signer="DUPONT").verification.signer == "DUPONT"


def test_an_attachment_unpacking_past_the_limit_in_all_is_refused(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    """Two files each under the limit, together over it: too_big as well."""
    apz = client_apz(tmp_path, keys["DUPONT"], {"a.txt": b"a" * (600 * 1024),
                                                "b.txt": b"b" * (600 * 1024)}, sender="DUPONT")
    body = client_body(tmp_path, keys["DUPONT"], b"Bonjour", sender="DUPONT")
    with pytest.raises(errors.MessageTooBig):
        LegacyCrypto(cipher(keys["GATEWAY"], "GATEWAY", max_output=MIB)).open(
            letter(body, {"pieces.apz": apz}), expected_signer="DUPONT")
