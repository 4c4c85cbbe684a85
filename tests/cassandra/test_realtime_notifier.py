"""Realtime updates of Cassandra feeds: Cassandra has no pub/sub, so a storage without a
Redis notifier refuses to subscribe (the updates of every backend, Cassandra with a
notifier included, are tested in tests/behaviour/test_realtime.py)."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream import ConfigurationError
from tests.helpers import TestFeed, make_activities

pytestmark = pytest.mark.anyio


async def test_without_a_notifier_subscribing_is_refused_and_writes_announce_nothing(
    cstorage: Any,
) -> None:
    feed = TestFeed(1, storage=cstorage)
    with pytest.raises(ConfigurationError, match="notifier=RedisStorage"):
        async with feed.subscribe():
            pass
    assert not await cstorage.listening()
    await feed.add_many(make_activities(2))  # nothing to announce to: the write is as ever
    assert len(await feed[:]) == 2
