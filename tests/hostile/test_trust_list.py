"""Forging the list of domains, against a running gateway with real TLS: entries hidden where
the signature does not reach (XML signature wrapping), a list signed by another certificate of
the CA (a doctor's S/MIME certificate), an older list copied over the one in force.  In every
case an operator the forgery tries to add (``mx.rogue.example``, a client certificate of the
right CA) is still refused at MAIL, and the list in force stays."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.crypto.domainlist import NS, DomainList, Publisher, write_list
from gateway.crypto.world import OPERATORS, World
from gateway.errors import TrustListError
from tests.daemon.harness import TRUST, Harness
from tests.hostile.support import letter, run, transaction

ROGUE = "dr.x@rogue.example"


def _entries(world: World) -> list[tuple[str, str]]:
    return [(domain, world.dn(f"{op}-client")) for op, domain in OPERATORS.items()]


def _rogue(world: World) -> bytes:
    return (f"<Domaine xmlns=\"{NS}\"><Nom>rogue.example</Nom><DNCertificatOperateur>"
            f"{world.dn('rogue-client')}</DNCertificatOperateur></Domaine>").encode()


def signed_by(world: World, who: str, generated: datetime, *, rogue: bool) -> bytes:
    entries = _entries(world) + ([("rogue.example", world.dn("rogue-client"))] if rogue else [])
    return write_list(entries, generated=generated, signer=(world.cert(who), world.key(who)))


def inside_signature(world: World) -> bytes:
    """The genuine signed list, with a Domaine placed in a ds:Object of its Signature."""
    genuine = signed_by(world, "list-signer", datetime.now(UTC) + timedelta(minutes=5),
                        rogue=False)
    return genuine.replace(b"</ds:Signature>", b"<ds:Object>" + _rogue(world)
                           + b"</ds:Object></ds:Signature>")


def wrapped(world: World) -> bytes:
    """A new root holding a rogue entry and, below it, the genuine signed list."""
    genuine = signed_by(world, "list-signer", datetime.now(UTC) + timedelta(minutes=5),
                        rogue=False)
    body = genuine.split(b"?>", 1)[1]
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S%z").encode()
    return (b'<?xml version="1.0" encoding="UTF-8"?><ListeBlanche xmlns="' + NS.encode()
            + b'"><DateDeGeneration>' + later + b"</DateDeGeneration>" + _rogue(world) + body
            + b"</ListeBlanche>")


def by_a_doctor(world: World) -> bytes:
    """A well-formed list with the rogue operator, validly signed — by the gateway's own
    S/MIME signing certificate, issued by the same CA as the list's publisher."""
    return signed_by(world, "gateway-signing", datetime.now(UTC) + timedelta(minutes=5),
                     rogue=True)


def older(world: World) -> bytes:
    """A genuine list of the publisher that listed rogue.example once — three days ago."""
    return signed_by(world, "list-signer", datetime.now(UTC) - timedelta(days=3), rogue=True)


FORGERIES: dict[str, Callable[[World], bytes]] = {
    "entry-inside-signature": inside_signature, "wrapped-root": wrapped,
    "signed-by-another-certificate": by_a_doctor, "rollback": older}


async def _rogue_refused(h: Harness) -> None:
    raw = letter(ROGUE, TRUST["dupont"], "x", msgid="<forged@rogue.example>")
    s = await transaction(h, "trust", ROGUE, [TRUST["dupont"]], raw.as_bytes(),
                          client="rogue-client")
    assert s.mail.startswith("550"), s.mail
    assert h.gateway.spool.counts() == {}


def _in_force(tmp_path: Path, world: World) -> Path:
    store = tmp_path / "lists" / "domains.xml"
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(world.domain_list, store)
    return store


def test_the_entry_inside_the_signature_still_verifies(world: World) -> None:
    """The wrapping forgery is a real one: its signature verifies, only the reading differs."""
    listing = DomainList.parse(inside_signature(world), anchors=[world.ca_cert],
                               publisher=Publisher(world.cert("list-signer")))
    assert listing.signed_by and not listing.is_listed("rogue.example")
    assert listing.is_listed("hopital-a.mssante.example")


@pytest.mark.parametrize("forgery", list(FORGERIES), ids=list(FORGERIES))
def test_a_forged_list_copied_in_and_reloaded_adds_no_operator(world: World, tmp_path: Path,
                                                               forgery: str) -> None:
    store = _in_force(tmp_path, world)

    async def scenario(h: Harness) -> None:
        await _rogue_refused(h)
        store.write_bytes(FORGERIES[forgery](world))
        h.gateway.reload()  # what SIGHUP does
        await _rogue_refused(h)
        assert h.gateway.domains.current().is_listed("hopital-a.mssante.example")
    run(world, tmp_path, scenario, overrides={"trust": {"domain_list": str(store)}})


@pytest.mark.parametrize("forgery", list(FORGERIES), ids=list(FORGERIES))
def test_whitelist_import_of_a_forged_list_adds_no_operator(world: World, tmp_path: Path,
                                                            forgery: str) -> None:
    store = _in_force(tmp_path, world)
    forged = tmp_path / "forged.xml"
    forged.write_bytes(FORGERIES[forgery](world))
    cfg = world.write_config(tmp_path / "passerelle.toml", tmp_path / "state",
                             {"trust": {"domain_list": str(store)}})
    done = subprocess.run([sys.executable, "-m", "gateway", "whitelist", "import", str(forged),
                           "--config", str(cfg)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert "Traceback" not in done.stderr
    if done.returncode != 0:  # refused in one line; else only what the publisher signed counts
        assert done.returncode == 65 and len(done.stderr.strip().splitlines()) == 1
    from gateway import config
    from gateway.translate.factory import domain_list_store

    listing = domain_list_store(config.load(cfg))
    assert listing is not None and not listing.current().is_listed("rogue.example")


def test_an_unsigned_list_is_refused_unless_the_test_flag_says_otherwise(world: World,
                                                                        tmp_path: Path) -> None:
    from gateway import config
    from gateway.translate.factory import domain_list_store

    cfg = world.write_config(tmp_path / "a.toml", tmp_path / "state",
                             {"trust": {"domain_list": str(world.domain_list_unsigned)}})
    store = domain_list_store(config.load(cfg))
    assert store is not None
    with pytest.raises(TrustListError, match="not signed"):
        store.current()
    cfg = world.write_config(tmp_path / "b.toml", tmp_path / "state",
                             {"trust": {"domain_list": str(world.domain_list_unsigned),
                                        "accept_unsigned_list": True}})
    store = domain_list_store(config.load(cfg))
    assert store is not None and store.current().is_listed("hopital-a.mssante.example")
