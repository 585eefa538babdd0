"""gateway.text gives what fixtures/golden/text/ records — the text, the encodings with their
confidences and shares, every repair — on every corpus case under every hint, on 20 KB letters
of every garbling, on a seeded sample of made-up inputs, and for the word judge and the per-word
repairs (tests/golden/text.py says which).  A difference fails with a unified diff naming the
case; `python tools/regen-golden.py` records an intended change (fixtures/golden/README.md)."""

from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN, Group, check, recorded, strays
from tests.golden import text as golden

GROUPS = golden.groups()


@pytest.mark.parametrize("group", GROUPS, ids=[g.name for g in GROUPS])
def test_output_is_the_recorded_one(group: Group) -> None:
    check(group)


def test_every_corpus_case_is_recorded_under_every_hint() -> None:
    cases = golden.corpus_cases()
    assert len(cases) > 370
    names = {f"{golden.hint_name(h)}.json" for h in golden.HINTS}
    for rel in cases:
        assert {p.name for p in (GOLDEN / "text" / rel).iterdir()} == names, rel


def test_every_garbling_has_its_letters_recorded() -> None:
    for kind in golden.garblings():
        names = sorted(p.name for p in (GOLDEN / "text" / "letters" / kind).glob("letter*.json"))
        assert len(names) >= 2 * golden.MIN_LETTERS, kind
        assert names == sorted(f"{name}-{golden.hint_name(h)}.json"
                               for name, _, hints in golden.letters(kind) for h in hints)


def test_no_recorded_case_is_left_over() -> None:
    assert strays(GROUPS, "text") == []


def _case_with_repairs() -> tuple[Group, dict[str, bytes]]:
    for group in GROUPS[:40]:
        files = group.produce()
        auto = json.loads(files["auto.json"])
        if auto.get("repairs") and any("é" in line for line in auto["text"]):
            return group, files
    raise AssertionError("no corpus case with a repair and an é")


def test_a_changed_text_fails_with_a_readable_diff() -> None:
    group, files = _case_with_repairs()
    auto = json.loads(files["auto.json"])
    n = next(i for i, line in enumerate(auto["text"]) if "é" in line)
    before = auto["text"][n]
    changed = files["auto.json"].replace(json.dumps(before, ensure_ascii=False).encode(),
                                         json.dumps(before.replace("é", "e"),
                                                    ensure_ascii=False).encode(), 1)
    assert changed != files["auto.json"]
    altered = Group(group.name, lambda: {**files, "auto.json": changed})
    with pytest.raises(AssertionError) as failed:
        check(altered)
    message = str(failed.value)
    assert f"case {group.name}:" in message
    assert f"--- golden/{group.name}/auto.json" in message
    assert f"+++ now/{group.name}/auto.json" in message
    assert f"-  {json.dumps(before, ensure_ascii=False)}" in message
    assert f"+  {json.dumps(before.replace('é', 'e'), ensure_ascii=False)}" in message
    assert "tools/regen-golden.py" in message
    # only that line differs: the diff is short, not the whole file
    assert sum(line.startswith(("-", "+")) for line in message.splitlines()) == 4


def test_a_changed_decision_and_a_missing_file_are_told(tmp_path: object) -> None:
    group, files = _case_with_repairs()
    auto = json.loads(files["auto.json"])
    confidence = f'"confidence": {json.dumps(auto["confidence"])}'.encode()
    changed = files["auto.json"].replace(confidence, b'"confidence": 0.001', 1)
    produced = {**files, "auto.json": changed}
    del produced["utf-8.json"]
    produced["koi8-r.json"] = b"{}\n"
    with pytest.raises(AssertionError) as failed:
        check(Group(group.name, lambda: produced))
    message = str(failed.value)
    assert f'- {confidence.decode()},' in message and '+ "confidence": 0.001,' in message
    assert f"{group.name}/utf-8.json: recorded, no longer produced" in message
    assert f"{group.name}/koi8-r.json: produced now, not recorded" in message
    assert recorded(group)["auto.json"] == files["auto.json"]  # nothing was written
