"""Selective materialization on every backend: what fanout skips, and how reads make up
for it (pulled producers, stale feeds rebuilt once, rates), and the errors of bad
settings and hooks."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import (
    Activity,
    AggregatedFeed,
    BaseFeed,
    ConfigurationError,
    FanoutPriority,
    Love,
    Manager,
    RecentVerbAggregator,
    UserBaseFeed,
    ValidationError,
)
from aiostream.ids import DIGEST_BITS
from aiostream.materialize import RatePolicy, SelectivePolicy
from aiostream.storage.base import FeedStorage
from tests.helpers import T0

pytestmark = pytest.mark.anyio

DAY = 86400.0


class SelFlat(BaseFeed):
    key_format = "sel:flat:%(user_id)s"


class SelGroups(AggregatedFeed):
    key_format = "sel:groups:%(user_id)s"
    aggregator_class = RecentVerbAggregator


class SelUser(UserBaseFeed):
    key_format = "sel:user:%(user_id)s"


class SelManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": SelFlat, "groups": SelGroups}
    user_feed_class = SelUser
    # 1 is followed by 2, 3 and 4; 5 follows nobody.
    graph: ClassVar[dict[int, list[int]]] = {1: [], 2: [1], 3: [1], 4: [1], 5: []}
    clock = T0.timestamp()

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: [u for u, f in self.graph.items() if user_id in f]}

    def get_user_following_ids(self, user_id: int) -> list[int]:
        return self.graph[user_id]

    def now(self) -> float:
        return self.clock


class Pulling(SelManager):
    pull_threshold = 3


class Idle(SelManager):
    inactive_after = dt.timedelta(days=1)


def pin(n: int, manager: SelManager) -> Activity:
    """Activity ``n`` by user 1, a second after the previous one."""
    manager.clock += 1
    return Activity(1, Love, n, time=dt.datetime.fromtimestamp(manager.clock, dt.UTC))


async def stored(manager: SelManager, user: int) -> list[Activity]:
    """What the user's flat feed holds in its own timeline (no merging)."""
    feed = manager.get_feeds(user)["flat"]
    return await feed.read_stored(0, None, feed._query)


async def test_a_pulled_producer_is_written_to_no_flat_feed_and_read_by_its_followers(
    storage: FeedStorage,
) -> None:
    manager = Pulling(storage=storage)
    first = pin(1, manager)
    await manager.add_user_activity(1, first)  # over the threshold: pulled from its first post
    assert await stored(manager, 2) == []
    later = [pin(n, manager) for n in (2, 3)]
    for activity in later:
        await manager.add_user_activity(1, activity)
    assert await stored(manager, 2) == []  # nothing written
    feed = manager.get_feeds(2)["flat"]
    assert await feed[:] == [later[1], later[0], first]
    assert await feed[1:2] == [later[0]]
    assert await feed.order_by("activity_id")[:2] == [first, later[0]]
    assert await feed.filter(activity_id__lt=later[1].serialization_id)[:] == [later[0], first]
    assert [a async for a in feed] == [later[1], later[0], first]
    # Aggregated feeds are pushed as ever.
    (group,) = await manager.get_feeds(2)["groups"][:]
    assert group.activities == [first, *later]
    # Removal reaches pulled and pushed copies alike.
    await manager.remove_user_activity(1, first)
    assert await manager.get_feeds(3)["flat"][:] == [later[1], later[0]]


class Wide(SelManager):
    """Reader 100 follows producers 1..12, each followed by nobody else: all pulled."""

    feed_classes: ClassVar[dict[str, Any]] = {"flat": SelFlat}
    pull_threshold = 1
    graph: ClassVar[dict[int, list[int]]] = {100: list(range(1, 13))} | {
        p: [] for p in range(1, 13)
    }


async def posted_round_robin(manager: Wide, rounds: int) -> list[Activity]:
    """Each producer posts once, then once per round, producers 1..12 in turn (all
    pulled from their first post). Reader 100's whole feed, newest first."""
    early = [Activity(p, Love, 0, time=T0) for p in range(1, 13)]
    for activity in early:
        await manager.add_user_activity(activity.actor_id, activity)
    posts = []
    for round_ in range(rounds):
        for producer in range(1, 13):
            manager.clock += 1
            when = dt.datetime.fromtimestamp(manager.clock, dt.UTC)
            posts.append(Activity(producer, Love, 100 * round_ + producer, time=when))
            await manager.add_user_activity(producer, posts[-1])
    newest_first = sorted(early, key=lambda a: a.serialization_id, reverse=True)
    assert await stored(manager, 100) == []  # every post was pulled
    return sorted(posts, key=lambda a: a.serialization_id, reverse=True) + newest_first


async def test_a_read_of_many_pulled_producers_reads_only_those_that_reach_its_page(
    storage: FeedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = Wide(storage=storage)
    newest_first = await posted_round_robin(manager, rounds=2)
    read_keys: list[str] = []
    read_timeline = storage.read_timeline

    async def declined(*args: Any, **kwargs: Any) -> None:
        return None  # a storage that cannot read the merged page in one step

    # (tests/redis/test_merged_read.py: the same pruning in Redis's one-step read)
    monkeypatch.setattr(storage, "read_merged", declined, raising=False)

    async def spied(key: str, *args: Any) -> Any:
        read_keys.append(key)
        return await read_timeline(key, *args)

    monkeypatch.setattr(storage, "read_timeline", spied)
    feed = manager.get_feeds(100)["flat"]
    assert await feed[:3] == newest_first[:3]
    # Its own feed, and the fanned timelines of the three producers whose newest posts
    # come first (10, 11, 12): the next one's newest post is older than the page.
    assert sorted(read_keys) == [
        "sel:flat:100",
        "sel:user:10:fanned",
        "sel:user:11:fanned",
        "sel:user:12:fanned",
    ]
    # Deeper pages, filters and the other direction are as exact.
    assert await feed[5:30] == newest_first[5:30]
    below = newest_first[4].serialization_id
    assert await feed.filter(activity_id__lt=below)[:4] == newest_first[5:9]
    assert await feed.order_by("activity_id")[:3] == newest_first[::-1][:3]
    assert [a async for a in feed] == newest_first


async def test_only_posts_that_skip_followers_make_their_author_merged_at_read_time(
    storage: FeedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post under the threshold is written to every follower and leaves its author
    without a maximum: its followers' reads read their own feeds only. The first post
    that skips them raises it, before the skip, and from then on they merge it in."""

    class NotYet(Pulling):
        pull_threshold = 10**6

    manager = Pulling(storage=storage)
    first = pin(1, manager)
    await NotYet(storage=storage).add_user_activity(1, first)
    assert await storage.load_maxima("posted", ["sel:user:1"]) == {}
    read_keys: list[str] = []
    read_timeline = storage.read_timeline

    async def declined(*args: Any, **kwargs: Any) -> None:
        return None  # the Manager's own reads, which the spy below sees

    async def spied(key: str, *args: Any) -> Any:
        read_keys.append(key)
        return await read_timeline(key, *args)

    monkeypatch.setattr(storage, "read_merged", declined, raising=False)
    monkeypatch.setattr(storage, "read_timeline", spied)
    feed = manager.get_feeds(2)["flat"]
    assert await feed[:5] == [first]
    assert read_keys == ["sel:flat:2"]
    later = pin(2, manager)
    await manager.add_user_activity(1, later)
    assert await storage.load_maxima("posted", ["sel:user:1"]) == {
        "sel:user:1": later.serialization_id >> DIGEST_BITS
    }
    read_keys.clear()
    assert await feed[:5] == [later, first]
    assert sorted(read_keys) == ["sel:flat:2", "sel:user:1:fanned"]


async def test_maxima_keep_the_largest_value_each_member_was_given(storage: FeedStorage) -> None:
    await storage.raise_maxima("posted", {"a": 5, "b": 7})
    await storage.raise_maxima("posted", {"a": 3, "b": 9, "c": 0})
    await storage.raise_maxima("other", {"a": 1})
    assert await storage.load_maxima("posted", ["a", "b", "c", "d"]) == {"a": 5, "b": 9, "c": 0}
    assert await storage.load_maxima("other", ["a", "b"]) == {"a": 1}
    assert await storage.load_maxima("posted", []) == {}
    big = (1 << 53) - 1  # the largest kept exactly
    await storage.raise_maxima("posted", {"a": big})
    assert await storage.load_maxima("posted", ["a"]) == {"a": big}


async def test_a_raise_returns_the_maxima_members_had_before(storage: FeedStorage) -> None:
    assert await storage.raise_maxima("fanned", {"a": 5, "b": 7}) == {}
    assert await storage.raise_maxima("fanned", {"a": 3, "b": 9, "c": 0}) == {"a": 5, "b": 7}
    assert await storage.raise_maxima("fanned", {"b": 9, "c": 2}) == {"b": 9, "c": 0}
    assert await storage.raise_maxima("fanned", {}) == {}
    big = (1 << 53) - 1
    await storage.raise_maxima("fanned", {"a": big})
    assert await storage.raise_maxima("fanned", {"a": 1}) == {"a": big}
    assert await storage.load_maxima("fanned", ["a", "b", "c"]) == {"a": big, "b": 9, "c": 2}


@pytest.mark.parametrize("value", [-1, 1 << 53, 1.5, True, "7"])
async def test_a_bad_maximum_is_refused_before_anything_is_written(
    storage: FeedStorage, value: Any
) -> None:
    with pytest.raises(ValidationError, match=r"maxima\['b'\]"):
        await storage.raise_maxima("posted", {"a": 1, "b": value})
    assert await storage.load_maxima("posted", ["a", "b"]) == {}


async def test_a_state_is_renewed_unless_it_holds_a_later_time(storage: FeedStorage) -> None:
    await storage.store_states({"mark": "x"})
    assert await storage.renew_states({"t": 100.0}, 50.0, ["mark", "unset"]) == {"mark": "x"}
    assert await storage.load_states(["t"]) == {"t": "100.0"}
    # 100 is not later than 100: renewed (an interval's end renews).
    assert await storage.renew_states({"t": 200.0}, 100.0) == {"t": "100.0"}
    assert await storage.renew_states({"t": 300.0}, 199.5, ["mark"]) == {
        "t": "200.0",
        "mark": "x",
    }
    assert await storage.load_states(["t"]) == {"t": "200.0"}
    # Several at once, each on its own; a value that is no time is overwritten.
    await storage.store_states({"u": "not a time"})
    assert await storage.renew_states({"u": 5, "t": 1.5, "v": 2.0}, 150.0) == {
        "u": "not a time",
        "t": "200.0",
    }
    assert await storage.load_states(["u", "t", "v"]) == {"u": "5.0", "t": "200.0", "v": "2.0"}
    assert await storage.renew_states({}, 0.0, ["mark"]) == {"mark": "x"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "7", None])
@pytest.mark.parametrize("where", ["times['b']", "before"])
async def test_a_bad_time_is_refused_before_anything_is_written(
    storage: FeedStorage, value: Any, where: str
) -> None:
    times, before = ({"a": 1.0, "b": value}, 0.0) if where != "before" else ({"a": 1.0}, value)
    with pytest.raises(ValidationError, match=re.escape(where)):
        await storage.renew_states(times, before)
    assert await storage.load_states(["a", "b"]) == {}


class Counted(Pulling):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": SelFlat}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[int] = []  # whose followers were asked for

    def get_user_follower_count(self, user_id: int) -> int:
        return len(super().get_user_follower_ids(user_id)[FanoutPriority.HIGH])

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        self.asked.append(user_id)
        return super().get_user_follower_ids(user_id)


async def test_a_pulled_producer_with_a_follower_count_needs_no_follower_list(
    storage: FeedStorage,
) -> None:
    manager = Counted(storage=storage)
    first = pin(1, manager)
    await manager.add_user_activity(1, first)
    assert manager.asked == []  # pulled from its first post: no follower is needed
    later = pin(2, manager)
    await manager.add_user_activity(1, later)
    assert manager.asked == []
    assert await stored(manager, 2) == []
    assert await manager.get_feeds(2)["flat"][:] == [later, first]


async def test_a_producer_stays_pulled_when_followers_leave(storage: FeedStorage) -> None:
    manager = Pulling(storage=storage)
    await manager.add_user_activity(1, pin(1, manager))
    skipped = pin(2, manager)
    await manager.add_user_activity(1, skipped)
    fewer = SelManager.graph | {4: []}  # below the threshold now

    class Fewer(Pulling):
        graph = fewer

    again = Fewer(storage=storage)
    await again.add_user_activity(1, pin(3, manager))
    assert skipped in await again.get_feeds(2)["flat"][:]


async def test_an_inactive_follower_is_skipped_and_rebuilt_once_at_their_next_read(
    storage: FeedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = Idle(storage=storage)
    assert await manager.get_feeds(2)["flat"][:] == []  # 2 reads now: active
    activities = [pin(1, manager)]
    await manager.add_user_activity(1, activities[0])
    assert await stored(manager, 2) == activities
    assert await stored(manager, 3) == []  # 3 never read: skipped, marked stale
    manager.clock += 2 * DAY  # now 2 is inactive too
    activities.append(pin(2, manager))
    await manager.add_user_activity(1, activities[1])
    assert await stored(manager, 2) == activities[:1]

    writes: list[str] = []
    add_to_timelines = type(storage).add_to_timelines

    async def counted(self: Any, keys: Any, *args: Any, **kwargs: Any) -> None:
        writes.extend(keys)
        await add_to_timelines(self, keys, *args, **kwargs)

    monkeypatch.setattr(type(storage), "add_to_timelines", counted)
    fresh = Idle(storage=storage)  # another process: nothing cached
    pages = []

    async def read() -> None:
        pages.append(await fresh.get_feeds(3)["flat"][:])

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(read)
    assert pages == [activities[::-1]] * 4
    # Rebuilt once, by one of the four reads (its two copies: before and after the
    # stale mark goes).
    assert writes == [SelFlat(3).key] * 2
    assert await stored(manager, 3) == activities[::-1]
    assert await fresh.get_feeds(2)["flat"][:] == activities[::-1]


class SelOther(BaseFeed):
    key_format = "sel:other:%(user_id)s"


class IdleTwice(Idle):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": SelFlat, "other": SelOther}


async def test_each_flat_feed_of_a_reader_is_rebuilt_when_it_is_read(
    storage: FeedStorage,
) -> None:
    manager = IdleTwice(storage=storage)
    activity = pin(1, manager)
    await manager.add_user_activity(1, activity)  # 3 never read: both feeds skipped
    assert await manager.get_feeds(3)["flat"][:] == [activity]
    assert await manager.get_feeds(3)["other"][:] == [activity]


async def test_reads_are_recorded_at_most_once_an_hour(storage: FeedStorage) -> None:
    manager = Idle(storage=storage)
    for _ in range(3):
        await manager.get_feeds(2)["flat"][:]
    assert await storage.load_states(["read:2"]) == {"read:2": repr(manager.clock)}
    first = manager.clock
    manager.clock += 1800
    await Idle(storage=storage).get_feeds(2)["flat"][:]  # another process, within the hour
    assert await storage.load_states(["read:2"]) == {"read:2": repr(first)}
    manager.clock += 1800
    await manager.get_feeds(2)["flat"][:]
    assert await storage.load_states(["read:2"]) == {"read:2": repr(manager.clock)}


class Rated(SelManager):
    pass


async def test_the_rate_policy_pushes_to_readers_and_pulls_for_the_others(
    storage: FeedStorage,
) -> None:
    policy = RatePolicy(cost_ratio=1.0, half_life=dt.timedelta(days=1))
    manager = Rated(storage=storage, policy=policy)
    for _ in range(5):  # 2 reads five times an hour apart; 3 and 4 never read
        await manager.get_feeds(2)["flat"][:]
        manager.clock += 3600
    first = pin(1, manager)
    await manager.add_user_activity(1, first)  # skips 3 and 4 from the first post
    second = pin(2, manager)
    await manager.add_user_activity(1, second)
    assert await stored(manager, 2) == [second, first]  # a reader: pushed
    assert await stored(manager, 3) == []  # reads nothing: pulled
    assert await manager.get_feeds(3)["flat"][:] == [second, first]


@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        ({"pull_threshold": 0}, "pull_threshold must be at least 1, got 0"),
        ({"pull_threshold": -5}, "pull_threshold must be at least 1, got -5"),
        ({"pull_threshold": True}, "pull_threshold must be an int, got True"),
        ({"inactive_after": dt.timedelta(0)}, "inactive_after must be positive"),
        ({"inactive_after": dt.timedelta(hours=-1)}, "inactive_after must be positive"),
        ({"inactive_after": 3600}, "inactive_after must be a datetime.timedelta or None"),
    ],
)
def test_bad_settings_are_refused(attributes: dict[str, Any], match: str) -> None:
    bad = type("Bad", (SelManager,), attributes)
    with pytest.raises(ConfigurationError, match=match):
        bad()


def test_a_policy_needs_the_following_hook() -> None:
    class NoFollowing(Manager):
        feed_classes: ClassVar[dict[str, Any]] = {"flat": SelFlat}
        user_feed_class = SelUser
        inactive_after = dt.timedelta(days=1)

    with pytest.raises(ConfigurationError, match="does not implement get_user_following_ids"):
        NoFollowing()


async def test_a_following_hook_that_returns_no_ids_is_a_validation_error(
    storage: FeedStorage,
) -> None:
    class Broken(Pulling):
        def get_user_following_ids(self, user_id: int) -> Any:
            return "1,2"

    with pytest.raises(ValidationError, match=r"get_user_following_ids\(\): expected a collection"):
        await Broken(storage=storage).get_feeds(2)["flat"][:]


async def test_a_following_hook_that_raises_fails_the_read(storage: FeedStorage) -> None:
    class Failing(Pulling):
        def get_user_following_ids(self, user_id: int) -> Any:
            raise LookupError("graph service down")

    with pytest.raises(LookupError, match="graph service down"):
        await Failing(storage=storage).get_feeds(2)["flat"][:]


def test_the_policy_objects_check_their_arguments() -> None:
    with pytest.raises(ConfigurationError, match="cost_ratio must be a positive number"):
        RatePolicy(cost_ratio=0)
    with pytest.raises(ConfigurationError, match="half_life must be positive"):
        RatePolicy(half_life=dt.timedelta(0))
    assert not SelectivePolicy().active


async def test_a_feed_built_with_the_managers_read_hook_reads_what_the_managers_feed_reads(
    storage: FeedStorage,
) -> None:
    """The read hook is the one typed path: a feed built by hand with it shows the
    Manager's page, trims and removes through it; one built without it shows only its
    own timeline."""
    manager = Pulling(storage=storage)
    posts = [pin(n, manager) for n in range(3)]
    for activity in posts:
        await manager.add_user_activity(1, activity)
    hook = manager.read_hooks["flat"]
    assert set(manager.read_hooks) == {"flat"}  # flat feeds only: groups are pushed
    by_hand = SelFlat(2, storage=storage, read_hook=hook)
    plain = SelFlat(2, storage=storage)
    assert manager.get_feeds(2)["flat"].read_hook is hook
    assert await by_hand[:] == await manager.get_feeds(2)["flat"][:] == posts[::-1]
    assert await plain[:] == []
    await by_hand.remove(posts[1])
    assert await manager.get_feeds(2)["flat"][:] == [posts[2], posts[0]]
    groups = manager.get_feeds(2)["groups"]
    assert groups.read_hook is None
    assert [len(group.activities) for group in await groups[:]] == [3]
