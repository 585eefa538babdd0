"""How the legacy listener recognises the hub: its certificate, its credentials file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.crypto.world import World
from gateway.errors import ConfigError
from gateway.smtp.server import HubGate


def der(world: World, name: str) -> bytes:
    cert = x509.load_pem_x509_certificate(world.cert(name).read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def test_the_hubs_certificate_by_subject_by_fingerprint_or_both(world: World) -> None:
    hub, other = der(world, "legacy-hub-client"), der(world, "hopital-a-client")
    fpr = hashlib.sha256(hub).hexdigest().upper()
    subject = world.dn("legacy-hub-client")
    # the subject compared whatever its order, spacing and case
    shuffled = ", ".join(reversed(subject.split(","))).upper()
    for gate in (HubGate.load(subject=shuffled), HubGate.load(fingerprint=fpr),
                 HubGate.load(subject=subject, fingerprint=fpr)):
        assert gate.certificate_matches(hub)
        assert not gate.certificate_matches(other)
        assert not gate.certificate_matches(None)
    # both configured: both must hold
    assert not HubGate.load(subject=world.dn("hopital-a-client"),
                            fingerprint=fpr).certificate_matches(hub)
    assert not HubGate().certificate_matches(hub)  # nothing configured: nobody is the hub


@pytest.mark.parametrize(("text", "ok"), [
    ("# the hub\nhub:pass:with:colons\n", True),
    ("hub:secret\nother:secret\n", False),
    ("no colon\n", False),
    (":secret\n", False),
    ("hub:\n", False),
    ("", False),
])
def test_the_credentials_file(tmp_path: Path, text: str, ok: bool) -> None:
    path = tmp_path / "hub-auth"
    path.write_text(text)
    if ok:
        gate = HubGate.load(auth_file=path)
        assert (gate.login, gate.password) == (b"hub", b"pass:with:colons")
        assert gate.smtp_auth and not gate.certificate
    else:
        with pytest.raises(ConfigError, match=r"legacy\.hub\.auth_file"):
            HubGate.load(auth_file=path)


def test_an_unreadable_credentials_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        HubGate.load(auth_file=tmp_path / "absent")
