"""Many clients writing one aggregated / notification feed at once lose nothing.

Each task has its own RedisStorage (its own connections), so the writes really interleave
on the server. The final state is compared, record by record (payload, version, markers),
with the memory storage fed the same operations one after another; every phase is built
so that the final state does not depend on the order the operations land in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import Activity, AggregatedFeed, Comment, Love, NotificationFeed
from aiostream.query import Query
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.redis import RedisStorage
from tests.helpers import at
from tests.redis.conftest import StorageOpener

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TASKS = 50


class ConcurrentNotifications(NotificationFeed):
    key_format = "conc:notification:%(user_id)s"
    trim_chance: ClassVar[float] = 0.0
    max_length: ClassVar[int] = 1000
    # Up to ~25 writers race for one group; the default 50 attempts would do, this
    # keeps a slow CI machine from turning the test into a flake.
    max_write_attempts: ClassVar[int] = 500


class ConcurrentAggregated(AggregatedFeed):
    key_format = "conc:aggregated:%(user_id)s"
    trim_chance: ClassVar[float] = 0.0
    max_length: ClassVar[int] = 1000
    max_write_attempts: ClassVar[int] = 500


def batch(i: int, *, offset: int = 0, objects: int = 5) -> list[Activity]:
    """Three activities of actor ``i``: two verbs, ``objects`` objects, distinct times."""
    verb = Love if i % 2 else Comment
    return [
        Activity(1000 + i, verb, (i + j) % objects, time=at(offset + 3 * i + j)) for j in range(3)
    ]


async def run_concurrently(operations: Sequence[Callable[[], Awaitable[Any]]]) -> None:
    async with anyio.create_task_group() as tg:
        for operation in operations:
            tg.start_soon(operation)


async def records(storage: Any, key: str) -> list[Any]:
    return list(await storage.read_groups(key, 0, None, Query(), markers=True))


async def open_many(stack: AsyncExitStack, open_storage: StorageOpener) -> list[RedisStorage]:
    return [await stack.enter_async_context(open_storage()) for _ in range(TASKS)]


async def add_concurrently(
    stack: AsyncExitStack, open_storage: StorageOpener, feed_class: type[Any], user_id: int
) -> tuple[list[RedisStorage], list[Any], Any]:
    """50 clients, each with its own storage, add their batch to one feed at once; the
    memory oracle adds the same batches one after the other. Returns the storages, the
    clients' feeds and the oracle, after checking the stored records match."""
    oracle = feed_class(user_id, storage=MemoryStorage())
    storages = await open_many(stack, open_storage)
    feeds = [feed_class(user_id, storage=s) for s in storages]
    await run_concurrently([lambda f=f, i=i: f.add_many(batch(i)) for i, f in enumerate(feeds)])
    for i in range(TASKS):
        await oracle.add_many(batch(i))
    assert await records(storages[0], feeds[0].key) == await records(oracle.storage, feeds[0].key)
    return storages, feeds, oracle


async def test_notification_feed_adds_and_marks(open_storage: StorageOpener) -> None:
    async with AsyncExitStack() as stack:
        # Phase 1: 50 clients add at once; groups receive from ~5 writers each.
        storages, feeds, oracle = await add_concurrently(
            stack, open_storage, ConcurrentNotifications, 7
        )
        key = feeds[0].key
        assert await feeds[0].count() == await oracle.count() == 10

        # Phase 2: 50 clients mark at once (marks only clear markers: they commute).
        ids = [r.id for r in await records(oracle.storage, key)]

        def marking(feed: ConcurrentNotifications, i: int) -> Callable[[], Awaitable[None]]:
            if i == TASKS - 1:
                return lambda: feed.mark_all(seen=True)
            if i % 2:
                return lambda: feed.mark_activity(ids[i % len(ids)], seen=True, read=False)
            pair = [ids[i % len(ids)], ids[(i + 3) % len(ids)]]
            return lambda: feed.mark_activities(pair, seen=False, read=True)

        await run_concurrently([marking(f, i) for i, f in enumerate(feeds[:25])])
        for i in range(25):
            await marking(oracle, i)()
        await run_concurrently([marking(f, i) for i, f in enumerate(feeds) if i >= 25])
        for i in range(25, TASKS):
            await marking(oracle, i)()
        assert await records(storages[0], key) == await records(oracle.storage, key)
        assert await feeds[0].get_notification_data() == await oracle.get_notification_data()

        # Phase 3: adds and marks at once. The adds are newer than everything in their
        # groups, so each updated group gets a new id (unseen and unread whatever the
        # marks did); the marks name the ids read before, so they only reach groups no
        # add touches. Either order gives the same state; check that on memory too.
        before = [r.id for r in await records(oracle.storage, key)]
        adds = [batch(i, offset=10_000, objects=3) for i in range(25)]
        operations: list[Callable[[], Awaitable[Any]]] = []
        for i, feed in enumerate(feeds):
            if i < 25:
                operations.append(lambda f=feed, a=adds[i]: f.add_many(a))
            else:
                marked = before[i % len(before)]
                operations.append(lambda f=feed, m=marked: f.mark_activity(m, seen=True, read=True))
        await run_concurrently(operations)

        other_order = MemoryStorage()
        replica = ConcurrentNotifications(7, storage=other_order)
        for i in range(TASKS):
            await replica.add_many(batch(i))
        for i in range(TASKS):
            await marking(replica, i)()
        for i in range(25, TASKS):
            await replica.mark_activity(before[i % len(before)], seen=True, read=True)
        for added in adds:
            await replica.add_many(added)
        for added in adds:
            await oracle.add_many(added)
        for i in range(25, TASKS):
            await oracle.mark_activity(before[i % len(before)], seen=True, read=True)

        expected = await records(oracle.storage, key)
        assert expected == await records(other_order, key)
        assert await records(storages[0], key) == expected
        assert await feeds[0].get_notification_data() == await oracle.get_notification_data()


async def test_aggregated_feed_adds_and_removes(open_storage: StorageOpener) -> None:
    async with AsyncExitStack() as stack:
        # RecentVerbAggregator: two groups (one per verb), ~25 writers each.
        storages, feeds, oracle = await add_concurrently(
            stack, open_storage, ConcurrentAggregated, 3
        )
        key = feeds[0].key

        # Removing distinct activities commutes as well.
        doomed = [batch(i)[0] for i in range(TASKS)][-30:]
        await run_concurrently(
            [lambda f=f, a=a: f.remove_many([a]) for f, a in zip(feeds, doomed, strict=False)]
        )
        for activity in doomed:
            await oracle.remove_many([activity])
        assert await records(storages[0], key) == await records(oracle.storage, key)
