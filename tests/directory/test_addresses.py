"""The address book: lookups both ways, strict validation, header rewriting."""

from __future__ import annotations

import pytest

from gateway.directory.addresses import COLUMNS, AddressBook, rewrite_header
from gateway.errors import AmbiguousAddress, ConfigError, UnknownAddress

FPR_A = "A" * 40
FPR_B = "B" * 40
BOOK = (
    ",".join(COLUMNS) + "\n"
    f"jean.DUPONT@medical33.legacy.example,jean.dupont@legacy.mssante.example,"
    f"Dr Jean Dupont,10001234567,{FPR_A},mac_roman,DUPJ33\n"
    f"labo.BIOLAB@medical69.legacy.example,labo.biolab@legacy.mssante.example,"
    f"\"Laboratoire Biolab, Lyon\",,{FPR_B},cp850,BIOLAB\n"
)


def test_lookups_both_ways() -> None:
    book = AddressBook.parse(BOOK)
    assert len(book) == 2
    user = book.by_legacy("jean.DUPONT@MEDICAL33.legacy.example")
    assert user.trust_address == "jean.dupont@legacy.mssante.example"
    assert user.charset == "mac_roman"
    assert book.by_trust("Jean.Dupont@legacy.mssante.example") is user
    assert book.by_legacy("<labo.BIOLAB@medical69.legacy.example>").display_name == (
        "Laboratoire Biolab, Lyon")
    assert book.legacy_domains == {"medical33.legacy.example", "medical69.legacy.example"}


def test_legacy_generation_column_is_optional() -> None:
    """An older book without ``legacy_mode`` keeps working (every user takes the gateway's
    default); with it, each row says v1 or v2, or leaves it to the default."""
    book = AddressBook.parse(BOOK)
    user = book.by_legacy("jean.DUPONT@medical33.legacy.example")
    assert user.legacy_mode == "" and user.mode("v2") == "v2" and user.mode("v1") == "v1"
    lines = BOOK.splitlines()
    with_mode = "\n".join([lines[0] + ",legacy_mode", lines[1] + ",V1", lines[2] + ","]) + "\n"
    book = AddressBook.parse(with_mode)
    assert book.by_legacy("jean.DUPONT@medical33.legacy.example").mode("v2") == "v1"
    assert book.by_legacy("labo.BIOLAB@medical69.legacy.example").mode("v2") == "v2"
    with pytest.raises(ConfigError, match=r"addresses.csv:2: legacy_mode must be v1, v2"):
        AddressBook.parse(with_mode.replace(",V1\n", ",unsigned\n"))


def test_local_part_case_is_kept_but_a_unique_match_is_found() -> None:
    book = AddressBook.parse(BOOK)
    assert book.by_legacy("jean.dupont@medical33.legacy.example").rpps == "10001234567"


def test_ambiguous_and_unknown_are_typed_failures() -> None:
    twins = BOOK + (f"Jean.Dupont@medical33.legacy.example,jd2@legacy.mssante.example,"
                    f"Jean Dupont fils,,{'C' * 40},cp1252,DUPJ2\n")
    book = AddressBook.parse(twins)
    with pytest.raises(AmbiguousAddress):
        book.by_legacy("JEAN.dupont@medical33.legacy.example")
    with pytest.raises(UnknownAddress):
        book.by_legacy("nobody@medical33.legacy.example")
    with pytest.raises(UnknownAddress):
        book.by_trust("nobody@legacy.mssante.example")


@pytest.mark.parametrize(("bad", "message"), [
    ("not-an-address", "legacy_address"),
    ("x@y.example,z@w.example,N,123,FFFF,cp1252,C", "legacy_fingerprint"),
    (f"x@y.example,z@w.example,N,123,{FPR_A},cp1252,C", "rpps"),
    (f"x@y.example,z@w.example,N,,{FPR_A},ebcdic,C", "charset"),
])
def test_bad_rows_name_line_and_column(bad: str, message: str) -> None:
    text = ",".join(COLUMNS) + "\n" + (
        bad if "," in bad else f"{bad},z@w.example,N,,{FPR_A},cp1252,C") + "\n"
    with pytest.raises(ConfigError, match=rf"addresses.csv:2: {message}"):
        AddressBook.parse(text)


def test_duplicate_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        AddressBook.parse(BOOK + BOOK.splitlines()[1] + "\n")


def test_missing_column_is_refused() -> None:
    with pytest.raises(ConfigError, match="missing column"):
        AddressBook.parse("legacy_address,trust_address\n")


def test_rewrite_header_maps_and_keeps() -> None:
    book = AddressBook.parse(BOOK)
    mapper = {u.legacy_address: (u.display_name, u.trust_address) for u in book.users()}
    value, done = rewrite_header(
        "Jean <jean.DUPONT@medical33.legacy.example>, Dr X <dr.x@hopital-a.mssante.example>",
        mapper)
    assert value == ("Dr Jean Dupont <jean.dupont@legacy.mssante.example>, "
                     "Dr X <dr.x@hopital-a.mssante.example>")
    assert done == ["jean.DUPONT@medical33.legacy.example -> jean.dupont@legacy.mssante.example"]


def test_display_names_cannot_inject_headers() -> None:
    book = AddressBook.parse(BOOK)
    mapper = {u.legacy_address: (u.display_name, u.trust_address) for u in book.users()}
    value, _ = rewrite_header("labo.BIOLAB@medical69.legacy.example", mapper)
    assert value == '"Laboratoire Biolab, Lyon" <labo.biolab@legacy.mssante.example>'
    evil = ",".join(COLUMNS) + (
        f"\nx@y.example,z@w.example,\"A\nBcc: all@evil.example\",,{FPR_A},cp1252,C\n")
    with pytest.raises(ConfigError, match="line break"):
        AddressBook.parse(evil)
