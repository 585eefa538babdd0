"""Fuzzing the readers of outside input: whatever the bytes, a reader returns or raises its
typed error from ``gateway/errors.py`` — never anything else (a traceback in the daemon is a
message retried forever).  Bounded and derandomised so that CI runs the same few hundred
examples each time in a few seconds; ``tests/hostile/fuzz_atheris.py`` runs longer
coverage-guided campaigns on the same targets."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from gateway import config
from gateway.crypto.world import World
from gateway.documents import hprim, xdm
from gateway.errors import DocumentError, MessageFormatError, PasserelleError, TextError
from gateway.mail import mime
from gateway.text import normalize
from gateway.text.charsets import HINTS
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translator
from tests.conftest import FIXTURES, legacy_client
from tests.daemon.harness import ADDR, TRUST

# PASSERELLE_FUZZ=N runs N times as many examples, random rather than derandomised.
SCALE = int(os.environ.get("PASSERELLE_FUZZ", "0") or 0)
FUZZ = settings(max_examples=800 * max(SCALE, 1), deadline=None, derandomize=not SCALE,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

# --- seeds: real inputs that the mutations start from --------------------------------------

SEED_MESSAGE = (
    b"From: =?utf-8?q?Dr_M=C3=A9decin?= <dr.x@hopital-a.mssante.example>\r\n"
    b"To: jean.dupont@legacy.mssante.example, \"Dupont, J\" <j@x.example>\r\n"
    b"Subject: =?iso-8859-1?q?R=E9sultats?=\r\nMessage-ID: <seed@x.example>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nH=C3=A9moglobine\r\n--b1\r\nContent-Type: multipart/alternative;"
    b' boundary="b2"\r\n\r\n--b2\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b2--\r\n'
    b"--b1\r\nContent-Type: application/zip; name=IHE_XDM.ZIP\r\nContent-Disposition: "
    b'attachment; filename="IHE_XDM.ZIP"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    b"UEsDBBQAAAAIAA==\r\n--b1--\r\n")
SEED_HPRIM = sorted((FIXTURES / "hprim").glob("*.hpr"))[0].read_text("utf-8")
HPRIM_LINES = SEED_HPRIM.splitlines()
MIME_TOKENS = [b"\r\n", b"\r\n\r\n", b"--b1", b"--b1--", b"--b2", b"Content-Type: multipart/mixed;"
               b' boundary="b1"\r\n', b"=?utf-8?q?=0D=0A?=", b"=?utf-8?b?", b"\xff\xfe", b"\x00",
               b": ", b"\r\n ", b"Content-Transfer-Encoding: base64\r\n", b"==", b"<", b">"]


def _xdm_seed() -> bytes:
    from tests.documents.test_xdm import _pack

    return _pack()


SEED_XDM = _xdm_seed()


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, tokens: list[bytes]) -> bytes:
    """``seed`` with a few splices: bytes flipped, cut, duplicated, tokens inserted."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "dup", "token", "truncate"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif action == "dup":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
        elif action == "token" and tokens:
            data[at:at] = draw(st.sampled_from(tokens))
        else:
            del data[at:]
    return bytes(data)


# --- the MIME reader --------------------------------------------------------------------------

@FUZZ
@given(st.one_of(mutated(SEED_MESSAGE, MIME_TOKENS), st.binary(max_size=2048)))
def test_mime_reader_raises_only_message_format_errors(raw: bytes) -> None:
    try:
        msg = mime.parse(raw)
        for name in ("From", "To", "Cc", "Subject", "Message-ID", "Date", "Content-Type"):
            mime.header(msg, name)
        mime.header_items(msg)
        mime.leaves(msg)
    except MessageFormatError:
        pass
    with contextlib.suppress(MessageFormatError):
        mime.parse_head(raw)


# --- a whole translation -----------------------------------------------------------------------
# Whatever a peer sends, translating it either works or fails with the typed error that
# decides its fate (bounce, quarantine, retry): any other exception is one the daemon can only
# log with a traceback and retry for days.  The email package raises ValueError, AttributeError
# or UnicodeEncodeError on some header values when a message is *written*, not only read.

TRUST_SEED = SEED_MESSAGE.replace(b"jean.dupont@legacy.mssante.example",
                                  TRUST["dupont"].encode())
TRUST_SEED_NO_XDM = TRUST_SEED.replace(b"IHE_XDM.ZIP", b"autre.zip")
LEGACY_INNER = (b"From: " + ADDR["dupont"].encode() + b"\r\n"
                b"To: dr.x@hopital-a.mssante.example\r\n" + SEED_MESSAGE.split(b"\r\n", 2)[2])
FOUND = {  # what the first runs of this fuzzing found: each crashed the translation
    "8-bit Message-ID": TRUST_SEED_NO_XDM.replace(b"<seed@x.example>",
                                                  b"<seed@x.example\xff\xfe>"),
    "line break in a part's type": TRUST_SEED_NO_XDM.replace(
        b"Content-Type: text/plain; charset=utf-8", b"Content-Type: text/p\x90G\xa2\x0bslain"),
    "NUL in a charset": TRUST_SEED_NO_XDM.replace(b"charset=utf-8", b"charset=ut\x00f-8"),
    "group the address parser trips on": TRUST_SEED_NO_XDM.replace(
        b'"Dupont, J" <j@x.example>',
        b'"DupContent-Type: multipart/mixed; boundary="b1"\r\nont, J" <j@x.example>'),
}


@pytest.fixture(scope="module")
def translator(world: World) -> Translator:
    return build_translator(config.load(world.config))


WHEN = datetime(2026, 11, 30, tzinfo=UTC)
OPERATOR = "dr.x@hopital-a.mssante.example"


def _to_legacy(translator: Translator, raw: bytes) -> None:
    """``raw`` from the operator to dupont's trust alias, translated for the legacy side."""
    translator.to_legacy(raw, Envelope(OPERATOR, (TRUST["dupont"],)), now=WHEN)


def _sealed(world: World, user: str, inner: bytes) -> bytes:
    """``inner`` sealed for the gateway by ``user``'s legacy client (an example that not even
    the client can write is rejected)."""
    try:
        return legacy_client(world, user).seal(inner, recipient=world.fingerprints["gateway"])
    except PasserelleError:
        reject()


def _to_trust(translator: Translator, user: str, sealed: bytes) -> None:
    """A sealed message from ``user`` to the operator, translated for the trust side."""
    translator.to_trust(sealed, Envelope(ADDR[user], (OPERATOR,)), now=WHEN)


@pytest.mark.parametrize("raw", list(FOUND.values()), ids=list(FOUND))
def test_what_crashed_a_translation_is_a_typed_error(translator: Translator,
                                                     raw: bytes) -> None:
    with pytest.raises(PasserelleError):
        _to_legacy(translator, raw)


HPRIM_TOKENS = [b"|", b"\r", b"\n", b"RES|", b"TEX|", b"****LAB****", b"****FIN****", b"\x00",
                b"\x1a", b"\x0c", b"\xff", b"\xe9", b"99999999999", b"<", b"&", b"]]>"]
LEGACY_HPRIM = (b"From: " + ADDR["biolab"].encode() + b"\r\nTo: dr.x@hopital-a.mssante.example"
                b"\r\nSubject: CR\r\nContent-Type: text/plain\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n\r\n" + SEED_HPRIM.encode("utf-8"))


@settings(FUZZ, max_examples=40 * max(SCALE, 1))
@given(mutated(LEGACY_HPRIM, HPRIM_TOKENS))
def test_a_mutated_hprim_report_raises_only_typed_errors(world: World, translator: Translator,
                                                         inner: bytes) -> None:
    """A laboratory's report with bytes flipped, cut and inserted (form feeds, NULs, Ctrl-Z
    among them: lxml refused them and crashed the translation), sealed and signed by the
    laboratory: translated into CDA, PDF and XDM, or a typed error."""
    sealed = _sealed(world, "biolab", inner)
    with contextlib.suppress(PasserelleError):
        _to_trust(translator, "biolab", sealed)


def test_a_legacy_message_with_two_to_headers_is_a_typed_error(world: World,
                                                               translator: Translator) -> None:
    """RFC 5322 allows one To: a second made the email package raise ValueError when the
    legacy open copied the headers — a crash retried for days, now a malformed message."""
    twice = b"To: dr.y@hopital-a.mssante.example\r\n" + _sealed(world, "dupont", LEGACY_INNER)
    with pytest.raises(MessageFormatError, match="more than one To header"):
        _to_trust(translator, "dupont", twice)


@settings(FUZZ, max_examples=300 * max(SCALE, 1))
@given(st.one_of(mutated(TRUST_SEED, MIME_TOKENS), mutated(TRUST_SEED_NO_XDM, MIME_TOKENS)))
def test_trust_to_legacy_raises_only_typed_errors(translator: Translator, raw: bytes) -> None:
    with contextlib.suppress(PasserelleError):
        _to_legacy(translator, raw)


@settings(FUZZ, max_examples=40 * max(SCALE, 1))
@given(mutated(LEGACY_INNER, MIME_TOKENS))
def test_legacy_to_trust_raises_only_typed_errors(world: World, translator: Translator,
                                                  inner: bytes) -> None:
    """The legacy side: garbage inside a correctly sealed and signed message."""
    sealed = _sealed(world, "dupont", inner)
    with contextlib.suppress(PasserelleError):
        _to_trust(translator, "dupont", sealed)


# --- the HPRIM parser -------------------------------------------------------------------------

hprim_lines = st.lists(st.one_of(
    st.sampled_from(HPRIM_LINES),
    st.sampled_from(HPRIM_LINES).map(lambda ln: ln.replace("|", "||", 1)),
    st.sampled_from(HPRIM_LINES).map(lambda ln: ln[: len(ln) // 2]),
    st.text(max_size=80),
    st.sampled_from(["RES|", "TEX|", "FIN", "****LAB****", "****FINFICHIER****", "|" * 40]),
), max_size=60)


@FUZZ
@given(st.one_of(hprim_lines.map("\n".join), st.text(max_size=2000)))
def test_hprim_parser_raises_only_document_errors(text: str) -> None:
    try:
        parsed = hprim.parse(text)
        hprim.looks_like_hprim(text)
        if parsed.documents:
            hprim.write(parsed)
    except DocumentError:
        pass


# --- text repair ------------------------------------------------------------------------------

french = "Hémoglobine à 11,8 g/dL ; créatinine élevée, œdème, « à revoir » — 37 °C\n"
text_bytes = st.one_of(
    st.binary(max_size=1024),
    st.sampled_from(["utf-8", "cp1252", "mac_roman", "cp850", "latin-1", "utf-16"]).map(
        lambda c: french.encode(c, "replace")).flatmap(
        lambda b: mutated(b * 3, [b"\xc3", b"\xa9", b"\x00", b"\r", b"\x1a", b"\xef\xbb\xbf"])),
)


@settings(FUZZ, max_examples=400 * max(SCALE, 1))
@given(text_bytes, st.sampled_from([None, *sorted(HINTS)]))
def test_text_repair_raises_only_text_errors(data: bytes, hint: str | None) -> None:
    try:
        result = normalize(data, hint=hint)
    except TextError:
        return
    assert isinstance(result.text, str)


# --- the XDM reader ---------------------------------------------------------------------------

def _entries(names: list[str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n, name in enumerate(names):
            z.writestr(name, b"<x>%d</x>" % n)
    return out.getvalue()


zip_names = st.lists(st.sampled_from(
    ["IHE_XDM/SUBSET01/METADATA.XML", "README.TXT", "../x", "/abs", "a\\..\\b", "C:x",
     "IHE_XDM/SUBSET01/DOC0001.XML", "ihe_xdm/subset01/metadata.xml", "x\x00y"]), max_size=6)


def _future_zip_version(package: bytes) -> bytes:
    """The first central directory entry needing "version 11.3" to extract (atheris found
    that zipfile raises NotImplementedError for it)."""
    at = package.index(b"PK\x01\x02") + 6
    return package[:at] + (113).to_bytes(2, "little") + package[at + 2:]


def _encrypted_flag(package: bytes) -> bytes:
    """The first central directory entry flagged encrypted (atheris: zipfile raises
    RuntimeError, "password required", when it is read)."""
    at = package.index(b"PK\x01\x02") + 8
    return package[:at] + bytes([package[at] | 1]) + package[at + 1:]


@settings(FUZZ, max_examples=600 * max(SCALE, 1))
@given(st.one_of(mutated(SEED_XDM, [b"PK\x03\x04", b"PK\x01\x02", b"\x00" * 8, b"<!DOCTYPE"]),
                 zip_names.map(_entries), st.binary(max_size=512)))
@example(_future_zip_version(SEED_XDM))
@example(_encrypted_flag(SEED_XDM))
def test_xdm_reader_raises_only_document_errors(data: bytes) -> None:
    assert isinstance(xdm.verify(data), list)  # verify never raises: it lists findings
    with contextlib.suppress(DocumentError):  # UnsafeDocumentError is one
        xdm.unpack(data)


# --- atheris: a short coverage-guided campaign per reader ---------------------------------

ATHERIS_SEEDS = {
    "mime": [SEED_MESSAGE],
    "hprim": [SEED_HPRIM.encode()],
    "text": [b"\x01" + french.encode("cp1252"), b"\x02" + french.encode("mac_roman"),
             b"\x00" + french.encode("utf-8").decode("latin-1").encode("utf-8")],
    "xdm": [SEED_XDM],
}


def test_atheris_finds_nothing_in_a_short_campaign(tmp_path: Path) -> None:
    """Each target for a few seconds from real seeds, the four side by side."""
    pytest.importorskip("atheris")
    procs = {}
    for target, seeds in ATHERIS_SEEDS.items():
        corpus = tmp_path / target
        corpus.mkdir()
        for n, seed in enumerate(seeds):
            (corpus / f"seed{n}").write_bytes(seed)
        procs[target] = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.fuzz_atheris", target, str(corpus),
             "-max_total_time=3", "-max_len=65536", f"-artifact_prefix={tmp_path}/{target}-"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=FIXTURES.parent)
    for target, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        log = out.decode("utf-8", "replace")
        assert proc.returncode == 0, f"{target}: {log[-3000:]}"
        assert "DONE" in log and "Uncaught Python exception" not in log, log[-3000:]
