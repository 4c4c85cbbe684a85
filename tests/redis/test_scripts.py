"""The Lua scripts and pipelines: compare-and-set, NOSCRIPT recovery, exact ordering, errors."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ResponseError

from aiostream import StorageError, ValidationError
from aiostream.ids import MAX_ID
from aiostream.query import Query
from aiostream.storage.base import GroupChange, GroupRecord
from aiostream.storage.redis import RedisStorage
from tests.redis.conftest import keys_with_prefix

pytestmark = pytest.mark.anyio


async def snapshot(raw: Any, prefix: str) -> dict[str, Any]:
    """Type and content of every key of the test (to prove nothing was written)."""
    state: dict[str, Any] = {}
    for key in sorted(await keys_with_prefix(raw, prefix)):
        kind = await raw.type(key)
        if kind == "zset":
            state[key] = await raw.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            state[key] = await raw.hgetall(key)
        elif kind == "set":
            state[key] = await raw.smembers(key)
        else:
            state[key] = kind
    return state


def record(group: str, group_id: int, version: int = 1, payload: str = "p") -> GroupRecord:
    return GroupRecord(group, group_id, f"{payload}:{group}:{group_id}", version)


async def test_compare_and_set_conflict_writes_nothing(
    storage: RedisStorage, raw: Any, prefix: str
) -> None:
    key = "cas:1"
    assert await storage.write_groups(
        key,
        [GroupChange("a", None, record("a", 10)), GroupChange("b", None, record("b", 20))],
        max_length=None,
        track_markers=True,
    )
    await storage.mark_groups(key, [10], seen=True, read=False)
    before = await snapshot(raw, prefix)

    conflicts = [
        # a stale version
        [GroupChange("a", 7, record("a", 11, 8))],
        # "must not exist" for an existing group
        [GroupChange("b", None, record("b", 21))],
        # an expected group that does not exist
        [GroupChange("c", 1, record("c", 30, 2))],
        # the first change matches, the second does not: neither is applied
        [GroupChange("a", 1, record("a", 12, 2)), GroupChange("b", 5, None)],
    ]
    for changes in conflicts:
        assert not await storage.write_groups(key, changes, max_length=0, track_markers=True)
        assert await snapshot(raw, prefix) == before

    assert await storage.write_groups(
        key, [GroupChange("a", 1, record("a", 12, 2))], max_length=None, track_markers=True
    )
    groups = await storage.get_groups(key, ["a", "b", "c"])
    assert groups["a"] == record("a", 12, 2)
    assert groups["b"] == record("b", 20)
    assert "c" not in groups
    # The rewritten group's old id lost its markers; its new id is unseen and unread.
    assert await storage.count_markers(key) == (2, 2)
    read = await storage.read_groups(key, 0, None, Query(), markers=True)
    assert [(r.group, r.id, r.unseen, r.unread) for r in read] == [
        ("b", 20, True, True),
        ("a", 12, True, True),
    ]


async def test_group_names_with_any_characters(storage: RedisStorage) -> None:
    names = ["", "|", "1|2|", "a b", "{x}", "é中", "\x00\n", "0" * 26]
    changes = [GroupChange(n, None, record(n, 100 + i, payload="|")) for i, n in enumerate(names)]
    assert await storage.write_groups("names", changes, max_length=None, track_markers=False)
    got = await storage.get_groups("names", names)
    assert got == {n: record(n, 100 + i, payload="|") for i, n in enumerate(names)}
    read = await storage.read_groups("names", 0, None, Query(), markers=False)
    assert [r.group for r in read] == list(reversed(names))
    await storage.trim_groups("names", 3)
    assert sorted(await storage.get_groups("names", names)) == sorted(names[-3:])


async def test_trim_groups_drops_data_and_markers(storage: RedisStorage, raw: Any) -> None:
    changes = [GroupChange(f"g{i}", None, record(f"g{i}", 1000 + i)) for i in range(10)]
    assert await storage.write_groups("trim", changes, max_length=4, track_markers=True)
    assert await storage.count_groups("trim") == 4
    assert await storage.count_markers("trim") == (4, 4)
    assert sorted(await storage.get_groups("trim", [f"g{i}" for i in range(10)])) == [
        "g6",
        "g7",
        "g8",
        "g9",
    ]
    assert await storage.groups_index_of("trim", 1009) == 0
    assert await storage.groups_index_of("trim", 1006) == 3
    assert await storage.groups_index_of("trim", 1005) is None


async def test_ids_beyond_2_53_are_ordered_and_filtered_exactly(storage: RedisStorage) -> None:
    big = 2**100
    ids = [big + k for k in (0, 1, 2, 3, 5)] + [2**53, 2**53 + 1, 2**53 + 2, MAX_ID, 0, 1]
    await storage.add_to_timelines(
        ["big"], [(i, f"payload {i}") for i in ids], max_length=None, store=True
    )
    ascending = sorted(ids)
    assert [i for i, _ in await storage.read_timeline("big", 0, None, Query())] == list(
        reversed(ascending)
    )
    assert [
        i for i, _ in await storage.read_timeline("big", 0, 3, Query().order_by("activity_id"))
    ] == [0, 1, 2**53]
    window = Query().filter(activity_id__gt=big + 1, activity_id__lte=big + 5)
    assert [i for i, _ in await storage.read_timeline("big", 0, None, window)] == [
        big + 5,
        big + 3,
        big + 2,
    ]
    neighbours = Query().filter(activity_id__gte=2**53 + 1, activity_id__lt=2**53 + 2)
    assert [i for i, _ in await storage.read_timeline("big", 0, None, neighbours)] == [2**53 + 1]
    # Newest first: MAX_ID, big + 5, big + 3, ...
    assert await storage.timeline_index_of("big", big + 3) == 2
    assert await storage.timeline_index_of("big", big + 4) is None
    assert await storage.timeline_index_of("big", MAX_ID) == 0
    assert await storage.timeline_index_of("big", MAX_ID + 1) is None
    assert await storage.load_activities([big + 2, big + 4]) == {big + 2: f"payload {big + 2}"}

    # Groups order the same way, and a group id filter is exact too.
    changes = [GroupChange(f"g{i}", None, record(f"g{i}", i)) for i in ids]
    assert await storage.write_groups("biggroups", changes, max_length=None, track_markers=False)
    read = await storage.read_groups("biggroups", 0, None, window, markers=False)
    assert [r.id for r in read] == [big + 5, big + 3, big + 2]
    assert await storage.groups_index_of("biggroups", big + 3) == 2
    assert await storage.groups_index_of("biggroups", 2**53 + 1) == 7


async def test_ids_outside_the_range_are_rejected_before_writing(
    storage: RedisStorage, raw: Any, prefix: str
) -> None:
    for bad in (-1, MAX_ID + 1):
        with pytest.raises(ValidationError, match="activity_id"):
            await storage.add_to_timelines(
                ["bad"], [(1, "ok"), (bad, "x")], max_length=None, store=True
            )
        with pytest.raises(ValidationError):
            await storage.store_activities([(bad, "x")])
        with pytest.raises(ValidationError):
            await storage.write_groups(
                "bad",
                [GroupChange("g", None, record("g", bad))],
                max_length=None,
                track_markers=False,
            )
    with pytest.raises(ValidationError, match="max_length"):
        await storage.add_to_timelines(["bad"], [(1, "ok")], max_length=-1, store=False)
    assert await keys_with_prefix(raw, prefix) == set()
    # Reads and removals of such ids find nothing instead of failing.
    assert await storage.load_activities([-1, MAX_ID + 1]) == {}
    await storage.remove_from_timelines(["bad"], [-1])
    await storage.delete_activities([MAX_ID + 1])


async def test_scripts_survive_script_flush(storage: RedisStorage, raw: Any, kind: str) -> None:
    """NOSCRIPT: direct calls fall back to EVAL, pipelines load the scripts and resend."""
    await storage.add_to_timelines(["f"], [(1, "one")], max_length=None, store=True)
    await raw.execute_command("SCRIPT FLUSH")  # on every primary of the cluster
    await storage.add_to_timelines(["f", "g"], [(2, "two")], max_length=5, store=True)
    await raw.execute_command("SCRIPT FLUSH")
    storage.chunk_size = 1  # several scripts: a pipeline
    await storage.add_to_timelines(["f", "g"], [(3, "three")], max_length=5, store=True)
    await raw.execute_command("SCRIPT FLUSH")
    await storage.remove_from_timelines(["f", "g"], [3])
    await raw.execute_command("SCRIPT FLUSH")
    assert await storage.read_timeline("f", 0, None, Query()) == [(2, "two"), (1, "one")]
    await raw.execute_command("SCRIPT FLUSH")
    assert await storage.write_groups(
        "k", [GroupChange("a", None, record("a", 5))], max_length=None, track_markers=True
    )
    await raw.execute_command("SCRIPT FLUSH")
    assert await storage.count_markers("k") == (1, 1)


async def test_failed_pipeline_is_reported(storage: RedisStorage, raw: Any, prefix: str) -> None:
    """A write whose pipeline failed in part raises: it is never reported as done."""
    shard_key = f"{{{prefix}act:{2 % storage.activity_shards}}}"
    await raw.set(shard_key, "not a hash")
    entries = [(i, f"p{i}") for i in range(1, 40)]  # touches every shard, shard 2 included
    with pytest.raises(StorageError, match="WRONGTYPE") as caught:
        await storage.add_to_timelines(["f"], entries, max_length=None, store=True)
    assert isinstance(caught.value.__cause__, ResponseError)
    with pytest.raises(StorageError, match="WRONGTYPE"):
        await storage.store_activities(entries)
    await raw.set(f"{{{prefix}wrong}}:t", "not a zset")
    with pytest.raises(StorageError, match="WRONGTYPE"):
        await storage.read_timeline("wrong", 0, 10, Query())
    await raw.delete(shard_key, f"{{{prefix}wrong}}:t")


async def test_fanout_chunks_and_trims_every_feed(storage: RedisStorage) -> None:
    storage.chunk_size = 7  # several script calls in one pipeline
    keys = [f"fan:{i}" for i in range(30)]
    await storage.add_to_timelines(
        keys, [(i, f"p{i}") for i in range(1, 6)], max_length=None, store=True
    )
    await storage.store_activities([(10, "p10")])
    await storage.add_to_timelines(keys, [(10, "p10")], max_length=3, store=False)
    for key in keys:
        assert [i for i, _ in await storage.read_timeline(key, 0, None, Query())] == [10, 5, 4]
    await storage.add_to_timelines(keys, [], max_length=1, store=False)
    assert {await storage.count_timeline(k) for k in keys} == {1}
    await storage.remove_from_timelines(keys, [10, 999])
    assert {await storage.count_timeline(k) for k in keys} == {0}


async def test_injected_client_is_left_open(handle: Any, kind: str) -> None:
    from redis.asyncio import Redis, RedisCluster

    client: Any = (
        RedisCluster.from_url(handle.url) if kind == "redis_cluster" else Redis.from_url(handle.url)
    )
    try:
        async with RedisStorage(client, prefix="inj:") as storage:
            assert storage.cluster == (kind == "redis_cluster")
            await storage.count_timeline("x")
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.redis_cluster
@pytest.mark.parametrize("kind", ["redis_cluster"], indirect=False)
async def test_cluster_fanout_sends_one_script_per_node(
    storage: RedisStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"node:{i}" for i in range(300)]
    await storage.store_activities([(1, "one"), (2, "two")])
    await storage.add_to_timelines(keys, [(1, "one"), (2, "two")], max_length=1, store=False)
    assert storage._cross_slot is True
    assert {await storage.count_timeline(k) for k in keys} == {1}
    await storage.remove_from_timelines(keys[:100], [2])
    assert [await storage.count_timeline(k) for k in keys] == [0] * 100 + [1] * 200

    # Keys routed to the wrong node make the server refuse the script ("non local key");
    # the per-feed pipeline then writes every feed anyway.
    client: Any = storage.client
    first = client.get_node_from_key(storage._tag + keys[0] + "}:t")
    monkeypatch.setattr(client, "get_node_from_key", lambda key: first)
    attempts: list[Exception | None] = []
    pipeline = storage._pipeline

    async def recording(fill: Any) -> list[Any]:
        try:
            result = await pipeline(fill)
        except Exception as exc:
            attempts.append(exc)
            raise
        attempts.append(None)
        return result

    monkeypatch.setattr(storage, "_pipeline", recording)
    await storage.add_to_timelines(keys, [(3, "three")], max_length=None, store=True)
    # The activity is stored first, on its own (see add_to_timelines), then the script.
    assert len(attempts) == 3 and attempts[0] is None and "non local key" in str(attempts[1])
    assert storage._cross_slot is True  # a routing hiccup does not disable the fast path
    assert {await storage.timeline_index_of(k, 3) for k in keys} == {0}
    await storage.remove_from_timelines(keys, [2, 3])  # misrouted too: the fallback again
    assert {await storage.count_timeline(k) for k in keys} == {0}


@pytest.mark.parametrize("meanwhile", ["rewritten", "deleted"])
async def test_update_groups_reads_again_a_group_written_meanwhile(
    storage: RedisStorage, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    key = "upd:1"
    change = GroupChange("a", None, record("a", 10))
    assert await storage.write_groups(key, [change], max_length=None, track_markers=True)
    pipelines: list[Any] = []
    pipeline = storage._pipeline

    async def interfering(fill: Any) -> list[Any]:
        pipelines.append(fill)
        if len(pipelines) == 2:  # between the first read and its write: another writer
            current = (await storage.get_groups(key, ["a"]))["a"]
            new = current._replace(payload="theirs", version=current.version + 1)
            theirs = GroupChange("a", current.version, None if meanwhile == "deleted" else new)
            assert await storage.write_groups(key, [theirs], max_length=None, track_markers=True)
        return await pipeline(fill)

    monkeypatch.setattr(storage, "_pipeline", interfering)
    read: list[str] = []

    def rewrite(feed_key: str, stored: GroupRecord) -> str:
        read.append(stored.payload)
        return stored.payload + "+ours"

    await storage.update_groups([key], ["a"], rewrite, max_attempts=3)
    groups = await storage.get_groups(key, ["a"])
    if meanwhile == "deleted":
        assert read == ["p:a:10"] and groups == {}  # never created again
        return
    assert read == ["p:a:10", "theirs"]
    assert groups["a"] == GroupRecord("a", 10, "theirs+ours", 3)
    assert await storage.count_markers(key) == (1, 1)


def test_unsupported_script_flags_are_recognised() -> None:
    from aiostream.storage.redis._scripts import unsupported_flags

    redis6 = "Error compiling script (new function): user_script:1: unexpected symbol near '#'"
    assert unsupported_flags(ResponseError(redis6))
    assert not unsupported_flags(ResponseError("Script attempted to access a non local key"))
    assert not unsupported_flags(ResponseError("WRONGTYPE Operation against a key"))


def test_the_lua_is_package_data_and_takes_its_constants_from_python() -> None:
    import re
    from importlib.resources import files

    from aiostream import group_format
    from aiostream.storage.redis import _scripts as scripts

    lua = files("aiostream.storage.redis") / "lua"
    sources = {
        f"{d}{f.name}": f.read_text()
        for d, top in (("", lua), ("lib/", lua / "lib"))
        for f in top.iterdir()
        if f.name.endswith(".lua")
    }
    used = {name for text in sources.values() for name in re.findall(r"\{\{(\w+)\}\}", text)}
    assert used == set(scripts._CONSTANTS)
    assert scripts._CONSTANTS["ID_WIDTH"] == str(group_format.ID_WIDTH)
    assert scripts._CONSTANTS["ROW_SEPARATOR"] == '"\\031"'
    assert scripts._CONSTANTS["IDS_SEPARATOR"] == '"\\030"'
    # Every file is a script of its own or shared by some, and every placeholder is filled.
    # (the cross-slot scripts are loaded on their own: Redis 6 refuses their flags)
    every = (*scripts.ALL_SCRIPTS, *scripts.CROSS_SLOT_SCRIPTS, scripts.PUBLISH_UPDATES)
    names = {s.name for s in every}
    assert {n.removesuffix(".lua") for n in sources if "/" not in n} == names
    for script in every:
        assert "{{" not in script.source, script.name
    for shared in (n for n in sources if n.startswith("lib/")):
        function = re.search(r"local function (\w+)", sources[shared])
        assert function and any(function.group(0) in s.source for s in every)
    for cross_slot in (*scripts.CROSS_SLOT_SCRIPTS, scripts.PUBLISH_UPDATES):
        assert cross_slot.source.startswith("#!lua flags=allow-cross-slot-keys\n")
