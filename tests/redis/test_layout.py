"""Key layout: names, hash tags, slots, member encodings, activity shards."""

from __future__ import annotations

from typing import Any

import pytest
from redis.client import NEVER_DECODE
from redis.crc import key_slot

from aiostream import Activity, Love
from aiostream.ids import id_to_key
from aiostream.storage.redis import RedisStorage
from aiostream.storage.redis._layout import shard_of
from tests.helpers import TestAggregatedFeed, TestFeed, TestNotificationFeed, at
from tests.redis.conftest import keys_with_prefix

pytestmark = pytest.mark.anyio

NASTY = "a:b{c}"  # escaped by format_key to a%3Ab%7Bc%7D


async def test_keys_of_every_feed_kind(storage: RedisStorage, raw: Any, prefix: str) -> None:
    activity = Activity(7, Love, 42, time=at(0))
    await TestFeed(NASTY, storage=storage).add(activity)
    await TestAggregatedFeed(NASTY, storage=storage).add(activity)
    await TestNotificationFeed(NASTY, storage=storage).add(activity)

    escaped = "a%3Ab%7Bc%7D"
    shard = shard_of(activity.serialization_id, storage.activity_shards)
    assert await keys_with_prefix(raw, prefix) == {
        f"{{{prefix}test:flat:{escaped}}}:t",
        f"{{{prefix}test:aggregated:{escaped}}}:g",
        f"{{{prefix}test:aggregated:{escaped}}}:gd",
        f"{{{prefix}test:notification:{escaped}}}:g",
        f"{{{prefix}test:notification:{escaped}}}:gd",
        f"{{{prefix}test:notification:{escaped}}}:us",
        f"{{{prefix}test:notification:{escaped}}}:ur",
        f"{{{prefix}act:{shard}}}",
    }


async def test_member_encodings(storage: RedisStorage, raw: Any, prefix: str) -> None:
    activity = Activity(7, Love, 42, time=at(0))
    await TestFeed(1, storage=storage).add(activity)
    hexed = id_to_key(activity.serialization_id)
    timeline = f"{{{prefix}test:flat:1}}:t"
    member = activity.serialization_id.to_bytes(13, "big")  # the id's 13 bytes, big-endian
    assert await raw.execute_command("ZRANGE", timeline, 0, -1, **{NEVER_DECODE: True}) == [member]
    assert await raw.zscore(timeline, member) == 0.0
    shard_key = f"{{{prefix}act:{shard_of(activity.serialization_id, 16)}}}"
    assert await raw.hkeys(shard_key) == [hexed]

    feed = TestNotificationFeed(1, storage=storage)
    await feed.add(activity)
    (group,) = await feed[:]
    tag = f"{{{prefix}test:notification:1}}"
    group_hex = id_to_key(group.serialization_id)
    assert await raw.zrange(tag + ":g", 0, -1) == [group_hex + group.group]
    data = await raw.hget(tag + ":gd", group.group)
    assert data.startswith(group_hex + "1|")  # id, version 1, payload
    assert await raw.smembers(tag + ":us") == {group_hex}
    assert await raw.smembers(tag + ":ur") == {group_hex}


async def test_all_keys_of_a_feed_share_one_slot(
    storage: RedisStorage, raw: Any, prefix: str, kind: str
) -> None:
    activities = [Activity(i, Love, i, time=at(i)) for i in range(3)]
    for user_id in (NASTY, "}{", "x}:t", 5):
        await TestFeed(user_id, storage=storage).add_many(activities)
        await TestNotificationFeed(user_id, storage=storage).add_many(activities)
    keys = await keys_with_prefix(raw, prefix)
    by_tag: dict[str, set[int]] = {}
    for key in keys:
        tag = key[: key.index("}") + 1]
        by_tag.setdefault(tag, set()).add(key_slot(key.encode()))
        if kind == "redis_cluster":
            assert await raw.cluster_keyslot(key) == key_slot(key.encode())
    assert all(len(slots) == 1 for slots in by_tag.values())
    # 4 users x 2 feeds, besides the activity shards.
    assert len([t for t in by_tag if not t.startswith("{" + prefix + "act:")]) == 8


async def test_user_ids_cannot_reach_other_feeds(storage: RedisStorage) -> None:
    victim = TestFeed(1, storage=storage)
    await victim.add(Activity(1, Love, 1, time=at(0)))
    # Ids that would end the hash tag or imitate a key suffix if they were not escaped.
    for user_id in ("1}:t", "1}", "{1}", "1:", "1 ", "1%7D%3At"):
        other = TestFeed(user_id, storage=storage)
        assert other.key != victim.key
        await other.add_many([Activity(2, Love, 2, time=at(1))])
        await other.trim(0)
        await other.delete()
    assert await victim.count() == 1


async def test_activities_are_stored_once_in_their_shard(
    storage: RedisStorage, raw: Any, prefix: str
) -> None:
    activities = [Activity(i, Love, i, time=at(i)) for i in range(40)]
    for user_id in range(3):
        await TestFeed(user_id, storage=storage).add_many(activities)
    total = 0
    for shard in range(storage.activity_shards):
        fields = await raw.hkeys(f"{{{prefix}act:{shard}}}")
        total += len(fields)
        for field in fields:
            assert shard_of(int(field, 16), storage.activity_shards) == shard
    assert total == 40


async def test_delete_feeds_removes_every_key(storage: RedisStorage, raw: Any, prefix: str) -> None:
    activity = Activity(7, Love, 42, time=at(0))
    feeds = [TestFeed(1, storage=storage), TestNotificationFeed(1, storage=storage)]
    for feed in feeds:
        await feed.add(activity)
    await storage.delete_feeds([feed.key for feed in feeds])
    remaining = await keys_with_prefix(raw, prefix)
    assert all(key.startswith(f"{{{prefix}act:") for key in remaining)
