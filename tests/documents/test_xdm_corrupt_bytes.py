"""Any byte of a package flipped: a clear DocumentError, never another exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.documents import cda, hprim, xdm
from gateway.documents.codes import load_tables
from gateway.errors import DocumentError
from tests.conftest import FIXTURES


def test_every_flipped_byte_is_a_document_error() -> None:
    doc = hprim.parse((FIXTURES / "hprim" / "01-glycemie-crlf-12.hpr").read_text("utf-8"))
    built = cda.build_crbio(doc.documents[0], tables=load_tables(), document_id="1.2.3",
                            effective_time=datetime(2026, 1, 1, tzinfo=UTC))
    package = xdm.pack([xdm.XdmDocument(built.xml)],
                       submission_time=datetime(2026, 1, 1, tzinfo=UTC),
                       sender=xdm.XdmSender(name="Labo"))
    for offset in range(0, len(package), max(1, len(package) // 300)):
        data = bytearray(package)
        data[offset] ^= 0xFF
        try:
            xdm.unpack(bytes(data))
        except DocumentError:
            continue
        except Exception as exc:  # pragma: no cover - the failure we are looking for
            pytest.fail(f"byte {offset}: {type(exc).__name__}")
