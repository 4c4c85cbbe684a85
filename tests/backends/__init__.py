"""Backends the behaviour suite runs against, discovered from this package's modules.

Each module defines ``BACKENDS``: a mapping of name to :class:`Backend`. A backend knows
how to start its servers once per test session and how to open a storage whose data is
isolated from every other test (a fresh object, a unique key prefix or keyspace).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiostream.storage.base import FeedStorage


@dataclass(frozen=True)
class Backend:
    """How the suite gets a storage of one kind.

    Attributes:
        name: Test id and pytest marker name.
        start: Starts the servers (once per session) and returns a handle; None if none.
        stop: Stops what ``start`` started.
        open_storage: ``(handle, unique prefix)`` to an async context manager yielding an
            isolated storage, closed at the end of the test.
    """

    name: str
    open_storage: Callable[[Any, str], AbstractAsyncContextManager[FeedStorage]]
    start: Callable[[Path], Any] | None = None
    stop: Callable[[Any], None] | None = None


def discover() -> dict[str, Backend]:
    """Every backend defined by a module of this package, memory first."""
    found: dict[str, Backend] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "memory", m.name)):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.update(getattr(module, "BACKENDS", {}))
    return found
