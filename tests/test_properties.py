"""Property tests: random operation sequences on every backend against a simple model.

The model is plain Python (a set of ids per feed, a dict of groups with marker flags),
written independently of aiostream's storage code, so the memory storage is checked too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostream import Activity, AggregatedFeed, BaseFeed, Love, NotificationFeed
from aiostream.aggregators import BaseAggregator
from tests.conftest import StorageFactory
from tests.helpers import T0

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

activities = st.builds(
    lambda actor, obj, seconds: Activity(actor, Love, obj, time=T0 + dt.timedelta(seconds=seconds)),
    st.integers(0, 5),
    st.integers(0, 3),
    st.integers(0, 50),
)


class ModelFeed(BaseFeed):
    key_format = "prop:flat:%(user_id)s"
    max_length = 8
    trim_chance = 0.0


flat_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(activities, min_size=1, max_size=4)),
        st.tuples(st.just("remove"), st.lists(activities, min_size=1, max_size=2)),
        st.tuples(st.just("trim"), st.integers(0, 10)),
    ),
    max_size=12,
)


@SETTINGS
@given(ops=flat_ops, start=st.integers(0, 6), stop=st.none() | st.integers(0, 10))
def test_flat_feed_matches_model(
    storage_factory: StorageFactory, ops: list[tuple[str, Any]], start: int, stop: int | None
) -> None:
    async def run() -> None:
        async with storage_factory() as storage:
            feed = ModelFeed(1, storage=storage)
            model: dict[int, Activity] = {}
            for op, arg in ops:
                if op == "add":
                    await feed.add_many(arg)
                    model.update((a.serialization_id, a) for a in arg)
                elif op == "remove":
                    await feed.remove_many(arg)
                    for a in arg:
                        model.pop(a.serialization_id, None)
                else:
                    await feed.trim(arg)
                    for key in sorted(model, reverse=True)[arg:]:
                        del model[key]
            expected = [model[k] for k in sorted(model, reverse=True)]
            assert await feed.count() == len(expected)
            assert await feed[start:stop] == expected[start:stop]
            ascending = list(reversed(expected))
            assert await feed.order_by("activity_id")[start:stop] == ascending[start:stop]
            if expected:
                pivot = expected[len(expected) // 2].serialization_id
                got = await feed.filter(activity_id__lte=pivot)[start:stop]
                assert got == [a for a in expected if a.serialization_id <= pivot][start:stop]

    anyio.run(run)


class ByObject(BaseAggregator):
    def get_group(self, activity: Activity) -> str:
        return f"object-{activity.object_id}"


class ModelNotifications(NotificationFeed):
    key_format = "prop:notify:%(user_id)s"
    aggregator_class = ByObject
    max_length = 100


group_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(activities, min_size=1, max_size=4)),
        st.tuples(st.just("remove"), st.lists(activities, min_size=1, max_size=2)),
        st.tuples(st.just("mark"), st.tuples(st.integers(0, 3), st.booleans(), st.booleans())),
        st.tuples(st.just("mark_all"), st.tuples(st.booleans(), st.booleans())),
    ),
    max_size=12,
)


@SETTINGS
@given(ops=group_ops)
def test_notification_feed_matches_model(
    storage_factory: StorageFactory, ops: list[tuple[str, Any]]
) -> None:
    async def run() -> None:
        async with storage_factory() as storage:
            feed = ModelNotifications(1, storage=storage)
            # object id -> ({activity id: activity}, unseen, unread)
            model: dict[int, tuple[dict[int, Activity], bool, bool]] = {}
            for op, arg in ops:
                if op == "add":
                    await feed.add_many(arg)
                    for a in arg:
                        held, unseen, unread = model.get(a.object_id, ({}, True, True))
                        if a.serialization_id not in held:
                            held[a.serialization_id] = a
                            unseen = unread = True
                        model[a.object_id] = (held, unseen, unread)
                elif op == "remove":
                    await feed.remove_many(arg)
                    for a in arg:
                        if a.object_id in model and a.serialization_id in model[a.object_id][0]:
                            held, unseen, unread = model[a.object_id]
                            del held[a.serialization_id]
                            if held:  # a removal keeps the group's seen / read state
                                model[a.object_id] = (held, unseen, unread)
                            else:
                                del model[a.object_id]
                elif op == "mark":
                    obj, seen, read = arg
                    current = {g.group: g for g in await feed[:]}
                    group = current.get(f"object-{obj}")
                    if group is not None:
                        await feed.mark_activity(group, seen=seen, read=read)
                        held, unseen, unread = model[obj]
                        model[obj] = (held, unseen and not seen, unread and not read)
                else:
                    seen, read = arg
                    await feed.mark_all(seen=seen, read=read)
                    for obj, (held, unseen, unread) in model.items():
                        model[obj] = (held, unseen and not seen, unread and not read)
            groups = await feed[:]
            by_object = {int(g.group.split("-")[1]): g for g in groups}
            assert set(by_object) == set(model)
            for obj, (held, unseen, unread) in model.items():
                group = by_object[obj]
                newest = sorted(held)[-group.max_aggregated_activities_length :]
                assert group.activity_ids == newest
                assert (group.is_seen(), group.is_read()) == (not unseen, not unread)
            expected_counts = {
                "unseen_count": sum(u for _, u, _ in model.values()),
                "unread_count": sum(r for _, _, r in model.values()),
            }
            assert await feed.get_notification_data() == expected_counts
            order = [g.serialization_id for g in groups]
            assert order == sorted(order, reverse=True)

    anyio.run(run)


class ModelAggregated(AggregatedFeed):
    key_format = "prop:aggregated:%(user_id)s"
    aggregator_class = ByObject


@SETTINGS
@given(batches=st.lists(st.lists(activities, min_size=1, max_size=5), min_size=1, max_size=6))
def test_aggregated_adds_commute(
    storage_factory: StorageFactory, batches: list[list[Activity]]
) -> None:
    """Adding the same batches in any order (or twice) gives the same groups."""

    async def state(order: list[list[Activity]]) -> list[tuple[str, list[int], int]]:
        async with storage_factory() as storage:
            feed = ModelAggregated(1, storage=storage)
            for batch in order:
                await feed.add_many(batch)
            return sorted((g.group, g.activity_ids, g.activity_count) for g in await feed[:])

    async def run() -> None:
        forward = await state(batches)
        assert forward == await state(list(reversed(batches)))
        assert forward == await state(batches + batches)

    anyio.run(run)
