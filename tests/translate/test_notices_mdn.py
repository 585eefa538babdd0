"""Whether an original asks for an MDN, and of whom (RFC 8098, only to its Return-Path)."""

from __future__ import annotations

import pytest

from gateway.translate.notices import mdn_requested

_HEAD = b"From: Dr X <dr.x@hopital-a.example>\r\nSubject: CR\r\nMessage-ID: <a@b>\r\n"


@pytest.mark.parametrize("field", [b"Disposition-Notification-To", b"disposition-notification-to",
                                   b"DISPOSITION-NOTIFICATION-TO"])
def test_a_request_to_the_return_path_is_answered_whatever_the_field_name_case(
        field: bytes) -> None:
    original = _HEAD + field + b": Dr X <dr.x@hopital-a.example>\r\n\r\nbody\r\n"
    assert mdn_requested(original, "<dr.x@hopital-a.example>") == "dr.x@hopital-a.example"


def test_no_field_no_mdn_even_when_the_body_names_it() -> None:
    original = _HEAD + b"\r\nDisposition-Notification-To: dr.x@hopital-a.example\r\n"
    assert mdn_requested(original, "<dr.x@hopital-a.example>") is None
    assert mdn_requested(_HEAD + b"\r\nbody\r\n", "<dr.x@hopital-a.example>") is None


def test_a_request_for_someone_else_is_not_answered() -> None:
    original = _HEAD + b"Disposition-Notification-To: <other@elsewhere.example>\r\n\r\nx\r\n"
    assert mdn_requested(original, "<dr.x@hopital-a.example>") is None
