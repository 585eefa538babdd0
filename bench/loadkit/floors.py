"""The floors a gateway phase is measured against (the transport floor is a `run_phase`
straight to the sink): the crypto floor, the gateway's own crypto classes in a tight loop."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import config
from gateway.crypto import smime
from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.pki import TrustAnchors
from gateway.crypto.world import USERS, World
from gateway.translate.factory import legacy_cipher
from loadkit.measure import agent_cpu
from loadkit.messages import Msg


def crypto_floor(world: World, legacy: Sequence[Msg], trust: Sequence[Msg], threads: int,
                 gateway_config: Path) -> dict[str, Any]:
    """The gateway's own crypto classes in a tight loop, ``threads`` at a time (the gateway
    translates on that many threads), through the legacy adapter the gateway's configuration
    ``gateway_config`` builds (``[legacy] adapter``)."""
    gw = LegacyCrypto(legacy_cipher(config.load(gateway_config)))
    identity = smime.SigningIdentity.load(world.cert("gateway-signing"),
                                          world.key("gateway-signing"))
    signer = smime.Smime(identity, TrustAnchors.load([world.ca_cert], [world.crl]))
    fpr = {u.legacy_address: world.fingerprints[u.key] for u in USERS}
    by_trust = {u.trust_address: world.fingerprints[u.key] for u in USERS}

    def to_trust(m: Msg) -> None:
        opened = gw.open(m.data, expected_signer=fpr[m.sender])
        signer.sign(opened.message)

    def to_legacy(m: Msg) -> None:
        content, _ = signer.verify(m.data, at=datetime.now(UTC))
        gw.seal(content, recipient=by_trust[m.rcpt])

    out: dict[str, Any] = {"threads": threads}
    for name, fn, msgs in (("legacy_to_trust", to_trust, legacy),
                           ("trust_to_legacy", to_legacy, trust)):
        c0 = os.times()
        agent0 = agent_cpu(world.gnupg_gateway)
        t0 = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, msgs))
        seconds = time.monotonic() - t0
        c1 = os.times()
        cpu = (c1.user + c1.system + c1.children_user + c1.children_system
               - c0.user - c0.system - c0.children_user - c0.children_system
               + agent_cpu(world.gnupg_gateway) - agent0)
        out[name] = {"n": len(msgs), "per_s": round(len(msgs) / seconds, 1),
                     "cpu_ms_per_msg": round(cpu / len(msgs) * 1000, 2)}
    return out
