"""The storage contract: a backend that implements only the required core holds flat
feeds; what needs an optional capability refuses such a storage when it is given it,
naming what is missing; and every built-in backend declares exactly the capabilities
whose methods it has."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import pytest
from typing_extensions import get_protocol_members

from aiostream import ConfigurationError
from aiostream.metrics import NoopMetrics
from aiostream.query import Query
from aiostream.storage.base import (
    ENABLES,
    PROTOCOLS,
    Capability,
    CoreStorage,
    Entry,
    FeedStorage,
    capabilities_of,
    has,
    methods_of,
    require,
)
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.timing import timed_storage
from tests.helpers import TestAggregatedFeed, TestFeed, TestNotificationFeed, make_activities

pytestmark = [pytest.mark.anyio, pytest.mark.memory]

CORE = {
    "store_activities",
    "load_activities",
    "delete_activities",
    "add_to_timelines",
    "remove_from_timelines",
    "read_timeline",
    "count_timeline",
    "trim_timeline",
    "timeline_index_of",
    "delete_feeds",
    "ping",
    "aclose",
}


class CoreOnly:
    """A third-party backend as small as the contract allows: the twelve core methods
    and nothing else (no ``capabilities``, no ``__getattr__``), kept in a memory
    storage it reaches only through those methods."""

    def __init__(self) -> None:
        self._inner = MemoryStorage()
        self.calls: list[str] = []

    async def store_activities(
        self, entries: Sequence[Entry], *, only_new: bool = False
    ) -> dict[int, str]:
        self.calls.append("store_activities")
        return await self._inner.store_activities(entries, only_new=only_new)

    async def load_activities(self, ids: Sequence[int]) -> dict[int, str]:
        self.calls.append("load_activities")
        return await self._inner.load_activities(ids)

    async def delete_activities(self, ids: Sequence[int]) -> None:
        self.calls.append("delete_activities")
        await self._inner.delete_activities(ids)

    async def add_to_timelines(
        self, keys: Sequence[str], entries: Sequence[Entry], *, max_length: int | None, store: bool
    ) -> dict[int, str]:
        self.calls.append("add_to_timelines")
        return await self._inner.add_to_timelines(keys, entries, max_length=max_length, store=store)

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        self.calls.append("remove_from_timelines")
        await self._inner.remove_from_timelines(keys, ids)

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        self.calls.append("read_timeline")
        return await self._inner.read_timeline(key, start, stop, query)

    async def count_timeline(self, key: str) -> int:
        self.calls.append("count_timeline")
        return await self._inner.count_timeline(key)

    async def trim_timeline(self, key: str, max_length: int) -> None:
        self.calls.append("trim_timeline")
        await self._inner.trim_timeline(key, max_length)

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        self.calls.append("timeline_index_of")
        return await self._inner.timeline_index_of(key, activity_id)

    async def delete_feeds(self, keys: Sequence[str]) -> None:
        self.calls.append("delete_feeds")
        await self._inner.delete_feeds(keys)

    async def ping(self) -> None:
        """No server: always ready."""

    async def aclose(self) -> None:
        """Nothing to release."""


class Timings(NoopMetrics):
    """A sink that wants storage timings: feeds then call a timed wrapper."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        self.operations.append(operation)


def test_the_core_is_twelve_methods_and_the_rest_is_optional() -> None:
    assert set(get_protocol_members(CoreStorage)) == CORE
    optional = [methods_of(c) for c in Capability]
    assert all(not (m & CORE) for m in optional)
    assert sum(map(len, optional)) == len(set().union(*optional))  # disjoint
    # FeedStorage, what the built-in backends implement: the core and four capabilities
    # (33 methods, the whole contract before it had a core).
    everything = set(get_protocol_members(FeedStorage))
    built_in = {Capability.GROUPS, Capability.LEASES, Capability.STATES, Capability.UPDATES}
    assert everything == CORE.union(*(methods_of(c) for c in built_in))
    assert len(everything) == 33
    assert set(PROTOCOLS) == set(ENABLES) == set(Capability)


@pytest.mark.parametrize("timed", [False, True], ids=["plain", "timed"])
async def test_a_core_only_storage_holds_a_flat_feed(timed: bool) -> None:
    core = CoreOnly()
    assert isinstance(core, CoreStorage)
    assert not isinstance(core, FeedStorage)
    assert capabilities_of(core) == frozenset()
    metrics = Timings() if timed else None
    # Typed against FeedStorage (what the feeds are written for); core is all it uses.
    feed = TestFeed(1, storage=cast(FeedStorage, core), metrics=metrics)
    activities = make_activities(5)
    await feed.add_many(activities)
    assert [a.object_id for a in await feed[:2]] == [4, 3]
    assert await feed.count() == 5
    assert await feed.index_of(activities[3]) == 1

    await feed.remove(activities[4])
    assert [a.object_id for a in await feed[:]] == [3, 2, 1, 0]
    await feed.remove_activity(activities[3])
    assert [a.object_id for a in await feed[:]] == [2, 1, 0]  # passed over, and removed
    assert await feed.count() == 3

    await feed.trim(2)
    assert [a.object_id for a in await feed[:]] == [2, 1]
    await feed.delete()
    assert await feed[:] == []
    assert await feed.count() == 0
    assert set(core.calls) <= CORE
    if metrics is not None:
        assert "add_to_timelines" in metrics.operations


@pytest.mark.parametrize("feed_class", [TestAggregatedFeed, TestNotificationFeed])
async def test_an_aggregated_feed_refuses_a_storage_without_groups(
    feed_class: type[TestAggregatedFeed],
) -> None:
    core = cast(FeedStorage, CoreOnly())
    with pytest.raises(ConfigurationError) as raised:
        feed_class(1, storage=core)
    message = str(raised.value)
    assert "CoreOnly" in message
    assert "'groups'" in message and "GroupStorage" in message
    assert feed_class.__name__ in message
    assert ENABLES[Capability.GROUPS] in message
    # The fanouts build each follower's feed first: refused before any write.
    with pytest.raises(ConfigurationError, match="'groups'"):
        await feed_class.fanout_add([1, 2], make_activities(1), storage=core)
    assert cast(CoreOnly, core).calls == []


async def test_a_storage_declaring_a_capability_it_lacks_is_refused() -> None:
    class Boasting(CoreOnly):
        capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.GROUPS})

        async def read_groups(self, *args: Any, **kwargs: Any) -> list[Any]:
            return []

    storage = Boasting()
    assert has(storage, Capability.GROUPS)
    with pytest.raises(ConfigurationError, match=r"declares the 'groups'.*lacks count_groups"):
        require(storage, Capability.GROUPS, for_="a test")


def test_a_declaration_that_is_no_capability_is_refused() -> None:
    class Misspelt(CoreOnly):
        capabilities: ClassVar[Any] = frozenset({"grups"})

    with pytest.raises(ConfigurationError, match="must hold Capability values"):
        capabilities_of(Misspelt())


def _built_in() -> list[Any]:
    from aiostream.storage.cassandra import CassandraStorage
    from aiostream.storage.redis import RedisStorage

    return [MemoryStorage, RedisStorage, CassandraStorage]


@pytest.mark.parametrize("storage_class", _built_in(), ids=lambda c: c.__name__)
def test_each_built_in_backend_declares_exactly_what_it_implements(
    storage_class: type[Any],
) -> None:
    declared = capabilities_of(storage_class)
    for capability in Capability:
        methods = methods_of(capability)
        present = {m for m in methods if callable(getattr(storage_class, m, None))}
        if capability in declared:
            assert present == methods, (capability, methods - present)
        else:
            assert not present, (capability, present)  # implemented, but not declared
    assert all(callable(getattr(storage_class, m, None)) for m in CORE)
    # Everything the feeds and the Manager are typed against.
    assert {Capability.GROUPS, Capability.LEASES, Capability.STATES, Capability.UPDATES} <= (
        declared
    )


def test_only_redis_declares_the_server_side_fast_paths() -> None:
    fast = {Capability.GROUP_MERGE, Capability.MERGED_READ}
    assert {c.__name__: fast & capabilities_of(c) for c in _built_in()} == {
        "MemoryStorage": set(),
        "RedisStorage": fast,
        "CassandraStorage": set(),
    }


def test_the_timed_wrapper_carries_the_wrapped_storage_capabilities() -> None:
    memory = MemoryStorage()
    timed = timed_storage(memory, Timings())
    assert timed is not memory
    assert capabilities_of(timed) == capabilities_of(memory)
    assert has(timed, Capability.GROUPS) and not has(timed, Capability.GROUP_MERGE)
    require(timed, Capability.GROUPS, Capability.UPDATES, for_="a test")
    core_timed = timed_storage(cast(FeedStorage, CoreOnly()), Timings())
    assert capabilities_of(core_timed) == frozenset()
