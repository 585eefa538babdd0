"""The layers of gateway/, as declared to import-linter in pyproject.toml, hold — and the real
`lint-imports` fails, naming the contract, on a copy of the package given a wrong import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts() -> dict[str, str]:
    """Contract id -> name, from pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return {c["id"]: c["name"] for c in config["tool"]["importlinter"]["contracts"]}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the configuration in ``cwd``, finding ``gateway`` there first."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _scratch_copy(tmp_path: Path, module: str, text: str) -> None:
    shutil.copytree(ROOT / "gateway", tmp_path / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(text, "utf-8")


def test_the_tree_keeps_every_contract() -> None:
    contracts = _contracts()
    assert {"layers", "pure-core-is-not-async"} <= contracts.keys()
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in contracts.values():
        assert f"{name} KEPT" in result.stdout
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "source", "contract", "import_line"), [
    # the pure core reaching up into the spool
    ("gateway/text/x.py", "import gateway.spool\n", "layers", "gateway.text.x -> gateway.spool"),
    # storage reaching up into the async shell
    ("gateway/spool/x.py", "from gateway.smtp import delivery\n", "layers",
     "gateway.spool.x -> gateway.smtp.delivery"),
    # the pure core using asyncio itself
    ("gateway/mail/x.py", "import asyncio\n", "pure-core-is-not-async",
     "gateway.mail.x -> asyncio"),
])
def test_a_wrong_import_breaks_the_contract_it_crosses(
        tmp_path: Path, module: str, source: str, contract: str, import_line: str) -> None:
    _scratch_copy(tmp_path, module, f'"""A wrong import, on purpose."""\n\n{source}')
    result = _lint_imports(tmp_path)
    names = _contracts()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{names[contract]} BROKEN" in result.stdout
    assert import_line in result.stdout
    others = [n for i, n in names.items() if i != contract]
    assert all(f"{n} KEPT" in result.stdout for n in others)


def test_a_new_top_level_module_must_be_given_its_layer(tmp_path: Path) -> None:
    """The layers contract is exhaustive: a module added beside the others, in no layer,
    fails until pyproject.toml says where it sits."""
    _scratch_copy(tmp_path, "gateway/helpers.py", '"""Nobody placed me."""\n')
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "gateway.helpers" in result.stdout + result.stderr
