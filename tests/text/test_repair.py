"""What normalize() reports: encodings, confidence, and each repair with where and what."""

from __future__ import annotations

import pytest

from gateway.errors import TextError
from gateway.text import normalize
from gateway.text.charsets import SINGLE_BYTE, decode
from gateway.text.score import GREEK_PREFIXES

LETTER = "Hémoglobine à 11,8 g/dL : anémie modérée.\nCréatinine normale, contrôle à trois mois.\n"


def test_clean_utf8_is_untouched_and_confident() -> None:
    result = normalize(LETTER.encode("utf-8"))
    assert result.text == LETTER
    assert result.encoding == "utf-8"
    assert result.confidence > 0.9
    assert result.repairs == ()


GREEK = ("Bilan : γGT 45 UI/L, β-HCG négatif, α-foetoprotéine 3 ng/mL, "
         "β2-microglobuline 1,9 mg/L, chaînes légères κ libres, créatinine 80 μmol/L.\n")


def test_greek_letters_clinicians_write_are_read_as_typed_without_doubt() -> None:
    """γGT, β-HCG, μmol/L … in a UTF-8 letter are what the author typed: no reading or
    repair is searched for (they were doubted like garbling, at ~15 times the cost)."""
    result = normalize((LETTER + GREEK).encode("utf-8"), hint="utf-8")
    assert result.text == LETTER + GREEK
    assert result.repairs == ()
    assert result.confidence == 0.99  # the UTF-8 reading alone, not one among several


def test_greek_garbled_by_a_cp1252_reading_is_mended() -> None:
    garbled = "Résultat : " + "β-HCG".encode().decode("cp1252") + " négatif"
    assert garbled == "Résultat : Î²-HCG négatif"
    for data, hint in ((garbled.encode("utf-8"), "utf-8"), (garbled.encode("cp1252"), "cp1252")):
        result = normalize(data, hint=hint)
        assert result.text == "Résultat : β-HCG négatif"
        assert [(r.before, r.after) for r in result.repairs] == [("Î²-HCG", "β-HCG")]


def test_no_encoding_legacy_clients_write_reads_a_byte_as_a_greek_prefix() -> None:
    """Why the judge may take them as typed: they cannot come from a single-byte misreading."""
    for codec in SINGLE_BYTE:
        assert not GREEK_PREFIXES & set(decode(bytes(range(1, 256)), codec)), codec


def test_a_greek_capital_or_a_mac_pi_is_still_doubted() -> None:
    """Only the lower-case prefixes are typed: "Μmol/L" (a capital Mu) and the π, Ω that a
    Mac Roman reading makes of CP1252 bytes stay doubtful."""
    for text in ("Glycémie 5,2 Μmol/L", "Dose de 1" + "½".encode("cp1252").decode("mac_roman")):
        assert normalize(text.encode("utf-8"), hint="utf-8").confidence < 0.99


def test_mac_text_read_on_a_pc_is_repaired_word_by_word() -> None:
    garbled = LETTER.replace("\n", "\r").encode("mac_roman").decode("cp1252").encode("utf-8")
    result = normalize(garbled)
    assert result.text == LETTER
    fixes = [r for r in result.repairs if r.kind == "mac_pc"]
    assert ("HŽmoglobine", "Hémoglobine") in [(r.before, r.after) for r in fixes]
    first = next(r for r in fixes if r.after == "Hémoglobine")
    assert (first.line, first.column, first.offset) == (1, 1, 0)
    creat = next(r for r in fixes if r.after == "Créatinine")
    assert creat.line == 2 and LETTER[creat.offset :].startswith("Créatinine")
    assert any(r.kind == "line_ends" and r.before == "CR" for r in result.repairs)


def test_pc_text_read_on_a_mac_is_repaired() -> None:
    garbled = "Créatinine élevée".encode("cp1252").decode("mac_roman").encode("utf-8")
    assert garbled.decode("utf-8") == "CrÈatinine ÈlevÈe"
    assert normalize(garbled).text == "Créatinine élevée"


def test_double_mojibake_is_undone() -> None:
    once = "Échographie réalisée".encode().decode("cp1252").encode("utf-8")
    twice = once.decode("utf-8").encode("utf-8").decode("cp1252").encode("utf-8")
    result = normalize(twice)
    assert result.text == "Échographie réalisée"
    assert all(r.kind == "mojibake" for r in result.repairs)


def test_mixed_letter_reports_both_encodings() -> None:
    data = "Patiente vue à domicile. ".encode("cp1252") + "Prescription: fébuxostat.".encode()
    result = normalize(data)
    assert result.text == "Patiente vue à domicile. Prescription: fébuxostat."
    assert [e.name for e in result.encodings] == ["cp1252", "utf-8"]
    assert result.encoding == "cp1252+utf-8"
    mixed = [r for r in result.repairs if r.kind == "mixed_encoding"]
    assert [(r.before, r.after) for r in mixed] == [("Ã©", "é")]


def test_garbled_fragment_in_clean_letter_is_mended_alone() -> None:
    text = "Vésicule à paroi épaissie ; " + "lithiase vÃ©siculaire" + " à contrôler."
    result = normalize(text.encode("utf-8"))
    assert result.text == "Vésicule à paroi épaissie ; lithiase vésiculaire à contrôler."
    assert [(r.before, r.after) for r in result.repairs] == [("vÃ©siculaire", "vésiculaire")]


@pytest.mark.parametrize("codec", ["cp1252", "mac_roman", "cp850", "iso8859_15"])
def test_single_byte_letters(codec: str) -> None:
    text = "Bilan hépatique : ASAT 45 UI/L, ALAT 62 UI/L, γ-GT normales.\n".replace("γ-", "")
    result = normalize(text.encode(codec))
    assert result.text == text


def test_hint_breaks_a_tie_but_not_evidence() -> None:
    # One upper-case letter: É in CP850 is 0x90, which Mac Roman reads as "ê".
    ambiguous = "ÉTAT".encode("cp850")
    assert normalize(ambiguous, hint="cp850").text == "ÉTAT"
    # Plain evidence wins over a wrong hint.
    assert normalize(LETTER.encode("cp1252"), hint="mac_roman").text == LETTER


def test_bom_nfd_and_dos_eof() -> None:
    import unicodedata

    data = b"\xef\xbb\xbf" + unicodedata.normalize("NFD", "Reçu le dossier").encode() + b"\x1a"
    result = normalize(data)
    assert result.text == "Reçu le dossier"
    assert {r.kind for r in result.repairs} == {"bom", "nfc", "dos_eof"}


def test_utf16_with_bom() -> None:
    assert normalize("Fièvre à 39 °C\r\n".encode("utf-16")).text == "Fièvre à 39 °C\n"


def test_binary_input_is_an_error_not_a_guess() -> None:
    with pytest.raises(TextError, match="NUL byte at offset 4"):
        normalize(b"%PDF\x00\x01\x02")
    with pytest.raises(TextError, match="control bytes"):
        normalize(bytes(range(1, 32)) * 4)


def test_unknown_hint_is_an_error() -> None:
    with pytest.raises(TextError, match="unknown charset hint"):
        normalize(b"abc", hint="ebcdic")


def test_no_byte_is_dropped() -> None:
    # A stray byte no reading explains stays visible (and lowers confidence).
    result = normalize(LETTER.encode("cp1252") + b"\x9d fin")
    assert result.text == LETTER + "\x9d fin"
    assert result.confidence < 0.9
