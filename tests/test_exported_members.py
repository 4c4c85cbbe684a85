"""Each public module's ``__all__`` is exactly its public surface (in the style of httpx's
test of the same name); implementation modules are private (``_name``) and have none."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from types import ModuleType

import pytest

import aiostream

# Modules that need the arq extra: checked in the stack that has it.
NEEDS_ARQ = {"aiostream.tasks", "aiostream._arq_worker"}


def _modules() -> list[str]:
    names = ["aiostream"]
    for info in pkgutil.walk_packages(aiostream.__path__, "aiostream."):
        if info.name in NEEDS_ARQ and importlib.util.find_spec("arq") is None:
            continue
        names.append(info.name)
    return sorted(names)


PUBLIC = [n for n in _modules() if not any(p.startswith("_") for p in n.split(".")[1:])]
PRIVATE = [n for n in _modules() if n not in PUBLIC and not n.endswith("__main__")]


def _import(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.parametrize("name", [n for n in PUBLIC if not n.endswith("__main__")])
def test_public_modules_export_exactly_what_they_define(name: str) -> None:
    module = _import(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it lacks: {missing}"
    defined = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    }
    unexported = sorted(defined - set(exported))
    assert unexported == [], f"{name} defines public names it does not export: {unexported}"


@pytest.mark.parametrize("name", PRIVATE)
def test_private_modules_have_no_all(name: str) -> None:
    assert not hasattr(_import(name), "__all__"), f"{name} is private: no __all__"
