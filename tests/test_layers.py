"""The package's rooms import only downward, and no modules import each other in a loop.

The layers are ARCHITECTURE.md's table, bottom up. Every import of an aiostream module
counts, wherever it stands (at the top, in a function, under ``TYPE_CHECKING``): a module
may import its own layer and those below, never one above. Run this file as a script
(``python tests/test_layers.py``) to print the import graph's circles and the imports that
run up a layer, as the closing notes of a redesign count them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aiostream"

# Bottom up. A module is in the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundations",
        (
            "aiostream._name_clash",
            "aiostream._version",
            "aiostream.exceptions",
            "aiostream._text",
            "aiostream._arguments",
            "aiostream.ids",
            "aiostream.verbs",
            "aiostream.query",
            "aiostream.realtime",
            "aiostream.progress",
            "aiostream._concurrency",
            "aiostream.leases",
            "aiostream.materialize",
            "aiostream.group_format",
            "aiostream.metrics",
            "aiostream.settings",
        ),
    ),
    (
        "model",
        (
            "aiostream.activity",
            "aiostream._group_rows",
            "aiostream.serializers",
            "aiostream.aggregators",
            "aiostream.fanout",
            "aiostream._jobs",
        ),
    ),
    ("storage", ("aiostream.storage",)),
    ("feeds", ("aiostream.feeds",)),
    ("manager", ("aiostream.manager",)),
    ("arq", ("aiostream.tasks", "aiostream._arq_worker")),
    ("application", ("aiostream.connection", "aiostream.web", "aiostream.testing")),
)
# The package's face re-exports from every layer: it stands above them all.
FACE = "aiostream"
# Imports that run up a layer on purpose, each with why (at most one may ever be here).
ALLOWED_UP: Mapping[tuple[str, str], str] = {}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The aiostream modules ``name`` imports (``from a import b`` names ``a.b`` when
    that is a module, else ``a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in known else module)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> int:
    """The index of ``module``'s layer in :data:`LAYERS` (the face above them all)."""
    if module == FACE:
        return len(LAYERS)
    best, index = -1, None
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), position
    if index is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS and ARCHITECTURE.md")
    return index


def upward(edges: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    """The imports from a module to one of a higher layer."""
    return sorted(
        (source, target)
        for source, targets in edges.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


def circles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in modules():
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert unplaced == []


def test_no_import_runs_up_a_layer() -> None:
    up = [pair for pair in upward(graph()) if pair not in ALLOWED_UP]
    assert up == [], "imports that run up a layer (see ARCHITECTURE.md's table)"


def test_no_import_circle() -> None:
    assert circles(graph()) == []


def test_at_most_one_import_is_allowed_up() -> None:
    assert len(ALLOWED_UP) <= 1


def test_the_scan_sees_what_it_must() -> None:
    """The checks above can fail: the scan finds imports in functions and under
    TYPE_CHECKING, resolves relative imports, and ranks a known upward pair as up."""
    edges = graph()
    assert "aiostream.feeds.base" in edges["aiostream.manager._core"]
    assert layer_of("aiostream.storage.redis._storage") == layer_of("aiostream.storage.base")
    assert upward({"aiostream.ids": {"aiostream.feeds.base"}}) == [
        ("aiostream.ids", "aiostream.feeds.base")
    ]
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def _report(edges: Mapping[str, set[str]]) -> Iterator[str]:
    found = circles(edges)
    yield f"circles: {len(found)}"
    yield from (f"  {' -> '.join(part)}" for part in found)
    up = upward(edges)
    yield f"imports that run up a layer: {len(up)}"
    yield from (f"  {source} -> {target}" for source, target in up)


if __name__ == "__main__":
    print("\n".join(_report(graph())))
