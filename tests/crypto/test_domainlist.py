"""The list of domains: signature, age, atomic swap, IDN lookups."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.crypto.domainlist import DomainList, DomainListStore, Publisher, write_list
from gateway.crypto.world import World
from gateway.errors import TrustListError


def signed_list(world: World, generated: datetime,
                entries: list[tuple[str, str]] | None = None) -> bytes:
    entries = entries or [("hopital-a.mssante.example", world.dn("hopital-a-client"))]
    return write_list(entries, generated=generated,
                      signer=(world.cert("list-signer"), world.key("list-signer")))


def publisher(world: World) -> Publisher:
    return Publisher(world.cert("list-signer"))


def store_at(world: World, path: Path) -> DomainListStore:
    return DomainListStore(path, anchors=[world.ca_cert], publisher=publisher(world))


def test_signed_list_parses_with_idn_lookups(world: World) -> None:
    listing = DomainList.parse(world.domain_list.read_bytes(), anchors=[world.ca_cert],
                               publisher=publisher(world))
    assert listing.signed_by is not None and "LISTE BLANCHE" in listing.signed_by
    assert listing.is_listed("HOPITAL-A.mssante.example")
    assert listing.is_listed("médecins-c.mssante.example")
    assert listing.is_listed("xn--mdecins-c-b4a.mssante.example")
    assert not listing.is_listed("gmail.com")
    entry = listing.lookup("médecins-c.mssante.example")
    assert entry is not None and entry.dn == world.dn("medecins-c-client")


def test_tampered_list_is_refused_and_previous_stays(world: World, tmp_path: Path) -> None:
    store = store_at(world, tmp_path / "domains.xml")
    now = datetime.now(UTC)
    store.install(signed_list(world, now))
    tampered = signed_list(world, now + timedelta(hours=1)).replace(
        b"hopital-a.mssante.example", b"pirate-a.mssante.example", 1)
    with pytest.raises(TrustListError, match="does not verify"):
        store.install(tampered)
    assert store.current().is_listed("hopital-a.mssante.example")
    assert DomainList.parse((tmp_path / "domains.xml").read_bytes(), anchors=[world.ca_cert],
                            publisher=publisher(world)).is_listed("hopital-a.mssante.example")


def test_older_list_is_refused(world: World, tmp_path: Path) -> None:
    store = store_at(world, tmp_path / "domains.xml")
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
    assert store_at(world, tmp_path / "domains.xml").current().is_listed(
        "clinique-b.mssante.example")


def test_an_unsigned_list_is_read_only_when_explicitly_allowed(world: World) -> None:
    with pytest.raises(TrustListError, match="not signed"):
        DomainList.parse(world.domain_list_unsigned.read_bytes())  # the default
    assert DomainList.parse(world.domain_list_unsigned.read_bytes(),
                            require_signature=False).is_listed("clinique-b.mssante.example")


def test_signer_from_another_ca_is_refused(world: World) -> None:
    with pytest.raises(TrustListError, match="not trusted"):
        DomainList.parse(world.domain_list.read_bytes(), anchors=[world.evil_ca_cert],
                         publisher=publisher(world))


def test_a_signed_list_without_a_configured_publisher_is_refused(world: World) -> None:
    with pytest.raises(TrustListError, match="no publisher of the list is configured"):
        DomainList.parse(world.domain_list.read_bytes(), anchors=[world.ca_cert])


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
                               str(world.ca_cert), "--signer-cert", str(world.cert("list-signer"))],
                              capture_output=True, text=True, check=False)

    ok = run(world.domain_list)
    assert ok.returncode == 0 and "4 domains" in ok.stdout
    older = tmp_path / "older.xml"
    older.write_bytes(signed_list(world, datetime.now(UTC) - timedelta(days=3)))
    refused = run(older)
    assert refused.returncode == 65
    assert refused.stderr.count("\n") == 1 and "older" in refused.stderr
    assert store_at(world, store).current().is_listed(
        "clinique-b.mssante.example")
