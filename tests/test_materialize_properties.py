"""Property test: a Manager that skips feeds (inactive readers, pulled producers, rates)
shows every page a push-everything Manager shows, over the same history, on every
backend.

Random follow graphs, posts, removals, follows and unfollows, reads and gaps of time;
two Managers take the same calls, each on its own storage: ``push`` with no policy and
``selective`` with a drawn one. Every read compares the same window (any slice, newest
or oldest first, filtered by id, and whole feeds through ``async for``) of every user's
flat feed, and the aggregated feeds, which are always pushed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostream import (
    Activity,
    Love,
)
from aiostream.materialize import (
    MaterializationPolicy,
    RatePolicy,
    SelectivePolicy,
)
from tests.conftest import StorageFactory
from tests.test_materialize_model import Clock, ModelManager

USERS = (1, 2, 3, 4, 5)
HOUR = 3600.0


# The model test's Managers: flat, aggregated and notification feeds, a shared clock.
MatManager = ModelManager


policies = st.one_of(
    st.builds(
        SelectivePolicy,
        inactive_after=st.none() | st.sampled_from([dt.timedelta(hours=h) for h in (1, 3)]),
        pull_threshold=st.none() | st.integers(1, 3),
    ),
    st.builds(
        RatePolicy,
        cost_ratio=st.sampled_from([0.5, 1.0, 4.0]),
        half_life=st.just(dt.timedelta(hours=2)),
        inactive_after=st.none() | st.just(dt.timedelta(hours=2)),
    ),
)
user = st.sampled_from(USERS)
KINDS = ["post"] * 4 + ["follow"] * 3 + ["unfollow", "remove", "wait"] + ["read"] * 3
# Windows: any slice, filtered or not, newest or oldest first.
windows = st.tuples(st.integers(0, 6), st.none() | st.integers(0, 12), st.booleans())


async def same_pages(push: MatManager, selective: MatManager, reader: int, data: Any) -> None:
    mine, theirs = selective.get_feeds(reader)["flat"], push.get_feeds(reader)["flat"]
    start, length, oldest_first = data.draw(windows, label="window")
    stop = None if length is None else start + length
    ids = [a.serialization_id for a in await theirs[:]]
    if ids and data.draw(st.booleans(), label="filtered"):
        pivot = data.draw(st.sampled_from(ids), label="pivot")
        bound = data.draw(st.sampled_from(["lt", "lte", "gt", "gte"]), label="bound")
        mine = mine.filter(**{f"activity_id__{bound}": pivot})
        theirs = theirs.filter(**{f"activity_id__{bound}": pivot})
    if oldest_first:
        mine, theirs = mine.order_by("activity_id"), theirs.order_by("activity_id")
    assert await mine[start:stop] == await theirs[start:stop]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), policy=policies)
def test_every_page_is_the_push_everything_page(
    storage_factory: StorageFactory, data: Any, policy: MaterializationPolicy
) -> None:
    async def run() -> None:
        async with storage_factory() as push_storage, storage_factory() as selective_storage:
            graph: dict[int, set[int]] = {u: set() for u in USERS}
            clock = Clock()
            push = MatManager(graph, clock, storage=push_storage)
            selective = MatManager(graph, clock, storage=selective_storage, policy=policy)
            for who, target in data.draw(st.sets(st.tuples(user, user)), label="graph"):
                if who != target:
                    graph[who].add(target)  # followed before anyone posted
            posts: list[Activity] = []
            for _ in range(data.draw(st.integers(5, 30), label="steps")):
                op = data.draw(st.sampled_from(KINDS), label="op")
                if op == "post":
                    author = data.draw(user, label="author")
                    clock.now += 1
                    activity = Activity(
                        author, Love, len(posts), time=dt.datetime.fromtimestamp(clock.now, dt.UTC)
                    )
                    posts.append(activity)
                    for manager in (push, selective):
                        await manager.add_user_activity(author, activity)
                elif op == "remove" and posts:
                    activity = data.draw(st.sampled_from(posts), label="removed")
                    posts.remove(activity)
                    for manager in (push, selective):
                        await manager.remove_user_activity(activity.actor_id, activity)
                elif op == "follow":
                    who, target = data.draw(st.tuples(user, user), label="follow")
                    if who == target or target in graph[who]:
                        continue
                    graph[who].add(target)
                    for manager in (push, selective):
                        await manager.follow_user(who, target)
                elif op == "unfollow":
                    pairs = sorted((w, t) for w, ts in graph.items() for t in ts)
                    if not pairs:
                        continue
                    who, target = data.draw(st.sampled_from(pairs), label="unfollow")
                    graph[who].discard(target)
                    for manager in (push, selective):
                        await manager.unfollow_user(who, target)
                elif op == "wait":
                    # A minute, an hour's recording, or an inactivity limit.
                    clock.now += data.draw(st.sampled_from([61.0, HOUR, 4 * HOUR]), label="wait")
                else:
                    await same_pages(push, selective, data.draw(user, label="reader"), data)
            for reader in USERS:
                await same_pages(push, selective, reader, data)
                mine, theirs = selective.get_feeds(reader), push.get_feeds(reader)
                assert [a async for a in mine["flat"]] == [a async for a in theirs["flat"]]
                assert await mine["groups"][:] == await theirs["groups"][:]

    anyio.run(run)
