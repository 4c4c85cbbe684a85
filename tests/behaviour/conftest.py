"""Fixtures shared by the behaviour tests of realtime updates."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiostream.storage.base import FeedStorage
from tests.backends import discover


@pytest.fixture
async def live(backend_name: str, storage: FeedStorage, servers: Any) -> AsyncIterator[Any]:
    """The test's storage, able to carry updates: a Cassandra storage gets a notifier on
    the suite's Redis."""
    if backend_name != "cassandra":
        yield storage
        return
    from aiostream.storage.redis import RedisStorage

    redis = discover()["redis"]
    url = servers.get(redis).url
    async with RedisStorage.from_url(url, prefix=f"n{uuid.uuid4().hex[:8]}") as notifier:
        storage.notifier = notifier  # type: ignore[attr-defined]
        yield storage
