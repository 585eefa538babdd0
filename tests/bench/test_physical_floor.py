"""The physical floor of the load bench (`bench/loadkit/floors.py`): the in-process crypto a
message needs, measured with `cryptography` on a 20 KB letter.  It checks that every
operation was measured and that the totals are what they say, never how fast anything was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.crypto.world import World

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from loadkit.floors import against_physical_floor, physical_floor  # noqa: E402


def test_physical_floor_measures_each_operation_of_each_direction(world: World) -> None:
    floor = physical_floor(world, rounds=2, reps=3)
    assert floor["payload_bytes"] == 20 * 1024
    assert all(us > 0 for us in floor["op_us"].values()), floor["op_us"]
    for direction, ops in (("legacy_to_trust", {"unwrap_x25519", "verify_ed25519",
                                                "aes_decrypt", "inflate", "smime_sign"}),
                           ("trust_to_legacy", {"smime_verify", "deflate", "sign_ed25519",
                                                "wrap_x25519", "aes_encrypt"})):
        d = floor[direction]
        assert set(d["ops"]) == ops
        assert d["ms_per_msg"] == pytest.approx(
            sum(floor["op_us"][op] for op in ops) / 1000, abs=0.002)
        assert d["ms_per_msg_rsa2048"] > 0


def test_a_phase_is_told_how_many_times_the_floor_its_cpu_is() -> None:
    phase = {"cpu_ms_per_msg": {"gateway": 12.0, "gpg_children": 7.0, "gpg_agent": 1.0,
                                "total": 20.0},
             "gateway_cpu_ms_per_msg": {"daemon": 5.0, "workers": 7.0}}
    against_physical_floor(phase, 0.8)
    assert phase["cpu_x_physical_floor"] == {"total": 25.0, "daemon_and_workers": 15.0}
