"""Each message is parsed once, and each message a translation writes is written once.

Through the real translator (the world's configuration: the rnp adapter when librnp loads,
else gpg; real S/MIME), the email package's parses and serialisations are counted
(``bench/loadkit/mimecount.py``: every ``FeedParser.close`` — whole messages, header blocks,
header values read as a field —, every outermost ``Generator.flatten`` and every message the
gateway's writer writes):

* a message received is parsed once, whatever the number of its recipients: no header block
  read again for the ``From`` check, no header value read again as a field, no second parse
  of the content for a second recipient;
* written once per output: each message a step of the trace records as its output (the
  opened message, the composed one, the sealed one) is written once; the S/MIME signature
  wraps the composed message as it was written.
"""

from __future__ import annotations

import email.parser
import email.policy
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.crypto import smime
from gateway.crypto.world import USERS, World
from gateway.errors import PolicyError
from gateway.mail import mime, write
from gateway.translate import senders
from gateway.translate.factory import build_translator
from gateway.translate.pipeline import Envelope, Translation, Translator
from tests.conftest import FIXTURES, ROOT, legacy_client

sys.path.insert(0, str(ROOT / "bench"))
from loadkit.mimecount import Census, counting

NOW = datetime.now(UTC)
ADDR = {u.key: u.legacy_address for u in USERS}
TRUST = {u.key: u.trust_address for u in USERS}
DR_X = "dr.x@hopital-a.mssante.example"


@pytest.fixture(scope="module")
def translator(world: World) -> Translator:
    return build_translator(config.load(world.config))


def sealed(world: World, user: str, body: bytes, n: int) -> bytes:
    m = EmailMessage()
    m["From"] = ADDR[user]
    m["To"] = f"Dr X <{DR_X}>"
    m["Cc"] = "Secrétariat <secretariat@hopital-a.mssante.example>"
    m["Reply-To"] = ADDR[user]
    m["Subject"] = f"Résultats {n}"
    m["Message-ID"] = f"<once-{user}-{n}@{ADDR[user].split('@')[1]}>"
    m.set_content(body, maintype="text", subtype="plain")
    return legacy_client(world, user).seal(m.as_bytes(), recipient=world.fingerprints["gateway"])


def signed_by_dr_x(world: World, to: list[str], n: int, attachment: bytes | None = None
                   ) -> bytes:
    m = EmailMessage()
    m["From"] = f"Dr X <{DR_X}>"
    m["To"] = ", ".join(to)
    m["Reply-To"] = "Secrétariat <secretariat@hopital-a.mssante.example>"
    m["Subject"] = f"Réponse n° {n} : γGT"
    m["Message-ID"] = f"<once-{n}@hopital-a.mssante.example>"
    m.set_content("Cher confrère, voici les résultats (γGT à 40 UI/L).\n" * 40,
                  cte="quoted-printable")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="zip",
                         filename="IHE_XDM.ZIP")
    return smime.sign(m.as_bytes(), smime.SigningIdentity.load(
        world.cert("hopital-a-signing"), world.key("hopital-a-signing")))


def to_trust(translator: Translator, world: World, user: str, body: bytes
             ) -> tuple[Census, Translation]:
    translator.to_trust(sealed(world, user, body, 0), Envelope(ADDR[user], (DR_X,)),
                        now=NOW)  # a first one: whatever is loaded once is loaded
    raw = sealed(world, user, body, 1)
    with counting() as census:
        out = translator.to_trust(raw, Envelope(ADDR[user], (DR_X,)), now=NOW)
    return census, out


def assert_parsed_once(census: Census) -> None:
    parses = [(e.kind, e.caller, e.size) for e in census.parses()]
    assert [(kind, caller) for kind, caller, _ in parses] == [("parse", "mail.mime.parse")], \
        parses


LETTER = ("Hémoglobine à 11,8 g/dL, créatinine à 78 µmol/L.\r\n" * 200).encode("cp1252")


@pytest.mark.parametrize("kind", ["letter", "hprim"])
def test_legacy_to_trust_parses_once_and_writes_each_output_once(
        world: World, translator: Translator, kind: str) -> None:
    if kind == "letter":
        census, out = to_trust(translator, world, "martin", LETTER)
    else:
        report = (FIXTURES / "hprim" / "07-iono-crlf-12.hpr").read_bytes().decode("utf-8")
        census, out = to_trust(translator, world, "biolab", report.encode("cp850", "replace"))
        assert out.documents  # a report: the documents are made
    assert_parsed_once(census)
    # the opened message and the composed one, each written once; the signature wraps the
    # composed message as written (no third writing of it)
    assert [e.caller for e in census.serialisations()] == [
        "crypto.legacy.open", "translate.legacy_to_trust.compose"]
    outputs = [s.output_digest for s in out.trace.steps if s.stage in ("open", "compose")]
    assert len(set(outputs)) == 2


@pytest.mark.parametrize("recipients", [1, 2])
@pytest.mark.parametrize("kind", ["letter", "xdm"])
def test_trust_to_legacy_parses_once_and_writes_each_output_once(
        world: World, translator: Translator, kind: str, recipients: int) -> None:
    package = None
    if kind == "xdm":
        report = (FIXTURES / "hprim" / "01-glycemie-crlf-12.hpr").read_bytes().decode("utf-8")
        _, made = to_trust(translator, world, "biolab", report.encode("cp850", "replace"))
        package = made.message  # any bytes named IHE_XDM.ZIP would not do: a real package
        from email import message_from_bytes, policy

        package = next(p for p in message_from_bytes(made.message, policy=policy.default)
                       .walk() if p.get_filename() == "IHE_XDM.ZIP").get_content()
    to = [TRUST[u] for u in ("dupont", "martin")[:recipients]]
    translator.to_legacy(signed_by_dr_x(world, to, 0, package), Envelope(DR_X, tuple(to)),
                         now=NOW)
    raw = signed_by_dr_x(world, to, 1, package)
    with counting() as census:
        out = translator.to_legacy(raw, Envelope(DR_X, tuple(to)), now=NOW)
    assert len(out) == recipients
    if package is not None:
        assert all(t.documents for t in out)
    assert_parsed_once(census)  # the From check included, and for every recipient
    # per recipient: the letter composed, then sealed, each written once
    assert [e.caller for e in census.serialisations()] == [
        "translate.trust_to_legacy.compose", "crypto.legacy.seal_traced"] * recipients


# -- the header values read without the parser are read as the parser reads them -------------

VALUE_PIECES = st.sampled_from([
    "dr.x@hopital-a.mssante.example", "Dr X <dr.x@hopital-a.mssante.example>",
    '"Dupont, J" <j@x.example>', "a@b.example, c@d.example", "Groupe: a@b.example;",
    "=?utf-8?q?Dr_=C3=89ric?= <e@x.example>", "(commentaire) a@b.example", "<>", "@", "<a@",
    "José <josé@exämple.fr>", "a@xn--exmple-cua.fr", " ", "\t", ",", ";", ":", '"', "\\",
    "\r", "\n", "\x85", "\u2028", "\udcff", "x" * 80, ""])
VALUES = st.lists(VALUE_PIECES | st.text(max_size=12), max_size=5).map("".join)


def outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except PolicyError as exc:
        return ("refused", str(exc))


def seen(fields: Callable[[], list[Any]]) -> object:
    """What a reader of the fields sees: each one's class, text, defects and groups; or the
    failure's type."""
    try:
        return [(type(h).__name__, str(h), [type(d) for d in h.defects],
                 [(g.display_name, [(a.display_name, a.username, a.domain)
                                    for a in g.addresses]) for g in getattr(h, "groups", ())])
                for h in fields()]
    except Exception as exc:
        return type(exc).__name__


def parsed(name: str, value: str) -> list[Any]:
    """The fields as the email package gave them before: the value parsed as a message."""
    msg = email.parser.Parser(policy=email.policy.default).parsestr(f"{name}: {value}\n\n",
                                                                    headersonly=True)
    return msg.get_all(name) or []


@settings(max_examples=500, deadline=None, database=None)
@given(value=VALUES, name=st.sampled_from(["From", *senders.SECONDARY]))
def test_a_header_value_is_read_as_the_parser_reads_it(value: str, name: str) -> None:
    """A value read without the parser (``from_value``, ``field_addresses``) gives the
    fields the parse of it as a message gave; and the verdicts are the same."""
    if senders._LINE_BREAKS.isdisjoint(value):  # (else it is parsed)
        assert seen(lambda: [senders._as_field(name, value.lstrip(" \t"))]) == seen(
            lambda: parsed(name, value))
    assert outcome(lambda: senders.from_value(value)) == outcome(
        lambda: senders.from_address(f"From: {value}\n\n"))
    if name != "From":
        assert senders.field_addresses(name, value) == senders.secondary_addresses(
            f"{name}: {value}\n\n").get(name)


# -- a drawn boundary set without parsing is the field set_boundary parses -----------------

def tree(node: Any) -> object:
    """A parse tree as the header's readers see it: each node's class, attributes, text."""
    attributes = {k: v for k, v in vars(node).items() if k != "defects"}
    if isinstance(node, list):
        return (type(node).__name__, attributes, [tree(child) for child in node])
    return (type(node).__name__, attributes, str(node), node.token_type)


@settings(max_examples=300, deadline=None, database=None)
@given(digits=st.integers(0, sys.maxsize), subtype=st.sampled_from(
    ["mixed", "alternative", "related", "report"]), before=st.booleans())
def test_a_drawn_boundary_is_the_field_set_boundary_parses(digits: int, subtype: str,
                                                          before: bool) -> None:
    boundary = "=" * 15 + f"{digits:019d}" + "=="
    parts = []
    for _ in range(2):
        part = EmailMessage(policy=mime.POLICY)
        if before:
            part["Subject"] = "x"
        getattr(part, f"make_{subtype}")() if subtype != "report" else part.set_type(
            "multipart/report")
        part["X-After"] = "y"
        parts.append(part)
    parts[0].set_boundary(boundary)
    write.set_boundary(parts[1], boundary)
    (slow, fast) = (p["Content-Type"] for p in parts)
    assert "_wire_folded" in vars(fast) and "_wire_folded" not in vars(slow)  # not parsed
    assert [k for k, _ in parts[0].raw_items()] == [k for k, _ in parts[1].raw_items()]
    assert (type(fast), str(fast), fast.name, fast.params, fast.defects, fast.content_type) == (
        type(slow), str(slow), slow.name, slow.params, slow.defects, slow.content_type)
    assert tree(fast._parse_tree) == tree(slow._parse_tree)
    for policy in (mime.WIRE, mime.POLICY):
        assert policy.fold_binary("Content-Type", fast) == policy.fold_binary(
            "Content-Type", slow)
    assert write._folded("Content-Type", fast) == mime.WIRE.fold_binary("Content-Type", slow)
    assert parts[1].get_boundary() == boundary and parts[1].get_content_type() == (
        f"multipart/{subtype}")
    assert write.to_bytes(parts[1]) == parts[0].as_bytes(policy=mime.WIRE)
