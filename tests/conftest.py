"""Shared test helpers: where the fixtures live."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.world import World, build_world
from tests.documents.crbio import Validator

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The `pki demo` world, built once per test session (real CA, real gpg keys)."""
    root = tmp_path_factory.mktemp("w")
    built = build_world(root / "world")
    yield built
    for home in [built.gnupg_gateway, *(Path(h) for h in built.gnupg_users.values())]:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


# -- parallel runs (pytest-xdist) -----------------------------------------------------------

QUIET = pytest.mark.xdist_group("quiet")
"""The tests that must not share the machine with each other: kill -9 at an instant of a load
(the bounds on possible duplicates are the product's promise, not to be widened), the
PostgreSQL scale-out, and the benchmarks' smoke runs (heavy load of their own; they measure
CPU).  Under ``make test`` (``--dist loadgroup``) they run one after the other on one worker,
never beside each other; without ``-n`` the mark does nothing."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup``, after pytest-xdist has given each grouped test its group
    (a ``@name`` suffix of its node id): stop if it could not, rather than let the QUIET
    tests run beside each other unseen (pytest 9.2 with pytest-xdist 3.8 does that)."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]:
            raise pytest.UsageError(
                f"pytest-xdist did not put {item.nodeid} in its xdist_group (pytest "
                f"{pytest.__version__}: see the pytest range in pyproject.toml)")


def free_port() -> int:
    """A port for a server started in another process (`passerelle serve`), given by the OS
    (port 0) and kept from being given again while that process starts.

    The port is left in TIME_WAIT by a connection made to it and closed from the server side:
    the kernel hands it to no other ``bind(0)`` (another xdist worker's server, another test's
    ``free_port``) for a minute, while a server that sets SO_REUSEADDR — asyncio's and
    uvloop's ``create_server`` do, so the daemon's listeners do — can bind it at once (and
    again after a kill -9)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = int(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                pass  # the server side closes first: its end of the pair is in TIME_WAIT
            client.recv(1)  # the FIN: the client side closes cleanly (no RST)
    return port


def legacy_client(world: World, user: str) -> LegacyCrypto:
    """What a legacy user's own software does: seal and open with their own key."""
    return LegacyCrypto(OpenPgpCipher(Path(world.gnupg_users[user]),
                                      gateway_fingerprint=world.fingerprints[user]))


def require_tool(name: str) -> None:
    """Skip a test whose tool is missing here; under CI (which installs it, see .ci/run) fail."""
    if shutil.which(name) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; CI must run this test (see .ci/run)")
        pytest.skip(f"{name} is not installed")


def require_library(name: str) -> None:
    """Skip a test whose shared library is missing here; under CI (which installs it, see
    .ci/run) fail."""
    from gateway.crypto import rnp

    if name == "rnp" and not rnp.available():
        if os.environ.get("CI"):
            pytest.fail("librnp is not installed; CI must run this test (see .ci/run)")
        pytest.skip("librnp is not installed")


def gateway_crypto(world: World, adapter: str = "openpgp") -> LegacyCrypto:
    """The gateway's legacy crypto, through gpg, sop or librnp (``legacy.adapter``)."""
    if adapter == "rnp":
        from gateway.crypto.rnp import RnpCipher

        require_library("rnp")
        return LegacyCrypto(RnpCipher(world.gnupg_gateway,
                                      gateway_fingerprint=world.fingerprints["gateway"]))
    if adapter == "sop":
        from gateway.crypto.sop import SopCipher

        require_tool("sqop")
        return LegacyCrypto(SopCipher(world.gnupg_gateway,
                                      gateway_fingerprint=world.fingerprints["gateway"]))
    return LegacyCrypto(OpenPgpCipher(world.gnupg_gateway,
                                      gateway_fingerprint=world.fingerprints["gateway"]))


@pytest.fixture(params=["openpgp", "sop", "rnp"])
def adapter(request: pytest.FixtureRequest) -> str:
    """Each OpenPGP adapter of the gateway: every verdict must be the same through each."""
    return str(request.param)


# -- PostgreSQL ------------------------------------------------------------------------------

PG_URL = os.environ.get("PASSERELLE_TEST_PG",
                        "postgresql://passerelle:passerelle@127.0.0.1:5432/passerelle_test")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The test database (``tools/pg-test-db.sh`` makes it; ``.ci/run`` runs that).  Without
    it the PostgreSQL tests are skipped with a message — except in CI, where they fail."""
    import psycopg

    from gateway.pgconn import safe_url

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        why = f"no PostgreSQL at {safe_url(PG_URL)} ({' '.join(str(exc).split())[:120]})"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must run the PostgreSQL tests (see tools/pg-test-db.sh)")
        pytest.skip(f"{why}: run `bash tools/pg-test-db.sh` to run these tests")
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh schema of the test database for one test, as a spool URL."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_server, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def crbio() -> Iterator[Validator]:
    """The agency's CR-BIO validator (schema + schematron, fixtures/ans/), compiled once per
    test session: Saxon's compile of the schematron takes seconds."""
    validator = Validator()
    yield validator
    validator.close()
