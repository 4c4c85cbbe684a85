"""Log lines of the library itself: compare-and-set conflicts given up, at WARNING."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from aiostream import ConflictError
from aiostream.leases import lease
from aiostream.storage.memory import MemoryStorage
from tests.helpers import TestAggregatedFeed, make_activities

pytestmark = pytest.mark.anyio


class LosingStorage(MemoryStorage):
    """A memory storage on which every group compare-and-set loses its race."""

    async def write_groups(self, *args: Any, **kwargs: Any) -> bool:
        return False


class ImpatientFeed(TestAggregatedFeed):
    max_write_attempts: ClassVar[int] = 2


async def test_a_group_write_given_up_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    feed = ImpatientFeed(1, storage=LosingStorage())
    with pytest.raises(ConflictError):
        await feed.add_many(make_activities(1))
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "aiostream.feeds.aggregated",
            "WARNING",
            f"compare-and-set given up: feed {feed.key!r}: 2 concurrent updates in a row won",
        )
    ]


async def test_a_lease_given_up_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    async with lease(storage, "follow:1"):
        with pytest.raises(ConflictError):
            async with lease(storage, "follow:1", wait=0.01):
                pass
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "aiostream.leases",
            "WARNING",
            "compare-and-set given up: lease 'follow:1' was held by someone else for 0.01 s",
        )
    ]
