"""Real TLS handshakes on 127.0.0.1 with the listener's and the sender's contexts."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.crypto.domainlist import DomainList, Publisher
from gateway.crypto.pki import TrustAnchors, client_tls_context, server_tls_context
from gateway.crypto.world import World
from gateway.errors import CertificateRejected


@dataclass
class TlsServer:
    port: int = 0
    peers: list[bytes] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server(world: World) -> Iterator[TlsServer]:
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    ctx = server_tls_context(world.cert("gateway-server"), world.key("gateway-server"),
                             anchors=anchors)
    state = TlsServer()
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(10)
    state.port = sock.getsockname()[1]

    def serve() -> None:
        while not state.done.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    if der:
                        state.peers.append(der)
                    tls.sendall(b"220 ok\r\n")
            except (ssl.SSLError, OSError) as exc:
                state.failures.append(type(exc).__name__)
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    state.done.set()
    with socket.create_connection(("127.0.0.1", state.port)):  # wake the blocked accept()
        pass
    thread.join(timeout=5)
    sock.close()


def connect(world: World, port: int, client: str | None, *,
            version: ssl.TLSVersion | None = None, ciphers: str | None = None) -> bytes:
    anchors = TrustAnchors.load([world.ca_cert])
    cert = world.cert(client) if client else None
    key = world.key(client) if client else None
    ctx = client_tls_context(cert, key, anchors=anchors)
    if version is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED  # what an old client offers
        ctx.maximum_version = version
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    if ciphers is not None:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


def test_good_client_is_verified_and_its_dn_matches_the_list(world: World,
                                                              server: TlsServer) -> None:
    assert connect(world, server.port, "hopital-a-client") == b"220 ok\r\n"
    listing = DomainList.parse(world.domain_list.read_bytes(), anchors=[world.ca_cert],
                               publisher=Publisher(world.cert("list-signer")))
    subject = listing.check_client("hopital-a.mssante.example", server.peers[0])
    assert subject == world.dn("hopital-a-client")


@pytest.mark.parametrize("client", [None, "evil-client", "revoked-client", "expired-client"])
def test_refused_at_tls_time(world: World, server: TlsServer, client: str | None) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        got = connect(world, server.port, client)
        if not got:  # TLS 1.3: the server's alert arrives on the first read
            raise ConnectionError("closed")
    assert server.peers == []


def test_unlisted_dn_is_refused_at_smtp_time(world: World, server: TlsServer) -> None:
    assert connect(world, server.port, "rogue-client") == b"220 ok\r\n"
    listing = DomainList.parse(world.domain_list.read_bytes(), anchors=[world.ca_cert],
                               publisher=Publisher(world.cert("list-signer")))
    with pytest.raises(CertificateRejected):
        listing.check_client("hopital-a.mssante.example", server.peers[0])
    with pytest.raises(CertificateRejected):
        listing.check_client("", server.peers[0])


def test_another_operators_certificate_for_a_domain_is_refused(world: World,
                                                                server: TlsServer) -> None:
    connect(world, server.port, "clinique-b-client")
    listing = DomainList.parse(world.domain_list.read_bytes(), anchors=[world.ca_cert],
                               publisher=Publisher(world.cert("list-signer")))
    with pytest.raises(CertificateRejected):
        listing.check_client("hopital-a.mssante.example", server.peers[0])
    assert listing.check_client("clinique-b.mssante.example", server.peers[0])


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(world: World, server: TlsServer,
                                      version: ssl.TLSVersion) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        connect(world, server.port, "hopital-a-client", version=version)


def test_tls12_suite_outside_the_mssante_list_is_refused(world: World,
                                                         server: TlsServer) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        connect(world, server.port, "hopital-a-client", ciphers="AES256-GCM-SHA384")
    # one of the four listed suites works
    assert connect(world, server.port, "hopital-a-client",
                   ciphers="ECDHE-RSA-AES128-SHA256") == b"220 ok\r\n"


def test_sender_refuses_a_server_from_another_ca(world: World, tmp_path: Path) -> None:
    evil = TrustAnchors.load([world.evil_ca_cert])
    ctx = client_tls_context(world.cert("gateway-client"), world.key("gateway-client"),
                             anchors=evil)
    anchors = TrustAnchors.load([world.ca_cert], [world.crl])
    sctx = server_tls_context(world.cert("hopital-a-server"), world.key("hopital-a-server"),
                              anchors=anchors)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    errors: list[str] = []

    def serve() -> None:
        conn, _ = sock.accept()
        try:
            sctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError) as exc:
            errors.append(type(exc).__name__)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pytest.raises(ssl.SSLCertVerificationError), \
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        ctx.wrap_socket(raw, server_hostname="localhost")
    t.join(timeout=5)
    sock.close()
