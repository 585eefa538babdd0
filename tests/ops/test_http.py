"""The ops endpoint over real HTTP on 127.0.0.1 (urllib in a thread; the server in the loop)."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from gateway.ops import http as ops_http
from gateway.ops.http import (
    OpsServer,
    Readiness,
    domain_list_fresh,
    keys_loaded,
    parse_listen,
    peers_reachable,
    spool_writable,
)
from gateway.ops.metrics import Metrics

T = TypeVar("T")


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def run(server: OpsServer, body: Callable[[OpsServer], Awaitable[T]]) -> T:
    async def main() -> T:
        async with server:
            return await body(server)

    return asyncio.run(main())


async def fetch(server: OpsServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    return await asyncio.to_thread(get, server.url + path, method)


def test_metrics_healthz_and_404_over_real_http() -> None:
    mx = Metrics(CollectorRegistry())
    mx.count_message("delivered", "to_trust")

    async def body(s: OpsServer) -> None:
        assert s.host == "127.0.0.1" and s.port > 0
        status, ctype, text = await fetch(s, "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert 'passerelle_messages_total{direction="to_trust",event="delivered",reason="ok"} 1.0' \
            in text
        mx.count_message("delivered", "to_trust")
        _, _, text = await fetch(s, "/metrics")
        assert 'reason="ok"} 2.0' in text
        assert await fetch(s, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
        assert (await fetch(s, "/nope"))[0] == 404
        assert (await fetch(s, "/metrics", "POST"))[0] == 405
        status, _, text = await fetch(s, "/healthz", "HEAD")
        assert status == 200 and text == ""

    run(OpsServer(mx.registry, port=0), body)


def test_readyz_turns_503_when_the_domain_list_goes_stale() -> None:
    age = {"seconds": 3600.0}
    ready = Readiness()
    ready.add("domain_list", domain_list_fresh(lambda: age["seconds"], max_age=48 * 3600))
    ready.add("spool", spool_writable(lambda: True))

    async def body(s: OpsServer) -> None:
        assert await fetch(s, "/readyz") == (200, "text/plain; charset=utf-8", "ready\n")
        age["seconds"] = 49 * 3600
        status, _, text = await fetch(s, "/readyz")
        assert status == 503
        assert text == "domain list stale: 49 h old (max 48 h)\n"
        age["seconds"] = 10.0
        assert (await fetch(s, "/readyz"))[0] == 200

    run(OpsServer(CollectorRegistry(), ready, port=0), body)


def test_readyz_lists_every_failing_check_one_per_line() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    def ping() -> bool:
        raise OSError("disk full")

    ready = Readiness()
    ready.add("spool", spool_writable(ping))
    ready.add("keys", keys_loaded(lambda: ["signing", "client"]))
    ready.add("list", domain_list_fresh(lambda: None))
    ready.add("custom", broken)
    ready.add("peers", peers_reachable(lambda: {"hub.legacy.example:25": False,
                                                "mx.op.example:25": True},
                                       required=["hub.legacy.example:25"]))  # fmt: skip

    async def body(s: OpsServer) -> None:
        status, _, text = await fetch(s, "/readyz")
        assert status == 503
        assert text.splitlines() == [
            "spool not writable: OSError",
            "keys not loaded: client, signing",
            "domain list not loaded",
            "custom: check failed (RuntimeError)",
            "peers unreachable: hub.legacy.example:25",
        ]

    run(OpsServer(CollectorRegistry(), ready, port=0), body)


def test_check_factories() -> None:
    assert keys_loaded(lambda: True)() is None
    assert keys_loaded(lambda: False)() == "keys not loaded"
    assert keys_loaded(lambda: [])() is None
    assert spool_writable(lambda: False)() == "spool not writable"
    assert spool_writable(lambda: None)() is None
    assert peers_reachable(lambda: {})() is None
    assert peers_reachable(lambda: {"a:25": False, "b:25": True})() is None
    assert peers_reachable(lambda: {"a:25": False, "b:25": False})() == \
        "peers unreachable: a:25, b:25"
    assert peers_reachable(lambda: {}, required=["hub:25"])() == "peers unreachable: hub:25"


def test_malformed_and_oversized_requests_are_answered_not_crashed() -> None:
    def raw(port: int, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    async def body(s: OpsServer) -> None:
        bad = await asyncio.to_thread(raw, s.port, b"GARBAGE\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")
        big = await asyncio.to_thread(
            raw, s.port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        )
        assert big.startswith(b"HTTP/1.1 431 ")
        ok = await asyncio.to_thread(raw, s.port, b"GET /healthz?x=1 HTTP/1.0\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\nok\n")

    run(OpsServer(CollectorRegistry(), port=0), body)


def test_stop_closes_the_port_and_a_silent_client_does_not_block_it() -> None:
    async def main() -> int:
        server = OpsServer(CollectorRegistry(), port=0)
        await server.start()
        port = server.port
        # a client that connects and says nothing: stop() must not wait for its timeout
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(10_000):  # yield to the loop until the server has taken the connection
            if server._clients:
                break
            await asyncio.sleep(0)
        assert server._clients
        await asyncio.wait_for(server.stop(), timeout=2)
        writer.close()
        await server.stop()  # idempotent
        return port

    port = asyncio.run(main())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:9325", ("127.0.0.1", 9325)), ("[::1]:80", ("::1", 80)),
     (":9325", ("127.0.0.1", 9325)), ("0.0.0.0:0", ("0.0.0.0", 0))],
)  # fmt: skip
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9325", "host:", "host:http", "h:70000"])
def test_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


def test_default_bind_is_loopback() -> None:
    assert ops_http.DEFAULT_HOST == "127.0.0.1"
    assert OpsServer(CollectorRegistry()).host == "127.0.0.1"


def test_scrape_helper_sees_which_families_moved() -> None:
    from tests.ops.scrape import scrape, still_families

    mx = Metrics(CollectorRegistry())

    async def body(s: OpsServer) -> set[str]:
        before = await asyncio.to_thread(scrape, s.url)
        mx.count_message("received", "to_trust")
        mx.observe_stage("accept", 0.01)
        after = await asyncio.to_thread(scrape, s.url)
        return still_families(before, after, ["passerelle_messages_total",
                                              "passerelle_stage_duration_seconds",
                                              "passerelle_retries_total"])  # fmt: skip

    assert run(OpsServer(mx.registry, port=0), body) == {"passerelle_retries_total"}
