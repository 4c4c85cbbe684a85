"""Concurrent page reads share pipelines; each caller still gets its own page or error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiostream import (
    Activity,
    AggregatedFeed,
    BaseFeed,
    Love,
    StorageError,
    StorageUnavailableError,
)
from aiostream.storage.redis import RedisStorage
from aiostream.storage.redis import _scripts as scripts
from tests.helpers import T0
from tests.redis.conftest import KINDS
from tests.servers import start_redis

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS[:1])
def kind(request: pytest.FixtureRequest) -> str:
    """Standalone only: a cluster storage does not batch."""
    return str(request.param)


class Flat(BaseFeed):
    key_format = "batch:flat:%(user_id)s"


class Grouped(AggregatedFeed):
    key_format = "batch:grouped:%(user_id)s"


def activities(user: int, n: int) -> list[Activity]:
    return [
        Activity(user, Love, i, time=T0 + dt.timedelta(hours=i), extra_context={"u": user})
        for i in range(n)
    ]


class PipelineSpy:
    """Counts the pipelines the storage's client makes."""

    def __init__(self, storage: RedisStorage, monkeypatch: Any) -> None:
        self.count = 0
        make = storage.client.pipeline

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return make(*args, **kwargs)

        monkeypatch.setattr(storage.client, "pipeline", pipeline)


async def fill(storage: RedisStorage) -> dict[Any, list[Any]]:
    """Feeds of different sizes; returns what each holds, read alone."""
    expected: dict[Any, list[Any]] = {}
    for user in range(1, 7):
        flat, grouped = Flat(user, storage=storage), Grouped(user, storage=storage)
        await flat.add_many(activities(user, 4 * user))
        await grouped.add_many(activities(user, 12 * user))
        for feed in (flat, grouped):
            expected[feed] = await feed[:]
    return expected


async def read_at_once(reads: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(reads)

    async def run(i: int) -> None:
        try:
            results[i] = await reads[i]()
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(reads)):
            tg.start_soon(run, i)
    return results


async def test_concurrent_reads_share_a_pipeline_and_get_their_own_pages(
    storage: RedisStorage, monkeypatch: Any
) -> None:
    expected = await fill(storage)
    spy = PipelineSpy(storage, monkeypatch)
    feeds = list(expected) * 4
    sizes = [1 + i % 7 for i in range(len(feeds))]
    for feed, size in zip(feeds, sizes, strict=True):  # one at a time: plain calls
        assert await feed[:size] == expected[feed][:size]
    assert spy.count == 0

    reads = [lambda f=f, n=n: f[:n] for f, n in zip(feeds, sizes, strict=True)]
    assert await read_at_once(reads) == [expected[f][:n] for f, n in zip(feeds, sizes, strict=True)]
    assert 1 <= spy.count < len(reads) // 4


async def test_concurrent_timeline_pages_are_one_script_call(
    storage: RedisStorage, monkeypatch: Any
) -> None:
    expected = await fill(storage)
    flat = [f for f in expected if isinstance(f, Flat)] * 3
    calls: list[Any] = []
    execute = storage.client.execute_command

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[:3])
        return await execute(*args, **kwargs)

    monkeypatch.setattr(storage.client, "execute_command", spy)
    PipelineSpy(storage, monkeypatch)
    reads = [lambda f=f, n=n: f[: 1 + n % 5] for n, f in enumerate(flat)]
    assert await read_at_once(reads) == [expected[f][: 1 + n % 5] for n, f in enumerate(flat)]
    # The first read goes alone; the others, queued meanwhile, in one READ_TIMELINES.
    assert calls == [
        ("EVALSHA", scripts.READ_TIMELINE.sha, 1),
        ("EVALSHA", scripts.READ_TIMELINES.sha, len(flat) - 1),
    ]


async def test_batched_pages_pass_over_deleted_activities_in_the_same_call(
    storage: RedisStorage, monkeypatch: Any
) -> None:
    feeds = [Flat(user, storage=storage) for user in range(1, 7)]
    live: dict[Any, list[Any]] = {}
    for feed in feeds:
        held = activities(feed.user_id, 8)
        await feed.add_many(held)
        for gone in held[-3:] + held[:1]:  # a whole page of 3 at the top, and the oldest
            await feed.remove_activity(gone)
        live[feed] = list(reversed(held[1:-3]))
    calls: list[Any] = []
    execute = storage.client.execute_command

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[:3])
        return await execute(*args, **kwargs)

    monkeypatch.setattr(storage.client, "execute_command", spy)
    PipelineSpy(storage, monkeypatch)
    reads = [lambda f=f: f[1:4] for f in feeds]
    assert await read_at_once(reads) == [live[f][1:4] for f in feeds]
    assert calls == [
        ("EVALSHA", scripts.READ_TIMELINE.sha, 1),
        ("EVALSHA", scripts.READ_TIMELINES.sha, len(feeds) - 1),
    ]
    monkeypatch.undo()
    # The reads removed the entries of deleted activities they passed over (the three
    # newest), not the oldest, which no read reached.
    assert [await f.count() for f in feeds] == [5] * len(feeds)
    assert await read_at_once([lambda f=f: f[:10] for f in feeds]) == [live[f] for f in feeds]
    assert [await f.count() for f in feeds] == [4] * len(feeds)


async def test_an_error_reaches_only_its_caller(storage: RedisStorage) -> None:
    expected = await fill(storage)
    broken = Flat("broken", storage=storage)
    await storage.client.set(storage._tag + broken.key + "}:t", "not a sorted set")
    # Pages only (one READ_TIMELINES), then pages and groups (a pipeline).
    flat = [f for f in expected if isinstance(f, Flat)]
    reads: list[Any] = [lambda f=f: f[:10] for f in flat]
    reads.insert(3, lambda: broken[:10])
    results = await read_at_once(reads)
    failure = results.pop(3)
    assert isinstance(failure, StorageError)
    assert "WRONGTYPE" in str(failure)
    assert results == [expected[f][:10] for f in flat]
    feeds = list(expected)
    reads = [lambda f=f: f[:10] for f in feeds]
    reads.insert(3, lambda: broken[:10])
    results = await read_at_once(reads)
    failure = results.pop(3)
    assert isinstance(failure, StorageError)
    assert "WRONGTYPE" in str(failure)
    assert results == [expected[f][:10] for f in feeds]


@pytest.mark.parametrize("mixed", [True, False], ids=["pipeline", "one-script"])
async def test_reads_after_the_server_lost_its_scripts(storage: RedisStorage, mixed: bool) -> None:
    expected = await fill(storage)
    await storage.client.execute_command("SCRIPT", "FLUSH")
    feeds = [f for f in expected if mixed or isinstance(f, Flat)] * 2
    assert await read_at_once([lambda f=f: f[:5] for f in feeds]) == [
        expected[f][:5] for f in feeds
    ]


async def test_a_cancelled_reader_leaves_the_others_alone(storage: RedisStorage) -> None:
    expected = await fill(storage)
    feeds = list(expected)
    results: dict[int, Any] = {}

    async def read(i: int) -> None:
        results[i] = await feeds[i][:5]

    async with anyio.create_task_group() as tg:
        for i in range(2, len(feeds)):
            tg.start_soon(read, i)
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(read, 0)
            doomed.start_soon(read, 1)
            await anyio.lowlevel.checkpoint()  # all of them are waiting for Redis now
            doomed.cancel_scope.cancel()
    assert sorted(results) == list(range(2, len(feeds)))
    for i in range(2, len(feeds)):
        assert results[i] == expected[feeds[i]][:5]
    assert [await f[:5] for f in feeds] == [expected[f][:5] for f in feeds]


async def test_a_failed_batch_fails_each_caller(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "private")
    try:
        async with RedisStorage.from_url(server.url, retries=0) as storage:
            await fill(storage)
            feeds = [Flat(user, storage=storage) for user in range(1, 7)] * 3
            server.stop()
            results = await read_at_once([lambda f=f: f[:5] for f in feeds])
            assert all(isinstance(r, StorageUnavailableError) for r in results), results
    finally:
        server.stop()


@pytest.mark.parametrize("shards", [1, 3, 8, 16, 20])
async def test_pages_with_any_number_of_shards(handle: Any, prefix: str, shards: int) -> None:
    async with RedisStorage.from_url(handle.url, prefix=prefix, activity_shards=shards) as storage:
        feeds = [Flat(user, storage=storage) for user in range(1, 5)]
        expected = {}
        for feed in feeds:
            batch = activities(feed.user_id, 40)  # type: ignore[arg-type]
            await feed.add_many(batch)
            expected[feed] = sorted(batch, reverse=True)
        assert [await f[:30] for f in feeds] == [expected[f][:30] for f in feeds]
        pages = await read_at_once([lambda f=f: f[:30] for f in feeds * 3])
        assert pages == [expected[f][:30] for f in feeds * 3]
