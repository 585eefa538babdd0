#!/usr/bin/env python3
"""Screenshots of the operator console for docs/console.md (docs/console/*.png).

Builds the demo world, starts a gateway with the console on and real mail in it (the scene
of tests/console/scene.py: delivered, deferred, quarantined), signs in with headless Debian
chromium, and saves one PNG per main page.  Run from the repository root:

    .venv/bin/python tools/console-screenshots.py [--lang fr|en]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.crypto.world import build_world  # noqa: E402
from gateway.directory.pgstore import open_directory  # noqa: E402
from tests.console.scene import browser, scene  # noqa: E402
from tests.console.test_browser import login  # noqa: E402
from tests.console.test_pages import extraction  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", choices=("fr", "en"), default="en")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp:
        world = build_world(Path(tmp) / "world")
        state = Path(tmp) / "state"
        state.mkdir()
        try:
            asyncio.run(shoot(world, state, args.lang, args.out))
        finally:
            for home in [world.gnupg_gateway, *(Path(h) for h in world.gnupg_users.values())]:
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                               check=False, capture_output=True)
    return 0


async def shoot(world: object, state: Path, lang: str, out: Path) -> None:
    s = await scene(world, state)  # type: ignore[arg-type]
    try:
        store = open_directory(s.h.gateway.settings.directory_target)
        store.import_file(extraction(
            state / "extraction.txt",
            ("PER", "anne.leroy@hopital-a.mssante.example", "10000000011", "LEROY", "Anne"),
            ("PER", "a.leroy@clinique-b.mssante.example", "10000000011", "LEROY", "Anne"),
            ("ORG", "secretariat@clinique-b.mssante.example", "", "", "")))
        store.close()
        await asyncio.sleep(0.7)  # a few attempts on the deferred message
        def pages() -> None:
            with browser(world, lang=lang, height=760) as d:  # type: ignore[arg-type]
                d.get(s.url + "/login")
                d.save_screenshot(str(out / "login.png"))
                login(d, s.url)
                shots = {
                    "messages": f"/messages?lang={lang}",
                    "message": f"/messages/{s.deferred}?lang={lang}",
                    "timeline": f"/messages/{s.delivered}?lang={lang}#timeline",
                    "queue": f"/queue?lang={lang}",
                    "quarantine": f"/quarantine?lang={lang}",
                    "confirm": f"/quarantine/{s.quarantined}/release?lang={lang}",
                    "domains": f"/domains?lang={lang}",
                    "directory": f"/directory?q=10000000011&lang={lang}",
                }
                for name, path in shots.items():
                    d.get(s.url + path)
                    d.save_screenshot(str(out / f"{name}.png"))
                    print(f"{out / name}.png")

        await asyncio.to_thread(pages)
    finally:
        await s.h.stop()


if __name__ == "__main__":
    sys.exit(main())
