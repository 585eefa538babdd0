"""Who may speak on the trust listener: client certificates and TLS versions."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest

from gateway.crypto.world import World
from tests.daemon.harness import TRUST, Harness
from tests.hostile.support import OP_A, letter, never_delivered, run, transaction


async def _handshake_refused(h: Harness, port: int, ctx: ssl.SSLContext) -> None:
    """STARTTLS with ``ctx`` never leads to a transaction: the handshake (or, in TLS 1.3,
    the first read after it) fails."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True, tls_context=ctx,
                           timeout=10)
    with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError, OSError)):
        await smtp.connect()
        await smtp.ehlo()
        await smtp.mail(OP_A)
    smtp.close()


@pytest.mark.parametrize("client", [None, "evil-client", "revoked-client", "expired-client"],
                         ids=["absent", "wrong-ca", "revoked", "expired"])
def test_client_certificate_refused_at_handshake(world: World, tmp_path: Path,
                                                 client: str | None) -> None:
    async def scenario(h: Harness) -> None:
        await _handshake_refused(h, h.trust_port, h.tls(client))
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)


def test_no_starttls_no_mail(world: World, tmp_path: Path) -> None:
    """A plaintext session on the trust listener gets 530 5.7.0 at MAIL (RFC 3207)."""
    async def scenario(h: Harness) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=h.trust_port, start_tls=False,
                               timeout=10)
        await smtp.connect()
        await smtp.ehlo()
        reply = await smtp.execute_command(b"MAIL", f"FROM:<{OP_A}>".encode())
        assert (reply.code, reply.message[:5]) == (530, "5.7.0")
        reply = await smtp.execute_command(b"RCPT", f"TO:<{TRUST['dupont']}>".encode())
        assert reply.code >= 500
        await smtp.quit()
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)


@pytest.mark.parametrize(("client", "sender"), [
    ("rogue-client", OP_A),  # a certificate of the right CA, DN on no list
    ("clinique-b-client", OP_A),  # another operator's certificate for hopital-a's domain
], ids=["unlisted-dn", "other-operators-dn"])
def test_dn_mismatch_refused_at_mail(world: World, tmp_path: Path, client: str,
                                     sender: str) -> None:
    async def scenario(h: Harness) -> None:
        raw = letter(sender, TRUST["dupont"], "x", msgid="<dn@hopital-a.mssante.example>")
        s = await transaction(h, "trust", sender, [TRUST["dupont"]], raw.as_bytes(),
                              client=client)
        assert s.mail.startswith("550 5.7.1"), s.mail
        assert s.rcpt == [] and s.data == ""
        assert h.gateway.spool.counts() == {}
        never_delivered(h, b"<dn@hopital-a.mssante.example>")
    run(world, tmp_path, scenario)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["tls1.0", "tls1.1"])
@pytest.mark.parametrize("side", ["legacy", "trust"])
def test_old_tls_offered_is_refused(world: World, tmp_path: Path, version: ssl.TLSVersion,
                                    side: str) -> None:
    async def scenario(h: Harness) -> None:
        ctx = h.tls("hopital-a-client")
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED  # what an old client offers
        ctx.maximum_version = version
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        await _handshake_refused(h, h.legacy_port if side == "legacy" else h.trust_port, ctx)
        assert h.gateway.spool.counts() == {}
    run(world, tmp_path, scenario)
