"""Queue ids are ones the log shows whole: an operator follows a message by its id."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from gateway import log
from gateway.spool import sqlite as spool_sqlite
from gateway.spool.sqlite import new_queue_id


def _logged_id(queue_id: str) -> object:
    out = io.StringIO()
    log.configure("info", stream=out)
    try:
        log.get_logger("test").info("message.accepted", queue_id=queue_id)
    finally:
        log.configure("info")  # stdout again
    return json.loads(out.getvalue().splitlines()[-1])["queue_id"]


def test_an_id_whose_digits_read_as_a_nir_is_drawn_again(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    nir_like = uuid.UUID("58849574734544c590b2" + "0" * 12)  # 13 digits: a NIR's shape
    fine = uuid.UUID("a1b2c3d4e5f6a7b8c9d0" + "0" * 12)
    assert _logged_id(nir_like.hex[:20].upper()) != nir_like.hex[:20].upper()  # redacted
    draws = iter([nir_like, fine])
    monkeypatch.setattr(spool_sqlite.uuid, "uuid4", lambda: next(draws))
    assert new_queue_id() == "A1B2C3D4E5F6A7B8C9D0"


def test_fresh_ids_are_all_shown_whole_in_the_log() -> None:
    ids = {new_queue_id() for _ in range(3000)}
    assert len(ids) == 3000
    assert all(log.printable_queue_id(i) for i in ids)
    sample = sorted(ids)[:50]
    assert [_logged_id(i) for i in sample] == sample
