"""Fanout chunks hand their activities on serialized: a flat feed writes the payloads as
they are (decoding nothing), feed kinds that look at the activities decode them once,
jobs of earlier versions (no ids) still run, and reads keep the ids the storage returned."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from aiostream import Manager
from aiostream.activity import _single as activity_module
from aiostream.fanout import FanoutChunk, FollowChunk, join_chunks
from aiostream.serializers import ActivitySerializer
from aiostream.storage.memory import MemoryStorage
from tests.helpers import TestAggregatedFeed, TestFeed, TestUserFeed, make_activities

pytestmark = [pytest.mark.anyio, pytest.mark.memory]


class ChunkManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"normal": TestFeed, "aggregated": TestAggregatedFeed}
    user_feed_class = TestUserFeed

    def get_user_follower_ids(self, user_id: Any) -> dict[None, list[int]]:
        return {None: [1, 2, 3]}


def chunks(manager: Manager, activities: Any) -> list[FanoutChunk]:
    followers = {None: [1, 2, 3]}
    return list(manager.create_fanout_chunks(followers, "add", activities))


async def test_a_flat_chunk_writes_its_payloads_without_decoding_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = MemoryStorage()
    manager = ChunkManager(storage=storage)
    activities = make_activities(2)
    (flat, aggregated) = chunks(manager, activities)
    assert flat.activity_ids == tuple(a.serialization_id for a in activities)
    assert FanoutChunk.from_dict(flat.to_dict()) == flat
    await TestFeed(0, storage=storage).insert_activities(activities)

    decoded: list[str] = []
    loads = ActivitySerializer.loads

    def counted(self: ActivitySerializer[Any], payload: Any) -> Any:
        decoded.append(payload)
        return loads(self, payload)

    monkeypatch.setattr(ActivitySerializer, "loads", counted)
    await manager.run_chunk(flat)
    assert decoded == []
    for user in (1, 2, 3):
        assert await TestFeed(user, storage=storage)[:] == sorted(activities, reverse=True)

    # Aggregated feeds group the activities: decoded once for the whole chunk.
    await manager.run_chunk(aggregated)
    assert sorted(decoded) == sorted(aggregated.activities)
    for user in (1, 2, 3):
        (group,) = await TestAggregatedFeed(user, storage=storage)[:]
        assert sorted(group.activities) == sorted(activities)


async def test_a_chunk_without_ids_from_an_earlier_version_still_runs() -> None:
    storage = MemoryStorage()
    manager = ChunkManager(storage=storage)
    activities = make_activities(2)
    (flat, _) = chunks(manager, activities)
    data = flat.to_dict()
    del data["activity_ids"]
    old = FanoutChunk.from_dict(data)
    assert old.activity_ids == ()
    await TestFeed(0, storage=storage).insert_activities(activities)
    await manager.run_chunk(old)
    assert await TestFeed(2, storage=storage)[:] == sorted(activities, reverse=True)


async def test_reads_keep_the_ids_the_storage_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = MemoryStorage()
    feed = TestFeed(1, storage=storage)
    activities = make_activities(3)
    await feed.add_many(activities)
    expected = sorted((a.serialization_id for a in activities), reverse=True)

    def forbidden(*args: Any) -> int:
        raise AssertionError("an id read back was computed again")

    with monkeypatch.context() as patch:
        patch.setattr(activity_module, "make_id", forbidden)
        page = await feed[:]
        assert [a.serialization_id for a in page] == expected
    # A field changed after the read gives a new id, computed again.
    first = page[0]
    first.object_id += 1
    assert first.serialization_id not in expected


def test_join_chunks_joins_consecutive_chunks_of_the_same_work_up_to_a_size() -> None:
    add = FanoutChunk("add", "normal", (1, 2), ("{}",), "HIGH", True, (7,))
    more = FanoutChunk("add", "normal", (3,), ("{}",), "HIGH", True, (7,))
    big = FanoutChunk("add", "normal", tuple(range(10, 20)), ("{}",), "HIGH", True, (7,))
    low = FanoutChunk("add", "normal", (4,), ("{}",), "LOW", True, (7,))
    follow = FollowChunk("follow", 1, (2,))
    jobs = join_chunks([add, more, big, low, follow, add, add], 4)
    assert jobs == [
        FanoutChunk("add", "normal", (1, 2, 3), ("{}",), "HIGH", True, (7,)),
        big,  # more than 4 followers: left as it is, never split
        low,  # other work: not joined
        follow,
        FanoutChunk("add", "normal", (1, 2, 1, 2), ("{}",), "HIGH", True, (7,)),
    ]
