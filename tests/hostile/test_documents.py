"""Hostile documents from the trust side: XXE and billion-laughs CDA, zip bomb, traversal and
duplicate names in IHE_XDM.ZIP.  Each is set aside for an operator (quarantine, reason named)
without a byte delivered to the legacy user, nothing read from disk, nothing expanded."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.crypto.world import World
from gateway.spool import State
from tests.daemon.harness import TRUST, Harness
from tests.documents.test_xdm import _pack, _rezip
from tests.hostile.support import OP_A, arrived, reasons, run, settled, transaction

DOC1 = "IHE_XDM/SUBSET01/DOC0001.XML"
META = "IHE_XDM/SUBSET01/METADATA.XML"
XXE = (b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM '
       b'"file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title>'
       b"</ClinicalDocument>")
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;")
                                                  * 10) for n in range(1, 10))
          + b']><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title>'
          b"</ClinicalDocument>")


def _with_entry(name: str, data: bytes) -> bytes:
    out = io.BytesIO(_pack())
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return out.getvalue()


def _bomb() -> bytes:
    out = io.BytesIO(_rezip(_pack(), {}))
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("IHE_XDM/SUBSET01/DOC0009.XML", b"\0" * 20_000_000)  # 20 MB in ~20 KB
    return out.getvalue()


def _duplicate() -> bytes:
    """Second DOC0002.XML and METADATA.XML entries after the genuine ones, consistent with each
    other (hash and size): a reader taking the last entries sees another result than one
    taking the first — the package must be refused, whichever the gateway would read."""
    import hashlib
    import warnings

    package = _pack()
    doc2 = "IHE_XDM/SUBSET01/DOC0002.XML"
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        genuine, meta = z.read(doc2), z.read(META)
    tampered = genuine.replace(b"2.31", b"9.99")  # same size, another value
    assert tampered != genuine
    meta = meta.replace(hashlib.sha1(genuine).hexdigest().upper().encode(),
                        hashlib.sha1(tampered).hexdigest().upper().encode())
    out = io.BytesIO(package)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates: the point here
        with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as z:
            z.writestr(doc2, tampered)
            z.writestr(META, meta)
    return out.getvalue()


PACKAGES = {
    "xxe-in-cda": lambda: _rezip(_pack(), {DOC1: XXE}),
    "xxe-in-metadata": lambda: _rezip(_pack(), {META: XXE}),
    "billion-laughs-cda": lambda: _rezip(_pack(), {DOC1: LAUGHS}),
    "zip-bomb": _bomb,
    "traversal": lambda: _with_entry("../../../etc/cron.d/evil", b"* * * * * root sh"),
    "absolute-path": lambda: _with_entry("/etc/evil", b"x"),
    "duplicate-names": _duplicate,
}


@pytest.mark.parametrize("case", list(PACKAGES))
def test_hostile_xdm_is_quarantined_and_nothing_delivered(world: World, tmp_path: Path,
                                                         case: str) -> None:
    async def scenario(h: Harness) -> None:
        msgid = f"<xdm-{case}@hopital-a.mssante.example>"
        m = EmailMessage()
        m["From"] = OP_A
        m["To"] = TRUST["dupont"]
        m["Subject"] = "CR d'examens biologiques"
        m["Message-ID"] = msgid
        m["Disposition-Notification-To"] = OP_A
        m.set_content("Résultats ci-joints.")
        m.add_attachment(PACKAGES[case](), maintype="application", subtype="zip",
                         filename="IHE_XDM.ZIP")
        s = await transaction(h, "trust", OP_A, [TRUST["dupont"]], m.as_bytes(),
                              client="hopital-a-client")
        assert s.data.startswith("250 2.0.0"), s.data
        await settled(h, s.queue_id, State.QUARANTINED)
        why = reasons(h, s.queue_id)[0]
        assert why.startswith("translation:") and "IHE_XDM.ZIP" in why, why
        # the sender asked for a notification: an error MDN with the guide's code for an
        # error no other code covers, their own package given back, nothing read from it
        mdn = await arrived(h.op_a, None, rcpt=OP_A)
        assert b"processed/Error: 906^Erreur 'Autre'" in mdn.data and b"root:" not in mdn.data
        assert h.hub.received == []
    run(world, tmp_path, scenario)


def test_duplicate_names_are_refused_by_the_reader() -> None:
    """The reader itself (``xdm.unpack``), with the duplicate the daemon case sends."""
    from gateway.documents import xdm
    from gateway.errors import UnsafeDocumentError

    with pytest.raises(UnsafeDocumentError, match="share a name"):
        xdm.unpack(_duplicate())
    assert [f.code for f in xdm.verify(_duplicate())] == ["unsafe"]
