"""The example service's Redis-bound feeds and Manager, unchanged, run in memory under
``aiostream.testing``'s ``memory_storages`` fixture (docs/testing.md): what an
application's own unit tests do, with no server."""

from __future__ import annotations

import pytest

from aiostream.storage.memory import MemoryStorage
from aiostream.testing import MemoryStorages
from examples.web.feeds import MemoryGraph
from examples.web.redis_backend import RedisPinFeed, RedisPinManager
from examples.web.service import FeedService

pytestmark = pytest.mark.anyio


async def test_the_redis_bound_service_runs_in_memory(memory_storages: MemoryStorages) -> None:
    service = FeedService(RedisPinManager(MemoryGraph()), backend="redis")
    earlier = await service.post_pin(2, board="B", title="before")
    assert await service.follow(1, 2) is True
    later = await service.post_pin(2, board="B", title="after")
    assert await service.feed(1, "normal")[:] == [later, earlier]
    assert (await service.counts(2))["unseen_count"] == 1  # 1 followed 2
    # The Redis feed class found a MemoryStorage of the fixture's, not a server.
    storage = RedisPinFeed(1).storage
    assert isinstance(storage, MemoryStorage)
    assert memory_storages.memory[("redis", "default")] is storage
