"""docs/architecture.md names the code a message goes through: every module, file, class and
method it names exists, so that the story cannot drift away from the code unnoticed."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from types import ModuleType

import gateway
from tests.conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"


def _modules() -> list[ModuleType]:
    out = [gateway]
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if info.name.endswith("__main__"):
            continue
        out.append(importlib.import_module(info.name))
    return out


def _classes() -> dict[str, list[type]]:
    found: dict[str, list[type]] = {}
    for module in _modules():
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__.startswith("gateway"):
                found.setdefault(name, []).append(value)
    return found


def _named() -> list[str]:
    return re.findall(r"`([^`\s]+)`", DOC.read_text("utf-8"))


def test_every_file_and_module_the_architecture_names_exists() -> None:
    names = _named()
    files = [n for n in names if n.startswith(("gateway/", "docs/"))]
    dotted = [n.removesuffix("()") for n in names if n.startswith("gateway.")]
    assert files and dotted
    missing = [f for f in files if not (ROOT / f).exists()]
    for name in dotted:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest module prefix, then attributes
            try:
                if importlib.util.find_spec(".".join(parts[:cut])) is None:
                    continue
            except ModuleNotFoundError:  # a prefix that is a module, not a package
                continue
            if cut < len(parts):  # (a module named whole is not imported: __main__ runs)
                target: object = importlib.import_module(".".join(parts[:cut]))
                for attr in parts[cut:]:
                    target = getattr(target, attr, None)
                if target is None:
                    missing.append(name)
            break
    assert missing == []


def test_every_class_and_method_the_architecture_names_exists() -> None:
    classes = _classes()
    pairs = [n.removesuffix("()").split(".") for n in _named()
             if re.fullmatch(r"_?[A-Z][A-Za-z]+\.[a-z_]+(\(\))?", n)]
    assert len(pairs) > 20
    missing = [".".join(p) for p in pairs
               if not any(hasattr(c, p[1]) for c in classes.get(p[0], []))]
    assert missing == []
