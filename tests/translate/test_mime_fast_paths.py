"""The writer's fast paths give exactly what the slow ones they replace gave: the base64
encoder (``base64.encodebytes``), a part's remembered type and boundary (the email
package's ``get_content_type`` / ``get_boundary``), the header value unfolding (a regex
split), and the test for a delimiter line among a multipart's children (a regex per
boundary)."""

from __future__ import annotations

import base64
import email.parser
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.errors import MessageFormatError
from gateway.mail import mime, policy

SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.integers(0, 10_000) | st.integers(0, 175).map(lambda n: n * 57)
       | st.sampled_from([57 * 1024 + d for d in (-58, -57, -1, 0, 1, 56, 57, 58, 1024 * 57)]),
       st.randoms(use_true_random=False))
def test_base64_is_what_encodebytes_writes(size: int, rnd: object) -> None:
    data = rnd.randbytes(size)  # type: ignore[attr-defined]
    assert mime._base64(data) == base64.encodebytes(data).decode("ascii")


_PARAM_TEXT = st.text(st.sampled_from([*"aB0 ;=\"'\\*%-_.()\t", "é", "\udce9"]),
                      max_size=12)


@st.composite
def content_types(draw: st.DrawFn) -> str:
    main = draw(st.sampled_from(["multipart/mixed", "MULTIPART/Alternative", "text/plain",
                                 "multipart/signed", "multipart", "a/b/c", "",
                                 "message/rfc822"]))
    params = draw(st.lists(st.tuples(
        st.sampled_from(["boundary", "BOUNDARY", "boundary*", "boundary*0", "charset", "x"]),
        _PARAM_TEXT, st.booleans()), max_size=3))
    return main + "".join(f'; {name}="{value}"' if quoted else f"; {name}={value}"
                          for name, value, quoted in params)


def _slow_shape(part: email.message.Message) -> tuple[object, object]:
    try:
        return part.get_content_type(), part.get_boundary()
    except MessageFormatError as exc:
        return "refused", str(exc)


def _fast_shape(part: email.message.Message) -> tuple[object, object]:
    try:
        return policy.shape(part)
    except MessageFormatError as exc:
        return "refused", str(exc)


@SETTINGS
@given(content_types(), st.sampled_from(["mixed", "digest"]))
@example('multipart/mixed; boundary="=?utf-8?q?a=3Db?="', "mixed")
@example("multipart/mixed; boundary*=utf-8''%41%20b", "mixed")
@example('multipart/mixed; boundary="a"; boundary="b"', "mixed")
@example("multipart/mixed; boundary*=\"'\"", "mixed")
def test_a_parts_shape_is_what_the_email_package_gives(value: str, parent: str) -> None:
    raw = (f"Content-Type: multipart/{parent}; boundary=outer\r\n\r\n--outer\r\n"
           f"Content-Type: {value}\r\n\r\nx\r\n--outer\r\n\r\nno type\r\n--outer--\r\n")
    data = raw.encode("utf-8", "surrogateescape")
    try:
        parsed = email.parser.BytesParser(policy=mime.POLICY).parsebytes(data)
    except MessageFormatError:
        # the email package fails on the field while it parses (an RFC 2231 value such as
        # boundary*="'"): the gateway's reader refuses the message, and no part is left
        with pytest.raises(MessageFormatError):
            mime.parse(data)
        return
    built = mime.new()
    try:
        built["Content-Type"] = value  # stored as a header object, not as text
    except MessageFormatError:
        built = parsed
    for _ in range(2):  # the second time from memory
        for part in [*parsed.walk(), built]:
            assert _fast_shape(part) == _slow_shape(part)
            if _fast_shape(part)[0] != "refused":
                assert mime.content_type(part) == part.get_content_type()


@SETTINGS
@given(st.text(st.sampled_from(list("ab\r\n \t"))))
def test_unfolding_takes_out_what_the_regex_split_took_out(text: str) -> None:
    assert mime._unfolded(text) == "".join(re.split(r"\r\n|\r|\n", text))
