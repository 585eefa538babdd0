"""Shared test helpers: where the fixtures live."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.world import World, build_world

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


def legacy_client(world: World, user: str) -> LegacyCrypto:
    """What a legacy user's own software does: seal and open with their own key."""
    return LegacyCrypto(OpenPgpCipher(Path(world.gnupg_users[user]),
                                      gateway_fingerprint=world.fingerprints[user]))


def gateway_crypto(world: World) -> LegacyCrypto:
    return LegacyCrypto(OpenPgpCipher(world.gnupg_gateway,
                                      gateway_fingerprint=world.fingerprints["gateway"]))
