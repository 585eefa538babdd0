"""The sender is bound to who authenticated, both ways (issue 21, class 2).

Trust side: the ``From`` — parsed as addresses, never searched as text — must be one mailbox
in a domain the list publishes for the client certificate; a null envelope sender carries
only a report; an S/MIME signer must name the ``From``.  Legacy side: a ``From`` that is not
exactly the signer's mailbox is corrected to the signer.
"""

from __future__ import annotations

import email.policy
from pathlib import Path

import pytest

from gateway.crypto import smime
from gateway.crypto.world import World
from gateway.spool import State
from tests.conftest import legacy_client
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    letter,
    never_delivered,
    parsed,
    reasons,
    run,
    sealed,
    settled,
    transaction,
)

OP_B = "dr.y@clinique-b.mssante.example"


def _trust_letter(from_field: str, *, msgid: str, extra: str = "") -> bytes:
    """A trust-space letter with its From written as given (raw: tricks kept as written)."""
    return (f"From: {from_field}\r\n{extra}To: {TRUST['durand']}\r\nSubject: Courrier\r\n"
            f"Message-ID: {msgid}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Bonjour.\r\n").encode()


@pytest.mark.parametrize("from_field", [
    OP_B,  # another operator's doctor
    ADDR["martin"],  # a legacy colleague
    f'"{OP_A}" <{OP_B}>',  # the operator's own address in the display name only
    f"{OP_A.split('@')[0]} <{OP_B}> (sent by {OP_A})",  # … or in a comment
    f"=?utf-8?q?{OP_A.replace('@', '=40')}?= <{OP_B}>",  # … or in an encoded-word
    f"=?utf-8?q?{OP_A.replace('@', '=40')}?=",  # an encoded-word and no address at all
    f"Medecins: {OP_A};",  # group syntax
    f"{OP_A}, {OP_B}",  # two mailboxes
    f"{OP_A}\r\nFrom: {OP_B}",  # two From fields
    f"<{OP_A}> {OP_B}",  # text after the address
    "dr.x@hopital-a.mssante.example.evil.example",  # the listed domain as a prefix
    "dr.x@h\u043epital-a.mssante.example",  # a homograph (Cyrillic o) of the listed domain
], ids=["other-operator", "legacy-colleague", "display-name", "comment", "encoded-word",
        "encoded-word-only", "group", "two-mailboxes", "two-fields", "trailing-text",
        "domain-prefix", "homograph"])
def test_trust_from_must_be_the_authenticated_operators(world: World, tmp_path: Path,
                                                        from_field: str) -> None:
    """Whatever the From tries, a message whose one mailbox is not in the client
    certificate's listed domain is refused at DATA (550 5.7.1), nothing stored or sent."""
    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", OP_A, [TRUST["durand"]],
                              _trust_letter(from_field, msgid="<bind@x.example>"),
                              client="hopital-a-client")
        assert s.mail.startswith("250"), s.mail
        assert s.data.startswith("550 5.7.1"), s.data
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<bind@x.example>")
    run(world, tmp_path, scenario)


def test_trust_from_in_the_operators_domain_is_accepted(world: World, tmp_path: Path) -> None:
    """The same operator's other mailbox, with a display name that names someone else, is
    its own: accepted (the binding is by domain, the display name is only text)."""
    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", OP_A, [TRUST["durand"]],
                              _trust_letter(f'"{OP_B}" <secretariat@hopital-a.mssante.example>',
                                            msgid="<own@x.example>"),
                              client="hopital-a-client")
        assert s.data.startswith("250"), s.data
        await arrived(h.hub, None, rcpt=ADDR["durand"])
    run(world, tmp_path, scenario)


def test_trust_null_sender_carries_only_reports(world: World, tmp_path: Path) -> None:
    """A null envelope sender with a letter (not a DSN or MDN) is refused at DATA."""
    async def scenario(h: Harness) -> None:
        s = await transaction(h, "trust", "<>", [TRUST["durand"]],
                              _trust_letter(OP_A, msgid="<null@x.example>"),
                              client="hopital-a-client")
        assert s.data.startswith("550 5.7.1"), s.data
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<null@x.example>")
    run(world, tmp_path, scenario)


@pytest.mark.parametrize("from_field", [
    "autre@hopital-a.mssante.example",  # the operator's domain, not the signer's mailbox
    '"dr.x@hopital-a.mssante.example" <autre@hopital-a.mssante.example>',
], ids=["other-mailbox", "signer-in-display-name"])
def test_smime_signer_must_be_the_from(world: World, tmp_path: Path, from_field: str) -> None:
    """Signed by Dr X's certificate under another mailbox's From: accepted by the listener
    (the domain is the operator's) but bounced as a sender mismatch, never delivered."""
    async def scenario(h: Harness) -> None:
        identity = smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                              world.key("hopital-a-signing"))
        raw = smime.sign(_trust_letter(from_field, msgid="<signer@x.example>"), identity)
        s = await transaction(h, "trust", OP_A, [TRUST["durand"]], raw,
                              client="hopital-a-client")
        assert s.data.startswith("250"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        assert all("sender_mismatch" in r for r in reasons(h, s.queue_id))
        assert not [r for r in h.hub.received if ADDR["durand"] in r.rcpt_tos]
    run(world, tmp_path, scenario)


def test_smime_signer_that_is_the_from_is_delivered(world: World, tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        identity = smime.SigningIdentity.load(world.cert("hopital-a-signing"),
                                              world.key("hopital-a-signing"))
        raw = smime.sign(_trust_letter(f"Dr X <{OP_A}>", msgid="<signed@x.example>"),
                         identity)
        s = await transaction(h, "trust", OP_A, [TRUST["durand"]], raw,
                              client="hopital-a-client")
        assert s.data.startswith("250"), s.data
        await arrived(h.hub, None, rcpt=ADDR["durand"])
    run(world, tmp_path, scenario)


@pytest.mark.parametrize("from_field", [
    f'"{TRUST["martin"]}" <{ADDR["dupont"]}>',  # the signer's address as display name
    f"{ADDR['martin']} <{ADDR['dupont']}>",
    f"{ADDR['dupont']}, {ADDR['martin']}",  # the signer among two
    f"Cabinet: {ADDR['martin']};",  # group syntax
], ids=["quoted-display-name", "bare-display-name", "two-mailboxes", "group"])
def test_legacy_from_that_is_not_the_signer_is_corrected(world: World, tmp_path: Path,
                                                         from_field: str) -> None:
    """Martin signs a letter whose From names Dr Dupont with Martin's address only as text:
    the letter reaches the trust space from Martin's own alias, nobody else's."""
    async def scenario(h: Harness) -> None:
        m = letter(ADDR["martin"], OP_A, b"Bonjour.", msgid="<legacy-from@x.example>")
        del m["From"]
        m["From"] = from_field
        raw = sealed(world, "martin", m.as_bytes(policy=email.policy.SMTP))
        s = await transaction(h, "legacy", ADDR["martin"], [OP_A], raw)
        assert s.data.startswith("250"), s.data
        got = parsed((await arrived(h.op_a, "<legacy-from@x.example>")).data)
        boxes = got["From"].addresses
        assert [b.addr_spec for b in boxes] == [TRUST["martin"]]
        assert ADDR["dupont"] not in str(got["From"]) and TRUST["dupont"] not in str(got["From"])
    run(world, tmp_path, scenario)


def test_reply_to_outside_the_senders_domain_is_removed(world: World, tmp_path: Path) -> None:
    """A trust-space letter whose Reply-To points at another operator reaches the clinician
    without it (their answer would go elsewhere); one within the sender's domain is kept."""
    async def scenario(h: Harness) -> None:
        for msgid, reply_to, kept in (("<rt-out@x.example>", OP_B, False),
                                      ("<rt-in@x.example>", "secretariat@hopital-a.mssante.example",
                                       True)):
            s = await transaction(h, "trust", OP_A, [TRUST["durand"]],
                                  _trust_letter(OP_A, msgid=msgid,
                                                extra=f"Reply-To: {reply_to}\r\n"),
                                  client="hopital-a-client")
            assert s.data.startswith("250"), s.data
            await settled(h, s.queue_id, State.DELIVERED)
            r = [r for r in h.hub.received if ADDR["durand"] in r.rcpt_tos][-1]
            opened = legacy_client(world, "durand").open(
                r.data, expected_signer=world.fingerprints["gateway"])
            head = opened.message.split(b"\r\n\r\n", 1)[0]
            assert (reply_to.encode() in head) is kept, head
    run(world, tmp_path, scenario)
