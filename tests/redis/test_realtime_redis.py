"""Realtime updates on Redis: one pub/sub connection per process (per node on a cluster)
whatever the number of subscriptions, nothing published while nobody subscribes, and a
restart that subscriptions survive with a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import RedisCluster

from aiostream import StorageUnavailableError
from aiostream.realtime import FeedUpdate
from aiostream.storage.redis import RedisStorage
from tests.behaviour.test_realtime import WAIT, LiveManager, next_update
from tests.helpers import TestFeed, make_activities
from tests.servers import RedisServer, start_redis

pytestmark = pytest.mark.anyio


async def pubsub_clients(raw: Any) -> list[int]:
    """Pub/sub connections per primary (one entry for a standalone server)."""
    nodes = raw.get_primaries() if isinstance(raw, RedisCluster) else [None]
    counts = []
    for node in nodes:
        options = {} if node is None else {"target_nodes": node}
        clients = await raw.execute_command("CLIENT LIST", "TYPE", "pubsub", **options)
        counts.append(len(clients))  # (redis-py parses the listing: one dict per client)
    return counts


async def publishes(raw: Any) -> int:
    """PUBLISH and SPUBLISH calls the servers have run (from scripts too)."""
    nodes = raw.get_primaries() if isinstance(raw, RedisCluster) else [None]
    total = 0
    for node in nodes:
        options = {} if node is None else {"target_nodes": node}
        stats = await raw.execute_command("INFO", "commandstats", **options)
        for name in ("cmdstat_publish", "cmdstat_spublish"):
            total += int(stats.get(name, {}).get("calls", 0))
    return total


async def channel_subscribers(raw: Any, storage: RedisStorage, keys: list[str]) -> int:
    """Subscribers of the feeds' channels, summed over the servers."""
    channels = [storage._channel(k) for k in keys]
    if not isinstance(raw, RedisCluster):
        return _numsub(await raw.execute_command("PUBSUB NUMSUB", *channels))
    total = 0
    for channel in channels:
        node = raw.get_node_from_key(channel)
        total += _numsub(
            await raw.execute_command("PUBSUB SHARDNUMSUB", channel, target_nodes=node)
        )
    return total


def _numsub(reply: Any) -> int:
    """The counts of a (SHARD)NUMSUB reply: (channel, count) pairs, flat or parsed."""
    if reply and isinstance(reply[0], tuple | list):
        return sum(int(count) for _, count in reply)
    return sum(int(count) for count in reply[1::2])


async def test_many_subscriptions_share_one_connection_per_node(
    storage: RedisStorage, raw: Any
) -> None:
    feeds = [TestFeed(user, storage=storage) for user in range(100, 300)]
    keys = [feed.key for feed in feeds]
    before = await pubsub_clients(raw)
    tasks_before = asyncio.all_tasks()
    async with AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(feed.subscribe()) for feed in feeds]
        during = await pubsub_clients(raw)
        assert await channel_subscribers(raw, storage, keys) == len(feeds)
        (activity,) = make_activities(1, actor=7)
        await TestFeed.fanout_add([f.user_id for f in feeds], [activity], storage=storage)
        for updates in subscriptions:
            update = await next_update(updates)
            assert update.activity_ids == (activity.serialization_id,)
    # One connection per node carried the 200 subscriptions (they span every node of
    # the cluster); leaving them unsubscribed every channel, and closing the storage
    # leaves no connection and no task behind.
    assert [d - b for d, b in zip(during, before, strict=True)] == [1] * len(during)
    with anyio.fail_after(WAIT):
        while await channel_subscribers(raw, storage, keys):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    await storage.aclose()
    assert await pubsub_clients(raw) == before
    assert asyncio.all_tasks() - tasks_before == set()


async def test_subscriptions_asked_for_at_once_each_hear_their_feed(
    storage: RedisStorage,
) -> None:
    """Subscriptions opened together, before their node's link first connects: the
    link subscribes to every channel (on a cluster, channels of many slots, which one
    SSUBSCRIBE cannot take together)."""
    feeds = [TestFeed(user, storage=storage) for user in range(300, 340)]
    async with AsyncExitStack() as stack:
        subscriptions = await asyncio.gather(
            *(stack.enter_async_context(feed.subscribe()) for feed in feeds)
        )
        (activity,) = make_activities(1, actor=7)
        await TestFeed.fanout_add([f.user_id for f in feeds], [activity], storage=storage)
        for updates in subscriptions:
            update = await next_update(updates)
            assert (update.kind, update.activity_ids) == ("added", (activity.serialization_id,))


async def test_nothing_is_published_while_nobody_subscribes(
    storage: RedisStorage, raw: Any
) -> None:
    manager = LiveManager(storage=storage)
    activities = make_activities(3, actor=1)
    start = await publishes(raw)
    await manager.add_user_activity(1, activities[0])
    assert await publishes(raw) == start
    async with manager.get_feeds(2)["flat"].subscribe() as updates:
        await manager.add_user_activity(1, activities[1])
        assert (await next_update(updates)).activity_ids == (activities[1].serialization_id,)
    assert await publishes(raw) > start


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "private")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis
async def test_after_a_restart_subscriptions_resume_with_a_gap(
    private_redis: RedisServer,
) -> None:
    async with RedisStorage.from_url(private_redis.url, prefix="rt:") as storage:
        feed = TestFeed(1, storage=storage)
        first, second = make_activities(2)
        async with feed.subscribe() as updates:
            await feed.add(first)
            assert (await next_update(updates)).activity_ids == (first.serialization_id,)
            await anyio.to_thread.run_sync(private_redis.restart)
            assert await next_update(updates) == FeedUpdate(feed.key, "gap")
            await feed.add(second)
            assert await next_update(updates) == FeedUpdate(
                feed.key, "added", (second.serialization_id,)
            )


@pytest.mark.redis
async def test_subscribing_to_a_server_that_is_down_names_it(
    private_redis: RedisServer,
) -> None:
    async with RedisStorage.from_url(private_redis.url, prefix="down:") as storage:
        private_redis.stop()
        with pytest.raises(StorageUnavailableError, match=str(private_redis.port)):
            async with TestFeed(1, storage=storage).subscribe():
                pass
        assert not storage._realtime.hub  # nothing left registered
