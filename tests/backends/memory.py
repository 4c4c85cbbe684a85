"""The in-memory backend: a fresh MemoryStorage per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiostream.storage.memory import MemoryStorage
from tests.backends import Backend


@asynccontextmanager
async def _open(handle: Any, prefix: str) -> AsyncIterator[MemoryStorage]:
    async with MemoryStorage() as storage:
        yield storage


BACKENDS = {"memory": Backend(name="memory", open_storage=_open)}
