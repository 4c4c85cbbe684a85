"""Timelines written before binary members: read as before, rewritten by ``migrate``."""

from __future__ import annotations

from typing import Any

import pytest
from redis.client import NEVER_DECODE

from aiostream.ids import id_to_key
from aiostream.storage.redis import RedisStorage
from aiostream.storage.redis.__main__ import main
from tests.helpers import TestFeed, make_activities

pytestmark = pytest.mark.anyio


async def old_timeline(
    storage: RedisStorage, raw: Any, feed: TestFeed, activities: list[Any]
) -> str:
    """Store ``activities`` and write ``feed``'s timeline as the hex layout did."""
    await storage.store_activities(feed.serialize_activities(activities))
    timeline = storage._tag + feed.key + "}:t"
    await raw.zadd(timeline, {id_to_key(a.serialization_id): 0 for a in activities})
    return timeline


async def members(raw: Any, timeline: str) -> list[bytes]:
    return list(await raw.execute_command("ZRANGE", timeline, 0, -1, **{NEVER_DECODE: True}))


async def test_a_timeline_of_hex_members_reads_writes_and_migrates(
    storage: RedisStorage, raw: Any, kind: str
) -> None:
    feed = TestFeed(1, storage=storage)
    old, new = make_activities(4), make_activities(3, start=10)
    timeline = await old_timeline(storage, raw, feed, old)
    assert await feed[:] == old[::-1]
    assert await feed.filter(activity_id__lte=old[2].serialization_id)[:2] == [old[2], old[1]]
    assert await feed.index_of(old[1]) == 2

    # Newer activities (binary members) sort above the hex ones: the order stays exact.
    await feed.add_many(new)
    newest_first = [*new[::-1], *old[::-1]]
    assert await feed[:] == newest_first
    assert await feed[2:4] == newest_first[2:4]
    assert await feed.index_of(old[1]) == 5
    await feed.remove(old[2])  # both forms of its member go
    newest_first.remove(old[2])
    # One old activity written again (a job retried across the upgrade) shows once; where,
    # among the others, is exact only once the timeline is migrated.
    await feed.add(old[0])
    page = await feed[:]
    assert sorted(page, key=lambda a: a.serialization_id) == newest_first[::-1]

    assert await storage.migrate_timelines() == (1, 2)  # old[1] and old[3]
    stored = await members(raw, timeline)
    assert sorted(stored) == sorted(a.serialization_id.to_bytes(13, "big") for a in newest_first)
    assert await feed[:] == newest_first
    assert await feed.filter(activity_id__lte=old[3].serialization_id)[:] == newest_first[3:]
    assert await feed.count() == len(newest_first)
    assert await storage.migrate_timelines() == (1, 0)  # idempotent


async def test_migrate_on_the_command_line(
    storage: RedisStorage, raw: Any, handle: Any, prefix: str, kind: str, capsys: Any
) -> None:
    feed = TestFeed(2, storage=storage)
    activities = make_activities(5)
    timeline = await old_timeline(storage, raw, feed, activities)
    url = handle.url + ("?cluster=true" if kind == "redis_cluster" else "")
    assert await anyio_main(["migrate", "--url", url, "--prefix", prefix]) == 0
    assert capsys.readouterr().out == "timelines scanned: 1, members rewritten: 5\n"
    assert all(len(m) == 13 for m in await members(raw, timeline))
    assert await feed[:] == activities[::-1]


async def anyio_main(argv: list[str]) -> int:
    """The command's ``main`` (it runs its own event loop) in a worker thread."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(main, argv)
