"""Legacy mail that is forged, unsigned, broken or not for us: bounced, never passed on.

The legacy listener cannot tell at SMTP time (nothing is decrypted before it is stored), so
each of these is accepted (250), then refused by the open stage: the recipient receives
nothing, and the envelope sender gets a sealed notice in French that quotes nothing of the
message (its sender was never verified: it is named by the gateway's reference).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import ADDR, TRUST, Harness
from tests.hostile.support import (
    OP_A,
    arrived,
    gpg,
    inline,
    letter,
    never_delivered,
    opened_notice,
    parsed,
    reasons,
    run,
    sealed,
    settled,
    transaction,
)

SECRET = "Kaliémie à 6,9 mmol/L, à revoir en urgence."
MSGID = "<hostile-crypto@medical33.legacy.example>"


def _forged_signer(world: World, gw: str) -> bytes:  # Dr Martin's key, Dr Dupont's envelope
    return gpg(world, "martin", "--armor", "--sign", "--encrypt", "-r", gw,
               data=SECRET.encode("cp1252"))


def _unsigned(world: World, gw: str) -> bytes:
    return gpg(world, "dupont", "--armor", "--encrypt", "-r", gw, data=SECRET.encode("cp1252"))


def _truncated(world: World, gw: str) -> bytes:
    armored = gpg(world, "dupont", "--armor", "--sign", "--encrypt", "-r", gw,
                  data=SECRET.encode("cp1252"))
    lines = armored.splitlines(keepends=True)
    return b"".join(lines[: len(lines) // 2])  # cut off in transit: no END line, half a packet


def _corrupt(world: World, gw: str) -> bytes:
    armored = gpg(world, "dupont", "--armor", "--sign", "--encrypt", "-r", gw,
                  data=SECRET.encode("cp1252"))
    lines = armored.splitlines(keepends=True)
    lines[3] = lines[3][-2::-1] + b"\n"  # one line of the packet body scrambled
    return b"".join(lines)


def _to_another_key(world: World, gw: str) -> bytes:  # encrypted to Dr Martin, not to us
    return gpg(world, "dupont", "--armor", "--sign", "--encrypt", "-r",
               world.fingerprints["martin"], data=SECRET.encode("cp1252"))


def _plaintext(world: World, gw: str) -> bytes:
    return SECRET.encode("cp1252")


def _unknown_signer(world: World, gw: str) -> bytes:
    home = world.root / "stranger-gnupg"
    if not home.exists():
        home.mkdir(mode=0o700)
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
                        "--quick-gen-key", ADDR["dupont"], "ed25519", "sign", "never"],
                       check=True, capture_output=True)
        pub = subprocess.run(["gpg", "--homedir", str(world.gnupg_gateway), "--armor",
                              "--export", gw], capture_output=True, check=True).stdout
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"], input=pub,
                       check=True, capture_output=True)
    try:
        return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--trust-model",
                               "always", "--armor", "--sign", "--encrypt", "-r", gw],
                              input=SECRET.encode(), capture_output=True, check=True).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                       capture_output=True)


Body = Callable[[World, str], bytes]


@pytest.mark.parametrize(("body", "kind"), [
    (_forged_signer, "wrong_signer"),
    (_unsigned, "unsigned"),
    (_truncated, "cannot_decrypt"),
    (_corrupt, "cannot_decrypt"),
    (_to_another_key, "cannot_decrypt"),
    (_plaintext, "not_encrypted"),
    (_unknown_signer, "unknown_key"),
], ids=["forged-signer", "unsigned", "truncated", "corrupt", "encrypted-to-another-key",
        "plaintext", "unknown-signer-key"])
def test_bad_legacy_crypto_is_bounced_not_delivered(world: World, tmp_path: Path, body: Body,
                                                    kind: str) -> None:
    async def scenario(h: Harness) -> None:
        raw = inline(ADDR["dupont"], OP_A, body(world, world.fingerprints["gateway"]),
                     msgid=MSGID)
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A], raw)
        assert s.data.startswith("250 2.0.0"), s.data  # nothing is opened at SMTP time
        await settled(h, s.queue_id, State.BOUNCED)
        assert reasons(h, s.queue_id)[0].startswith(f"{kind}:"), reasons(h, s.queue_id)
        notice = await arrived(h.hub, None, rcpt=ADDR["dupont"])
        assert notice.mail_from in ("", "<>")  # a notice never bounces back
        text = opened_notice(h, "dupont", notice)
        # unverified: anybody may have sent it under Dr Dupont's address, so the gateway's
        # sealed letter names it by its own reference and quotes nothing of it
        assert s.queue_id in text and "hopital-a.mssante.example" in text
        assert MSGID not in text and OP_A not in text
        assert "Kaliémie" not in text  # the original text is never echoed
        never_delivered(h, MSGID.encode(), to="trust")
        assert h.op_a.received == [] and h.op_b.received == []
        assert [r.rcpt_tos for r in h.hub.received] == [(ADDR["dupont"],)]  # the notice only
    run(world, tmp_path, scenario)


def test_forged_from_header_is_corrected_to_the_signer(world: World, tmp_path: Path) -> None:
    """Dr Dupont signs, but writes Dr Martin in From: the message goes out from Dr Dupont."""
    async def scenario(h: Harness) -> None:
        inner = letter(f"Dr Marie Martin <{ADDR['martin']}>", OP_A, SECRET.encode("cp1252"),
                       msgid=MSGID)
        s = await transaction(h, "legacy", ADDR["dupont"], [OP_A],
                              sealed(world, "dupont", inner.as_bytes()))
        assert s.data.startswith("250 2.0.0")
        got = await arrived(h.op_a, MSGID)
        msg = parsed(got.data)
        assert msg["From"] == f"Dr Jean Dupont <{TRUST['dupont']}>"
        assert TRUST["martin"] not in str(msg["From"])
    run(world, tmp_path, scenario)
