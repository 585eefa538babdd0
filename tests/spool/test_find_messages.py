"""The console's searches through the spool's one search (`SpoolSearch.search`, which
`passerelle queue` uses too), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.spool import Direction, SqliteSpool, open_spool
from gateway.spool.search import QueueFilter


@pytest.fixture(params=["sqlite", "postgresql"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteSpool:
    url = f"sqlite:///{tmp_path / 'spool.db'}" if request.param == "sqlite" \
        else str(request.getfixturevalue("pg_url"))
    s = open_spool(url)
    request.addfinalizer(s.close)
    return s


def test_search_by_each_criterion_with_paging(spool: SqliteSpool) -> None:
    def put(sender: str, rcpts: list[str], msgid: str, at: float) -> str:
        qid, _ = spool.accept(direction=Direction.TO_TRUST, mail_from=sender, rcpts=rcpts,
                              data=msgid.encode(), message_id=msgid, now=at)
        return qid

    a = put("Dupont@Medical33.legacy.example", ["dr.x@hopital-a.example"], "<a@m33>", 1000.0)
    b = put("petit@medical59.legacy.example", ["dr.y@clinique-b.example",
                                                "dr.z@hopital-a.example"], "<b@m59>", 2000.0)
    c = put("petit@medical59.legacy.example", ["dr.y@clinique-b.example"], "c@m59", 3000.0)

    def ids(**kw: object) -> list[str]:
        # as the console asks: every state unless one is chosen, newest first
        f = QueueFilter(everything=True, **kw)  # type: ignore[arg-type]
        found, total = spool.search(f, newest_first=True)
        assert total >= len(found)
        return [e.queue_id for e in found]

    assert ids() == [c, b, a]  # newest first
    assert ids(message_id="a@m33") == [a] and ids(message_id="<c@m59>") == [c]
    assert ids(sender="dupont@medical33.legacy.example") == [a]  # case-insensitive
    assert ids(rcpt="DR.Z@hopital-a.example") == [b]
    assert ids(any_domain="hopital-a.example") == [b, a]
    assert ids(any_domain="medical59.legacy.example") == [c, b]  # the sender's domain
    assert ids(any_domain="%") == [] and ids(any_domain="_ospital-a.example") == []
    assert ids(domain="medical59.legacy.example") == []  # `domain`: the recipient's only
    assert ids(sender="medical59.legacy.example") == [c, b]  # a domain as the sender
    assert ids(state="received") == [c, b, a] and ids(state="delivered") == []
    assert ids(since=1500.0, until=2500.0) == [b]
    assert ids(sender="petit@medical59.legacy.example", rcpt="dr.z@hopital-a.example") \
        == [b]
    assert ids(any_domain="clinique-b.example", state="received", since=2500.0) == [c]
    page, total = spool.search(QueueFilter(everything=True), limit=2, offset=2,
                               newest_first=True)
    assert [e.queue_id for e in page] == [a] and total == 3
    assert spool.entry(b).recipients[1].rcpt == "dr.z@hopital-a.example"
