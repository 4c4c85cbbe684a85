"""Property test: any sequence of add / partial update / update / remove / follow /
unfollow on a small follow graph leaves every feed equal to a simple model, on every
backend.

The model is a dict per user (activity id: the version it shows) for the flat feed and
the aggregated feed alike, written from the README's rules alone: an add reaches the
author's followers at that moment, a follow copies the target's activities, an unfollow
takes the target's activities out, a removal takes the activity out of the author's
feed and its current followers', and updates change the version everywhere it is shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostream import (
    Activity,
    AggregatedFeed,
    BaseFeed,
    FanoutPriority,
    Love,
    Manager,
    RecentVerbAggregator,
    UserBaseFeed,
)
from tests.conftest import StorageFactory
from tests.helpers import T0

USERS = (1, 2, 3)


class LifeFlat(BaseFeed):
    key_format = "life:flat:%(user_id)s"


class LifeGroups(AggregatedFeed):
    key_format = "life:groups:%(user_id)s"
    aggregator_class = RecentVerbAggregator  # one group a day: every activity here


class LifeUser(UserBaseFeed):
    key_format = "life:user:%(user_id)s"


class LifeManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": LifeFlat, "groups": LifeGroups}
    user_feed_class = LifeUser
    fanout_chunk_size = 2

    def __init__(self, graph: dict[int, set[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.graph = graph  # user: whom they follow

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: sorted(u for u, f in self.graph.items() if user_id in f)}


user = st.sampled_from(USERS)
number = st.integers(0, 7)  # activity n: by user n % 3 + 1, at T0 + n s, foreign id a<n>
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), number),
        st.tuples(st.just("partial"), number, st.integers(0, 9)),
        st.tuples(st.just("update"), number, st.integers(0, 9)),
        st.tuples(st.just("remove"), number),
        st.tuples(st.just("follow"), user, user),
        st.tuples(st.just("unfollow"), user, user),
    ),
    max_size=14,
)


def author(n: int) -> int:
    return n % 3 + 1


def make(n: int, extra: dict[str, Any]) -> Activity:
    return Activity(
        author(n),
        Love,
        n,
        time=T0 + dt.timedelta(seconds=n),
        extra_context=extra,
        foreign_id=f"a{n}",
    )


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops)
def test_the_lifecycle_matches_a_model(storage_factory: StorageFactory, ops: list[Any]) -> None:
    async def run() -> None:
        async with storage_factory() as storage:
            graph: dict[int, set[int]] = {u: set() for u in USERS}
            manager = LifeManager(graph, storage=storage)
            versions: dict[int, dict[str, Any]] = {}  # n: current extra_context (published)
            shown: dict[int, set[int]] = {u: set() for u in USERS}  # user: n in their feeds
            for op, *args in ops:
                if op == "add":
                    (n,) = args
                    if n in versions:
                        continue  # (adding it again is a duplicate: nothing changes)
                    versions[n] = {"v": 0}
                    await manager.add_user_activity(author(n), make(n, versions[n]))
                    for follower, follows in graph.items():
                        if author(n) in follows:
                            shown[follower].add(n)
                elif op in ("partial", "update") and args[0] in versions:
                    n, value = args
                    if op == "partial":
                        await manager.partial_update_activity(
                            foreign_id=f"a{n}", time=T0 + dt.timedelta(seconds=n), set={"v": value}
                        )
                        versions[n] = {**versions[n], "v": value}
                    else:
                        versions[n] = {"v": value, "full": True}
                        await manager.update_user_activity(make(n, versions[n]))
                elif op == "remove" and args[0] in versions:
                    (n,) = args
                    await manager.remove_user_activity(
                        author(n), foreign_id=f"a{n}", time=T0 + dt.timedelta(seconds=n)
                    )
                    del versions[n]
                    for follower, follows in graph.items():
                        if author(n) in follows:
                            shown[follower].discard(n)
                elif op == "follow" and args[0] != args[1]:
                    who, target = args
                    await manager.follow_user(who, target)
                    graph[who].add(target)
                    shown[who] |= {n for n in versions if author(n) == target}
                elif op == "unfollow":
                    who, target = args
                    await manager.unfollow_user(who, target)
                    graph[who].discard(target)
                    shown[who] = {n for n in shown[who] if author(n) != target}
            for u in USERS:
                feeds = manager.get_feeds(u)
                expected = {(n, versions[n]["v"], "full" in versions[n]) for n in shown[u]}
                flat = await feeds["flat"][:]
                assert {
                    (a.object_id, a.extra_context["v"], "full" in a.extra_context) for a in flat
                } == expected
                assert len(flat) == len(expected)
                grouped = [a for g in await feeds["groups"][:] for a in g.activities]
                assert {
                    (a.object_id, a.extra_context["v"], "full" in a.extra_context) for a in grouped
                } == expected
                assert len(grouped) == len(expected)
                own = await manager.get_user_feed(u)[:]
                assert {a.object_id for a in own} == {n for n in versions if author(n) == u}

    anyio.run(run)
