"""Record the golden files (fixtures/golden/) again from the current code, on purpose.

Run from the repository root, with the project's venv:

    .venv/bin/python tools/regen-golden.py            # everything
    .venv/bin/python tools/regen-golden.py text/letters documents/messages   # some groups

Then read `git diff --stat fixtures/golden` and `git diff fixtures/golden`: every change there is
a change of what the gateway writes, to be meant and reviewed (fixtures/golden/README.md).
A recorded group that no longer exists is removed; nothing else is written.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.golden import GOLDEN, Group, recorded, strays  # noqa: E402
from tests.golden import documents as golden_documents  # noqa: E402
from tests.golden import text as golden_text  # noqa: E402

AREAS = ("text", "documents")


def all_groups() -> list[Group]:
    return [*golden_text.groups(), *golden_documents.groups()]


def main(argv: list[str]) -> int:
    started = time.monotonic()
    groups = all_groups()
    chosen = [g for g in groups if not argv or any(
        g.name == a.strip("/") or g.name.startswith(a.strip("/") + "/") for a in argv)]
    if not chosen:
        print(f"regen-golden: no group matches {' '.join(argv)}", file=sys.stderr)
        return 64
    changed = written = 0
    for group in chosen:
        files = group.produce()
        if recorded(group) == files:
            continue
        changed += 1
        base = GOLDEN / group.name
        shutil.rmtree(base, ignore_errors=True)
        for rel, data in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written += 1
    removed = 0
    if not argv:
        for area in AREAS:
            for rel in strays(groups, area):
                (GOLDEN / rel).unlink()
                removed += 1
            for d in sorted((GOLDEN / area).rglob("*"), reverse=True):
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    took = time.monotonic() - started
    print(f"regen-golden: {len(chosen)} groups, {changed} changed ({written} files written), "
          f"{removed} stray files removed, {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
