"""Fanout to many feeds on the real node: every row written exactly once, failures reported.

``add_to_timelines`` runs its writes through the pipeline (see ``test_pipeline.py`` for
the mechanics against a fake driver). These tests check the rows themselves, read back
with one filtering query over the test's namespace.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from aiostream import StorageError, StorageTimeoutError
from aiostream.query import Query
from aiostream.storage.cassandra import CassandraStorage
from tests.backends.cassandra import CassandraHandle

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra]


def entries(ids: list[int]) -> list[tuple[int, str]]:
    return [(i, f"payload-{i}") for i in ids]


async def timeline_rows(cassandra: CassandraHandle, namespace: str) -> Counter[tuple[str, int]]:
    """Every ``(feed, activity id)`` row of the namespace, counted."""

    def read() -> Counter[tuple[str, int]]:
        result = cassandra.session.execute(
            f'SELECT feed, activity_id FROM "{cassandra.keyspace}".timeline '
            "WHERE namespace = %s ALLOW FILTERING",
            (namespace,),
        )
        return Counter((row.feed, row.activity_id) for row in result)

    return await anyio.to_thread.run_sync(read)


@pytest.fixture
async def narrow(cassandra: CassandraHandle, namespace: str) -> Any:
    """A storage with a small window, so a few thousand feeds take many turns of it."""
    async with cassandra.storage(namespace, max_concurrency=16) as storage:
        yield storage


@pytest.mark.parametrize("ids", [[7], [7, 8, 9]], ids=["one-entry", "batch-per-feed"])
async def test_large_fanout_writes_every_row_exactly_once(
    cassandra: CassandraHandle, namespace: str, narrow: CassandraStorage, ids: list[int]
) -> None:
    keys = [f"fan:{i}" for i in range(3000)]
    await narrow.add_to_timelines([*keys, *keys[:50]], entries(ids), max_length=None, store=True)
    rows = await timeline_rows(cassandra, namespace)
    assert rows == Counter((key, i) for key in keys for i in ids)
    assert await narrow.load_activities([*ids, 12345]) == dict(entries(ids))
    await narrow.remove_from_timelines(keys, ids[:1])
    assert await timeline_rows(cassandra, namespace) == Counter(
        (key, i) for key in keys for i in ids[1:]
    )
    await narrow.delete_activities(ids)
    assert await narrow.load_activities(ids) == {}


async def test_fanout_trims_every_feed_after_writing(narrow: CassandraStorage) -> None:
    keys = [f"trim:{i}" for i in range(200)]
    await narrow.add_to_timelines(keys, entries([1, 2, 3]), max_length=None, store=False)
    await narrow.add_to_timelines(keys, entries([4]), max_length=2, store=False)
    for key in keys[::37]:
        read = await narrow.read_timeline(key, 0, None, Query())
        assert [i for i, _ in read] == [4, 3]


async def test_a_failure_in_the_middle_of_a_fanout_is_reported(
    cassandra: CassandraHandle, narrow: CassandraStorage
) -> None:
    keys = [f"mid:{i}" for i in range(2000)]
    keys[1000] = "k" * 70_000  # over the 64 KiB partition key limit: cannot be sent
    with pytest.raises(StorageError, match=cassandra.host) as caught:
        await narrow.add_to_timelines(keys, entries([5]), max_length=0, store=False)
    assert caught.value.__cause__ is not None  # what the driver raised
    assert any("1 of the" in note for note in caught.value.__notes__)
    # The trim to 0 runs only after every write succeeded, so it did not run; the
    # statements after the failure were never sent (the window is 16).
    assert await narrow.count_timeline(keys[0]) == 1
    assert await narrow.count_timeline(keys[-1]) == 0


async def test_a_fanout_timing_out_is_a_storage_timeout(
    cassandra: CassandraHandle, namespace: str
) -> None:
    keys = [f"slow:{i}" for i in range(300)]
    async with cassandra.storage(namespace) as warm:
        await warm.add_to_timelines(keys[:2], entries([1]), max_length=None, store=False)
    async with cassandra.storage(namespace, request_timeout=1e-6) as storage:
        storage._schema_checked = True  # the check itself would time out first
        with pytest.raises(StorageTimeoutError, match=cassandra.host) as caught:
            await storage.add_to_timelines(keys, entries([1]), max_length=None, store=False)
    assert type(caught.value.__cause__).__name__ == "OperationTimedOut"
