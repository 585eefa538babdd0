"""`cda.build_crbio`, `cda.build_level1` and `xdm.pack` give what fixtures/golden/documents/
records — every CDA byte, the findings, every XDM entry with its name, time, method, size and
CRC — for every HPRIM fixture (built as legacy_to_trust._documents builds a message) at two
times, for the author/organisation/version variants, for the refusals and for a seeded sample of
made-up documents (tests/golden/documents.py says which).  A difference fails with a unified
diff naming the case; `python tools/regen-golden.py` records an intended change."""

from __future__ import annotations

import json

import pytest

from tests.documents.conftest import corpus_files
from tests.golden import GOLDEN, Group, check, strays
from tests.golden import documents as golden

GROUPS = golden.groups()


@pytest.mark.parametrize("group", GROUPS, ids=[g.name for g in GROUPS])
def test_output_is_the_recorded_one(group: Group) -> None:
    check(group)


def test_every_fixture_is_recorded_at_both_times() -> None:
    assert [p.stem for p in corpus_files()] == golden.corpus_files()
    for stem in golden.corpus_files():
        for when in golden.TIMES:
            base = GOLDEN / "documents" / "messages" / stem / when
            listing = json.loads((base / "xdm.json").read_text("utf-8"))["entries"]
            names = [e["name"] for e in listing]
            assert names[:3] == ["README.TXT", "INDEX.HTM",
                                 "IHE_XDM/SUBSET01/METADATA.XML"], stem
            cdas = sorted(p.name for p in base.glob("cda-*.xml"))
            assert len(names) == 3 + len(cdas) >= 4, stem
            # the package's documents are the CDAs recorded next to it, byte for byte
            assert [e["content"] for e in listing[3:]] == cdas


def test_refusals_are_refusals() -> None:
    refusals = json.loads((GOLDEN / "documents" / "refusals" / "refusals.json").read_bytes())
    assert refusals and all(r["raised"] not in ("nothing", "") for r in refusals.values())


def test_no_recorded_case_is_left_over() -> None:
    assert strays(GROUPS, "documents") == []


def _message_group() -> tuple[Group, dict[str, bytes]]:
    group = next(g for g in GROUPS if g.name.startswith("documents/messages/01-"))
    return group, group.produce()


def test_a_changed_cda_fails_with_a_readable_diff() -> None:
    group, files = _message_group()
    xml = files["utc/cda-1.xml"]
    assert xml.count(b"\n") <= 2  # one long line: the diff cuts it between tags
    start = xml.index(b"<value ")
    old = xml[start:xml.index(b">", start) + 1]
    new = old.replace(b'value="', b'value="9', 1)
    altered = {**files, "utc/cda-1.xml": xml.replace(old, new, 1)}
    with pytest.raises(AssertionError) as failed:
        check(Group(group.name, lambda: altered))
    message = str(failed.value)
    assert f"case {group.name}:" in message
    assert f"--- golden/{group.name}/utc/cda-1.xml" in message
    assert f"+++ now/{group.name}/utc/cda-1.xml" in message
    changed = [ln for ln in message.splitlines() if ln.startswith(("-<", "+<"))]
    assert changed == [f"-{old.decode()}", f"+{new.decode()}"]


def test_a_changed_package_entry_fails_with_a_readable_diff() -> None:
    group, files = _message_group()
    rel = "utc/xdm/IHE_XDM/SUBSET01/METADATA.XML"
    altered = {**files, rel: files[rel].replace(b"urn:uuid:", b"urn:uuid:0", 1)}
    with pytest.raises(AssertionError) as failed:
        check(Group(group.name, lambda: altered))
    message = str(failed.value)
    assert f"+++ now/{group.name}/{rel}" in message
    assert any(ln.startswith("+") and "urn:uuid:0" in ln for ln in message.splitlines())


def test_a_difference_the_display_hides_is_shown_raw() -> None:
    group, files = _message_group()
    readme = files["utc/xdm/README.TXT"]
    assert b"\r\n" in readme
    altered = {**files, "utc/xdm/README.TXT": readme.replace(b"\r\n", b"\n")}
    with pytest.raises(AssertionError) as failed:
        check(Group(group.name, lambda: altered))
    message = str(failed.value)
    assert any(ln.startswith("-b'") and ln.endswith("\\r\\n'") for ln in message.splitlines())
    assert any(ln.startswith("+b'") and ln.endswith("\\n'") for ln in message.splitlines())
