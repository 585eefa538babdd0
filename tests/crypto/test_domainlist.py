"""The list of domains: signature, age, atomic swap, IDN lookups."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.crypto.domainlist import DomainList, DomainListStore, write_list
from gateway.crypto.world import World
from gateway.errors import TrustListError


def signed_list(world: World, generated: datetime,
                entries: list[tuple[str, str]] | None = None) -> bytes:
    entries = entries or [("hopital-a.mssante.example", world.dn("hopital-a-client"))]
    return write_list(entries, generated=generated,
                      signer=(world.cert("list-signer"), world.key("list-signer")))


def test_signed_list_parses_with_idn_lookups(world: World) -> None:
    listing = DomainList.parse(world.domain_list.read_bytes(), anchors=[world.ca_cert],
                               require_signature=True)
    assert listing.signed_by is not None and "LISTE BLANCHE" in listing.signed_by
    assert listing.is_listed("HOPITAL-A.mssante.example")
    assert listing.is_listed("médecins-c.mssante.example")
    assert listing.is_listed("xn--mdecins-c-b4a.mssante.example")
    assert not listing.is_listed("gmail.com")
    entry = listing.lookup("médecins-c.mssante.example")
    assert entry is not None and entry.dn == world.dn("medecins-c-client")


def test_tampered_list_is_refused_and_previous_stays(world: World, tmp_path: Path) -> None:
    store = DomainListStore(tmp_path / "domains.xml", anchors=[world.ca_cert])
    now = datetime.now(UTC)
    store.install(signed_list(world, now))
    tampered = signed_list(world, now + timedelta(hours=1)).replace(
        b"hopital-a.mssante.example", b"pirate-a.mssante.example", 1)
    with pytest.raises(TrustListError, match="does not verify"):
        store.install(tampered)
    assert store.current().is_listed("hopital-a.mssante.example")
    assert DomainList.parse((tmp_path / "domains.xml").read_bytes(),
                            anchors=[world.ca_cert]).is_listed("hopital-a.mssante.example")


def test_older_list_is_refused(world: World, tmp_path: Path) -> None:
    store = DomainListStore(tmp_path / "domains.xml", anchors=[world.ca_cert])
    now = datetime.now(UTC)
    store.install(signed_list(world, now))
    with pytest.raises(TrustListError, match="older"):
        store.install(signed_list(world, now - timedelta(days=1), [
            ("clinique-b.mssante.example", world.dn("clinique-b-client"))]))
    assert not store.current().is_listed("clinique-b.mssante.example")
    # a newer one replaces it, and the previous good copy is kept beside it
    store.install(signed_list(world, now + timedelta(days=1), [
        ("clinique-b.mssante.example", world.dn("clinique-b-client"))]))
    assert store.current().is_listed("clinique-b.mssante.example")
    assert (tmp_path / "domains.xml.prev").exists()
    assert DomainListStore(tmp_path / "domains.xml", anchors=[world.ca_cert]).current().is_listed(
        "clinique-b.mssante.example")


def test_unsigned_list_when_a_signature_is_required(world: World) -> None:
    with pytest.raises(TrustListError, match="not signed"):
        DomainList.parse(world.domain_list_unsigned.read_bytes(), require_signature=True)
    assert DomainList.parse(world.domain_list_unsigned.read_bytes()).is_listed(
        "clinique-b.mssante.example")


def test_signer_from_another_ca_is_refused(world: World) -> None:
    with pytest.raises(TrustListError, match="not trusted"):
        DomainList.parse(world.domain_list.read_bytes(), anchors=[world.evil_ca_cert])


@pytest.mark.parametrize("bad", [
    b"<not xml",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
    b"<ListeBlanche><Domaine><Nom>a.example</Nom></Domaine></ListeBlanche>",
])
def test_malformed_lists_are_refused(bad: bytes) -> None:
    with pytest.raises(TrustListError):
        DomainList.parse(bad)


def test_whitelist_import_cli(world: World, tmp_path: Path) -> None:
    store = tmp_path / "state" / "domains.xml"

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "whitelist", "import",
                               str(path), "--store", str(store), "--anchors",
                               str(world.ca_cert)], capture_output=True, text=True, check=False)

    ok = run(world.domain_list)
    assert ok.returncode == 0 and "4 domains" in ok.stdout
    older = tmp_path / "older.xml"
    older.write_bytes(signed_list(world, datetime.now(UTC) - timedelta(days=3)))
    refused = run(older)
    assert refused.returncode == 65
    assert refused.stderr.count("\n") == 1 and "older" in refused.stderr
    assert DomainListStore(store, anchors=[world.ca_cert]).current().is_listed(
        "clinique-b.mssante.example")
