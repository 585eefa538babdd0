"""The SMTP listener's quick reading of a MAIL/RCPT path is the parser's reading."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.smtp.server import _SIMPLE_PATH, Limits, _Smtp


class _Nothing:
    limits = Limits()


def _parser(arg: str, limit: int) -> tuple[str | None, str | None]:
    """aiosmtpd's own reading, its parser's failures taken as malformed (as ours does)."""
    server = SMTP(_Nothing())
    server.local_part_limit = limit
    try:
        return SMTP._getaddr(server, arg)
    except Exception:
        return None, None


def _ours(arg: str, limit: int) -> tuple[str | None, str | None]:
    server = _Smtp(_Nothing(), spill=None)  # type: ignore[arg-type]
    server.local_part_limit = limit
    return server._getaddr(arg)


_atom = st.text("abzAZ09.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
_domain = st.text("abz09.-[]", min_size=1, max_size=12)
_rest = st.sampled_from(["", " ", " SIZE=100", "  BODY=8BITMIME SIZE=12", " x\"y", "(c)",
                         " (comment)", "\t", ">", " é", " SIZE=1 ", "\tSIZE=1", " )x",
                         "  ", " \"q\" x"])
_odd = st.text("<>@.a \"\\()[]:;,é\t", max_size=14)


@settings(max_examples=1500, deadline=None)
@given(local=_atom, domain=_domain, rest=_rest, around=st.sampled_from(["<>", "", "< >", "<"]),
       limit=st.sampled_from([0, 3, 64]))
@example(local="dr.x", domain="hopital-a.example", rest=" SIZE=5570", around="<>", limit=64)
@example(local="a", domain="b", rest="", around="<>", limit=0)
def test_a_simple_path_is_read_as_the_parser_reads_it(
        local: str, domain: str, rest: str, around: str, limit: int) -> None:
    arg = f"{around[:1]}{local}@{domain}{around[1:]}{rest}"
    assert _ours(arg, limit) == _parser(arg, limit)


@settings(max_examples=1500, deadline=None)
@given(arg=_odd, limit=st.sampled_from([0, 64]))
def test_any_path_is_read_as_the_parser_reads_it(arg: str, limit: int) -> None:
    assert _ours(arg, limit) == _parser(arg, limit)


def test_the_quick_reading_takes_what_clients_send() -> None:
    """The quick reading is used for the everyday form (else it would save nothing)."""
    assert _SIMPLE_PATH.match("<dr.x@hopital-a.example> SIZE=5570 BODY=8BITMIME")
    assert not _SIMPLE_PATH.match("<\"odd local\"@example.org>")
