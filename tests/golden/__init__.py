"""Golden files: recorded outputs of the pure core, compared byte for byte.

A *group* is one case (a corpus text under every hint, an HPRIM fixture's message, …): a
directory under fixtures/golden/ and a function that produces every file of it from the current
code.  The tests (tests/text/test_golden.py, tests/documents/test_golden.py) compare what the
code produces now with what is recorded and fail with a unified diff naming the case;
tools/regen-golden.py records them again, on purpose (see fixtures/golden/README.md).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "fixtures" / "golden"
REGEN = "python tools/regen-golden.py"
MAX_DIFF_LINES = 120  # per file; the rest is counted, not shown
MAX_FILES_SHOWN = 8


@dataclass(frozen=True)
class Group:
    """One case: ``name`` is its directory under fixtures/golden/, ``produce`` gives every file
    of that directory (path relative to it → bytes) from the current code."""

    name: str
    produce: Callable[[], dict[str, bytes]]


def dump_json(value: Any) -> bytes:
    """JSON that diffs well: one key per line, one list item per line (a short list of plain
    values on one line), and a ``text`` string written as the list of its lines
    (``"\\n".join`` gives it back)."""

    def one(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, sort_keys=True)

    def block(v: Any, indent: str, key: str = "") -> str:
        inner = indent + " "
        if isinstance(v, dict) and v:
            items = [f"{inner}{one(k)}: {block(x, inner, k)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + indent + "}"
        short = isinstance(v, list) and len(one(v)) <= 80 and key != "text" and not any(
            isinstance(x, list | dict) for x in v)
        if isinstance(v, list) and v and not short:
            return "[\n" + ",\n".join(inner + one(x) for x in v) + "\n" + indent + "]"
        return one(v)

    def lines_of_text(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (x.split("\n") if k == "text" and isinstance(x, str) else lines_of_text(x))
                    for k, x in v.items()}
        return v

    return (block(lines_of_text(value), "") + "\n").encode("utf-8")


def _display(data: bytes) -> list[str]:
    """Lines to show in a diff: the text as it is, an XML's one long line cut between tags."""
    text = data.decode("utf-8", errors="backslashreplace")
    if text.lstrip().startswith("<"):
        text = text.replace("><", ">\n<")
    return text.splitlines(keepends=True)


def unified(case: str, rel: str, want: bytes, got: bytes) -> str:
    """A readable unified diff of one recorded file against the current output."""
    a, b = _display(want), _display(got)
    if [x.rstrip("\r\n") for x in a] == [x.rstrip("\r\n") for x in b]:
        # a difference the display hides (line ends, a cut between tags): show the raw lines
        a = [repr(x) + "\n" for x in want.splitlines(keepends=True)]
        b = [repr(x) + "\n" for x in got.splitlines(keepends=True)]
    lines = list(difflib.unified_diff(a, b, fromfile=f"golden/{case}/{rel}",
                                      tofile=f"now/{case}/{rel}", n=3))
    lines = [x if x.endswith("\n") else x + "\n" for x in lines]
    if len(lines) > MAX_DIFF_LINES:
        more = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"… {more} more diff lines\n"]
    return "".join(lines)


def recorded(group: Group, root: Path = GOLDEN) -> dict[str, bytes]:
    base = root / group.name
    if not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*")) if p.is_file()}


def differences(case: str, want: dict[str, bytes], got: dict[str, bytes]) -> list[str]:
    """What differs between the recorded files and the produced ones, one message per file."""
    out: list[str] = []
    for rel in sorted(want.keys() | got.keys()):
        if rel not in want:
            out.append(f"{case}/{rel}: produced now, not recorded\n")
        elif rel not in got:
            out.append(f"{case}/{rel}: recorded, no longer produced\n")
        elif want[rel] != got[rel]:
            out.append(unified(case, rel, want[rel], got[rel]))
    return out


def report(case: str, diffs: list[str]) -> str:
    shown = diffs[:MAX_FILES_SHOWN]
    more = len(diffs) - len(shown)
    tail = f"… and {more} more files differ\n" if more else ""
    return (f"case {case}: the output differs from fixtures/golden/{case} "
            f"({len(diffs)} file(s)).\n" + "".join(shown) + tail +
            f"If the change is intended, run `{REGEN}` and review the diff of fixtures/golden/.")


def check(group: Group, root: Path = GOLDEN) -> None:
    """Fail with a readable diff when the current output is not the recorded one."""
    diffs = differences(group.name, recorded(group, root), group.produce())
    assert not diffs, report(group.name, diffs)


def strays(groups: Iterable[Group], area: str, root: Path = GOLDEN) -> list[str]:
    """Recorded files under ``area`` that belong to no group (a case that was removed)."""
    dirs = [root / g.name for g in groups]
    out = []
    for p in sorted((root / area).rglob("*")):
        if p.is_file() and not any(p.is_relative_to(d) for d in dirs):
            out.append(p.relative_to(root).as_posix())
    return out
