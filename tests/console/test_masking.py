"""What the console's pages show of an address: its domain only, wherever it turns up (a
peer's reply, a quarantine's reason, a trace step); ids stay as they are."""

from __future__ import annotations

import pytest

from gateway.ops.console.app import _describe, mask
from gateway.ops.console.i18n import state


@pytest.mark.parametrize(("text", "shown"), [
    ("550 5.1.1 <dr.y@clinique-b.example>: Recipient address rejected",
     "550 5.1.1 <…@clinique-b.example>: Recipient address rejected"),
    ("unknown_lab: HPRIM report from jean.DUPONT@medical33.legacy.example: no row",
     "unknown_lab: HPRIM report from …@medical33.legacy.example: no row"),
    ("['jean.DUPONT@m33.example -> jean.dupont@legacy.example']",
     "['…@m33.example -> …@legacy.example']"),
    ("to o'brien+lab@hôpital-é.example, \"anne leroy\"@x.example",
     "to …@hôpital-é.example, …@x.example"),
    ("user%host@relay.example and SRS0=h1=TT=a.example=jean@fwd.example",
     "…@relay.example and SRS0=h1=TT=a.example=…@fwd.example"),
    ("CN=passerelle@legacy.example,OU=1", "CN=…@legacy.example,OU=1"),
    ("451 4.3.0 Temporary failure, try again", "451 4.3.0 Temporary failure, try again"),
    ("no address here @ all, nor a@b", "no address here @ all, nor a@b"),
])
def test_an_address_is_shown_by_its_domain(text: str, shown: str) -> None:
    assert mask(text) == shown


def test_a_step_keeps_its_ids_and_cuts_its_addresses() -> None:
    lines = _describe({
        "at": "2026-12-07T09:00:00+00:00", "stage": "notice",  # the step's own columns
        "in_reply_to": "<a.b@c.example>", "message_id": "<x@y.example>",
        "sender": "jean.dupont@m33.example", "reply": "550 <dr.y@b.example> unknown",
        "notices": [{"kind": "mdn", "message_id": "<n@p.example>", "to": "x@y.example"}],
        "empty": [],
        "details": {"verification": {"result": "good", "tools": ["gpg", "sqop"]},
                    "mappings": ["jean@m33.example -> jean@legacy.example"]},
    })
    assert lines == [
        "in_reply_to: <a.b@c.example>",
        "mappings: …@m33.example -> …@legacy.example", "message_id: <x@y.example>",
        "notices: kind=mdn; message_id=<n@p.example>; to=…@y.example",
        "reply: 550 <…@b.example> unknown", "sender: …@m33.example",
        "verification: result=good; tools=gpg, sqop"]


def test_states_in_both_languages() -> None:
    assert state("fr", "deferred") == "différé" and state("en", "deferred") == "deferred"
    assert state("fr", "quarantined") == "en quarantaine"
    assert state("fr", "something-new") == "something-new"  # a code unknown here: as it is
