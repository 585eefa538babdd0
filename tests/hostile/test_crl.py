"""Revocation is live: a new CRL counts without a restart, an expired one is said, not hidden.

The CRL in force is a copy in the test's own directory (the CA of the shared test world signs
new ones with :meth:`World.write_crl`): the case publishes a CRL that revokes an operator's
client certificate, and the running gateway must refuse that certificate at the handshake —
after SIGHUP (what ``systemctl reload`` sends: :meth:`Gateway.reload`) or by itself when the
file changes — while the other operators go on.  An expired CRL (nextUpdate past) makes
``/readyz`` fail with the reason, ``passerelle_crl_expired`` count it, and the handshakes of
that issuer's certificates be refused with one log line each, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import log as ops_logging
from gateway.crypto.world import World
from tests.daemon.harness import TRUST, Harness, until
from tests.hostile.support import OP_A, arrived, letter, run, transaction

OP_B = "dr.y@clinique-b.mssante.example"


@contextlib.contextmanager
def json_log() -> Iterator[io.StringIO]:
    """The daemon's JSON log lines, in a buffer for the case's length."""
    buffer = io.StringIO()
    ops_logging.configure("info", stream=buffer)
    try:
        yield buffer
    finally:
        ops_logging.configure("info")


def events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]  # each one JSON
    return [r for r in lines if r.get("event") == name]


def readyz(h: Harness) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(h.gateway.ops.url + "/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def ready(h: Harness) -> tuple[int, str]:
    return await asyncio.to_thread(readyz, h)


async def speaks(h: Harness, client: str, sender: str, n: str) -> str:
    """A letter from ``sender`` over ``client``'s certificate: the DATA reply, or the
    handshake's failure as ``tls: …``."""
    raw = letter(sender, TRUST["dupont"], "Bonjour", msgid=f"<crl-{n}@{sender.split('@')[1]}>")
    try:
        s = await transaction(h, "trust", sender, [TRUST["dupont"]], raw.as_bytes(),
                              client=client)
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        return f"tls: {type(exc).__name__}"
    return s.data or s.mail


def no_traceback(buffer: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in buffer.getvalue()
    assert all(not r.get("exception") and not r.get("exc_info")
               for r in map(json.loads, buffer.getvalue().splitlines()))
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("how", ["sighup", "file_changed"])
def test_a_certificate_revoked_in_a_new_crl_is_refused_without_restart(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str) -> None:
    crl = world.write_crl(tmp_path / "crl.pem", ["revoked-client"])

    async def scenario(h: Harness) -> None:
        assert (await speaks(h, "clinique-b-client", OP_B, "before")).startswith("250 ")
        if how == "sighup":
            h.gateway.crl_check_interval = 3600.0  # only the reload may read it
        else:
            h.gateway.crl_check_interval = 0.2
        world.write_crl(crl, ["revoked-client", "clinique-b-client"])
        if how == "sighup":
            await asyncio.sleep(0.5)
            h.gateway.reload()
        else:
            await until(lambda: events(buffer, "crl.reloaded"), 10)
        assert (await speaks(h, "clinique-b-client", OP_B, "after")).startswith("tls: ")
        assert (await speaks(h, "hopital-a-client", OP_A, "other")).startswith("250 ")
        assert (await speaks(h, "revoked-client", OP_A, "still")).startswith("tls: ")
        refused = events(buffer, "tls.handshake_failed")
        assert [r["reason"] for r in refused] == ["certificate_revoked"] * 2
        assert events(buffer, "crl.reloaded")[-1]["reason"] == (
            "sighup" if how == "sighup" else "changed")
        assert (await ready(h))[0] == 200

    with json_log() as buffer, caplog.at_level(logging.INFO):
        run(world, tmp_path, scenario, overrides={"trust": {"crls": [str(crl)]}})
        no_traceback(buffer, caplog)


def test_an_unreadable_new_crl_leaves_the_one_in_force(world: World, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    crl = world.write_crl(tmp_path / "crl.pem", ["revoked-client"])

    async def scenario(h: Harness) -> None:
        crl.write_bytes(b"-----BEGIN X509 CRL-----\nnot a CRL\n-----END X509 CRL-----\n")
        h.gateway.reload()
        failed = events(buffer, "config.reload_failed")
        assert [(r["stage"], r["kind"]) for r in failed] == [("crl", "config")]
        assert (await speaks(h, "revoked-client", OP_A, "bad")).startswith("tls: ")
        assert (await speaks(h, "clinique-b-client", OP_B, "good")).startswith("250 ")

    with json_log() as buffer, caplog.at_level(logging.INFO):
        run(world, tmp_path, scenario, overrides={"trust": {"crls": [str(crl)]}})
        no_traceback(buffer, caplog)


def test_an_expired_crl_makes_the_gateway_unready_and_refuses_in_one_line(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The CRL in force passes its nextUpdate while the gateway runs: /readyz 503 naming it,
    the metric at 1, the alert's input; the issuer's certificates refused at the handshake
    (policy: fail closed), each refusal one JSON line with reason crl_expired.  A fresh CRL
    copied in puts everything right without a restart."""
    soon = datetime.now(UTC) + timedelta(seconds=4)
    crl = world.write_crl(tmp_path / "crl.pem", ["revoked-client"], next_update=soon)

    async def scenario(h: Harness) -> None:
        h.gateway.crl_check_interval = 0.2
        assert (await ready(h))[0] == 200
        assert h.gateway.metrics.crl_expired._value.get() == 0
        await until(lambda: events(buffer, "crl.expired"), 15)
        code, body = await ready(h)
        assert code == 503
        assert "CRL of " in body and "AC TEST IGC-SANTE" in body and "nextUpdate past" in body
        assert h.gateway.metrics.crl_expired._value.get() == 1
        assert [r["reason"] for r in events(buffer, "crl.reloaded")] == ["next_update"]
        for n in range(3):
            assert (await speaks(h, "hopital-a-client", OP_A, f"exp{n}")).startswith("tls: ")
        await until(lambda: len(events(buffer, "tls.handshake_failed")) >= 3, 5)
        refused = events(buffer, "tls.handshake_failed")
        assert {r["reason"] for r in refused} == {"crl_expired"}
        assert len(events(buffer, "crl.expired")) == 1  # said once, not once a handshake
        assert h.gateway.spool.counts() == {}
        # a legacy letter meanwhile: accepted, but our S/MIME chain cannot be judged by an
        # expired CRL: it waits (retried), neither bounced nor sent
        await h.send_legacy("martin", OP_A, b"Bonjour", msgid="<crl-wait@medical75.legacy.example>")
        await until(lambda: len(events(buffer, "translation.failed")) >= 2, 15)
        assert {r["kind"] for r in events(buffer, "translation.failed")} == {"crl_expired"}
        assert {r["fate"] for r in events(buffer, "translation.failed")} == {"retry"}
        assert h.hub.received == [] and h.op_a.received == []
        world.write_crl(crl, ["revoked-client"])  # the CA's refresh job, late
        await until(lambda: events(buffer, "crl.current"), 10)
        assert (await ready(h))[0] == 200
        assert h.gateway.metrics.crl_expired._value.get() == 0
        await arrived(h.op_a, "<crl-wait@medical75.legacy.example>")
        assert h.hub.received == []  # no notice to the sender

    with json_log() as buffer, caplog.at_level(logging.INFO):
        run(world, tmp_path, scenario, overrides={"trust": {"crls": [str(crl)]}})
        no_traceback(buffer, caplog)


def test_a_gateway_started_on_an_expired_crl_is_unready(world: World, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    crl = world.write_crl(tmp_path / "crl.pem", ["revoked-client"], next_update=past)

    async def scenario(h: Harness) -> None:
        code, body = await ready(h)
        assert code == 503 and "nextUpdate past" in body, body
        assert (await speaks(h, "clinique-b-client", OP_B, "x")).startswith("tls: ")
        world.write_crl(crl, ["revoked-client"])
        h.gateway.reload()  # systemctl reload after the fix
        assert (await ready(h))[0] == 200

    with json_log() as buffer, caplog.at_level(logging.INFO):
        run(world, tmp_path, scenario, overrides={"trust": {"crls": [str(crl)]}})
        assert len(events(buffer, "crl.expired")) == 1
        no_traceback(buffer, caplog)


def _forged_crl(world: World, path: Path) -> None:
    """A CRL in the CA's name that revokes nothing, signed by a key that is not the CA's."""
    ca = x509.load_pem_x509_certificate(world.ca_cert.read_bytes())
    now = datetime.now(UTC)
    forged = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
              .last_update(now).next_update(now + timedelta(days=7))
              .sign(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                    hashes.SHA256()))
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("how", ["older", "forged"])
def test_a_crl_put_back_or_forged_does_not_unrevoke(world: World, tmp_path: Path, how: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """An older CRL of the CA (issued before the one in force, from before the revocation),
    or a CRL in the CA's name not signed by it, copied over the one in force: refused, by
    SIGHUP or by the file watch; the operator revoked in force stays out.  The translation
    workers (processes here) are started afresh by SIGHUP with the CRLs the daemon holds,
    not the file: they neither take the refused CRL nor fail on it (still_serving)."""
    crl = world.write_crl(tmp_path / "crl.pem", ["revoked-client", "clinique-b-client"])

    async def scenario(h: Harness) -> None:
        h.gateway.crl_check_interval = 0.2
        assert (await speaks(h, "clinique-b-client", OP_B, "in-force")).startswith("tls: ")
        if how == "older":
            world.write_crl(crl, ["revoked-client"],
                            last_update=datetime.now(UTC) - timedelta(days=2))
        else:
            _forged_crl(world, crl)
        await until(lambda: events(buffer, "crl.reload_failed"), 10)  # the file watch
        h.gateway.reload()  # and SIGHUP
        kinds = {r["kind"] for r in events(buffer, "crl.reload_failed")}
        assert kinds == {"rollback" if how == "older" else "config"}, kinds
        assert [r["stage"] for r in events(buffer, "config.reload_failed")] == ["crl"]
        assert not events(buffer, "crl.reloaded")
        assert (await speaks(h, "clinique-b-client", OP_B, "after")).startswith("tls: ")
        assert (await speaks(h, "hopital-a-client", OP_A, "other")).startswith("250 ")

    with json_log() as buffer, caplog.at_level(logging.INFO):
        run(world, tmp_path, scenario, overrides={"trust": {"crls": [str(crl)]},
                                                  "workers": {"processes": 1}})
        no_traceback(buffer, caplog)
