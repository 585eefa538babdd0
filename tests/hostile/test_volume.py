"""Hostile volume: what a message decrypts to is bounded while it decrypts.

A few kilobytes of OpenPGP can hold a compressed part that expands a thousandfold and more
(bzip2 of zeros: 3 KB for 1 GB).  Each adapter counts the plaintext as its tool writes it and
stops the tool past ``limits.max_decrypted_part``; the parts of one message together stop at
``limits.max_decrypted_message``.  The message is refused for good: bounced to its sender
(``too_big``), never deferred and retried until its lifetime is over.
"""

from __future__ import annotations

import resource
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.conftest import require_tool
from tests.daemon.harness import ADDR, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    inline,
    letter,
    never_delivered,
    opened_notice,
    reasons,
    run,
    sealed,
    settled,
    transaction,
)

MIB = 1 << 20


def bomb(world: World, user: str, size: int) -> bytes:
    """``size`` zero octets, signed by ``user`` and encrypted to the gateway, bzip2-compressed
    inside the encryption: a few kilobytes of armour."""
    gw = world.fingerprints["gateway"]
    zeros = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            ["gpg", "--homedir", world.gnupg_users[user], "--batch", "--trust-model", "always",
             "--compress-algo", "bzip2", "-z", "9", "--armor", "--sign", "--encrypt", "-r", gw],
            stdin=zeros.stdout, capture_output=True, check=True)
    finally:
        assert zeros.stdout is not None
        zeros.stdout.close()
        zeros.wait()
    return done.stdout


def _bounced_too_big(h: Harness, queue_id: str, msgid: str) -> None:
    assert reasons(h, queue_id)[0].startswith("too_big:"), reasons(h, queue_id)
    never_delivered(h, msgid.encode(), to="trust")


@pytest.mark.parametrize("adapter", ["openpgp", "sop", "rnp"])
def test_a_decompression_bomb_is_stopped_while_decrypting(world: World, tmp_path: Path,
                                                           adapter: str) -> None:
    """64 MB of zeros in 3 KB, against a 1 MiB limit per part: each adapter stops the tool,
    the gateway's memory does not grow by the plaintext, and the sender is told."""
    if adapter == "sop":
        require_tool("sqop")
    armour = bomb(world, "dupont", 64 * MIB)
    assert len(armour) < 8 * 1024
    msgid = "<bomb@medical33.legacy.example>"

    async def scenario(h: Harness) -> None:
        started = time.monotonic()
        tracemalloc.start()  # the gateway runs in this process (its workers are threads)
        try:
            tracemalloc.reset_peak()
            s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                                  inline(ADDR["dupont"], OP_A, armour, msgid=msgid))
            assert s.data.startswith("250 2.0.0"), s.data
            await settled(h, s.queue_id, State.BOUNCED)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert time.monotonic() - started < 20
        assert peak < 16 * MIB, f"the gateway held {peak} bytes at once"
        _bounced_too_big(h, s.queue_id, msgid)
        notice = await arrived(h.hub, None, rcpt=ADDR["dupont"])
        assert notice.mail_from in ("", "<>")
        # refused before its sender was verified: named by our reference, nothing quoted
        assert s.queue_id in opened_notice(h, "dupont", notice)
    run(world, tmp_path, scenario, overrides={
        "limits": {"max_decrypted_part": MIB},
        "legacy": {"adapter": adapter}})


def test_parts_that_together_decrypt_past_the_message_limit_are_refused(
        world: World, tmp_path: Path) -> None:
    """Each part under the per-part limit, all of them over the per-message one."""
    msgid = "<many-parts@medical33.legacy.example>"
    text = b"".join(b"Ligne %06d du compte rendu.\r\n" % i for i in range(24_000))  # ~700 KB
    assert 600_000 < len(text) < MIB

    async def scenario(h: Harness) -> None:
        m = letter(ADDR["dupont"], OP_A, text, msgid=msgid)
        m.add_attachment(text, maintype="text", subtype="plain", filename="annexe.txt")
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              sealed(world, "dupont", m.as_bytes()))
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.BOUNCED)
        _bounced_too_big(h, s.queue_id, msgid)
    run(world, tmp_path, scenario, overrides={
        "limits": {"max_decrypted_part": MIB, "max_decrypted_message": MIB}})


@pytest.mark.slow
def test_a_one_gigabyte_bomb_is_stopped_at_the_default_limit(world: World,
                                                             tmp_path: Path) -> None:
    """The issue's case: 1 GB in a few kilobytes, under the default limits (4 × 30 MB)."""
    armour = bomb(world, "dupont", 1 << 30)
    assert len(armour) < 8 * 1024
    msgid = "<gigabomb@medical33.legacy.example>"

    async def scenario(h: Harness) -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              inline(ADDR["dupont"], OP_A, armour, msgid=msgid))
        await settled(h, s.queue_id, State.BOUNCED, timeout=60)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        assert grown < 400 * MIB, f"the gateway grew by {grown} bytes"
        _bounced_too_big(h, s.queue_id, msgid)
    run(world, tmp_path, scenario)
