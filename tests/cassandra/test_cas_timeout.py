"""A lightweight transaction that times out has an unknown outcome: the aggregated add
re-reads and converges whether the batch applied or not (on the real node)."""

from __future__ import annotations

from typing import Any

import pytest
from cassandra import WriteTimeout
from cassandra.policies import WriteType

from aiostream.exceptions import StorageTimeoutError
from tests.helpers import TestAggregatedFeed, make_activities

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra]


def cas_timeout() -> StorageTimeoutError:
    """What the storage raises when Cassandra answers a CAS batch with a write timeout."""
    error = StorageTimeoutError("Cassandra at 127.0.0.1 did not answer in time")
    error.__cause__ = WriteTimeout("CAS operation timed out", write_type=WriteType.CAS)
    return error


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
async def test_aggregated_add_converges_after_a_cas_timeout(
    cstorage: Any, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    feed = TestAggregatedFeed(1, storage=cstorage)
    first, second = make_activities(2)
    await feed.add(first)
    batch = cstorage._batch
    timeouts = [1]

    async def flaky_batch(items: Any) -> Any:
        if timeouts:
            timeouts.pop()
            if applied:
                await batch(items)
            raise cas_timeout()
        return await batch(items)

    monkeypatch.setattr(cstorage, "_batch", flaky_batch)
    await feed.add(second)
    assert timeouts == []
    (group,) = await feed[:]
    assert group.activities == [first, second]
    assert group.activity_count == 2


async def test_other_timeouts_still_raise(cstorage: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = TestAggregatedFeed(1, storage=cstorage)

    async def timing_out(items: Any) -> Any:
        raise StorageTimeoutError("Cassandra at 127.0.0.1 did not answer in time")

    monkeypatch.setattr(cstorage, "_batch", timing_out)
    with pytest.raises(StorageTimeoutError):
        await feed.add(make_activities(1)[0])
