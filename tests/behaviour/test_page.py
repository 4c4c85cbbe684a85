"""``feed.page()``, the cursor pages of an API, run against every backend: paging to the
end reads exactly the feed (flat, aggregated, notification; newest or oldest first),
writes between pages neither repeat nor skip, a Manager's read hook is honoured, and bad
arguments from a query string are errors naming their field before any read."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any, ClassVar

import pytest

from aiostream import (
    Activity,
    BaseFeed,
    FanoutPriority,
    InvalidQueryError,
    Love,
    Manager,
    UserBaseFeed,
    ValidationError,
)
from aiostream.feeds.base import Page
from aiostream.ids import MAX_ID
from aiostream.storage.base import FeedStorage
from tests.helpers import T0, Pin, TestAggregatedFeed, TestFeed, TestNotificationFeed, at

pytestmark = pytest.mark.anyio

KINDS = {"flat": TestFeed, "aggregated": TestAggregatedFeed, "notification": TestNotificationFeed}


class LongFeed(TestFeed):
    max_length: ClassVar[int] = 1000
    trim_chance: ClassVar[float] = 0.0
    page_size: ClassVar[int] = 4  # async for reads several pages too


def random_activities(rng: random.Random, n: int) -> list[Activity]:
    """``n`` activities of a few actors and two verbs, spread over three days (so that
    aggregated feeds hold several groups of several activities)."""
    return [
        Activity(
            rng.randint(1, 4),
            rng.choice([Love, Pin]),
            rng.randint(1, 10**6),
            time=at(rng.randint(0, 3 * 86400)),
        )
        for _ in range(n)
    ]


async def every_page(feed: BaseFeed[Any], limit: int, *, oldest_first: bool = False) -> list[Any]:
    """The items of ``feed``'s pages of ``limit``, first to last, each page checked."""
    page = await (feed.order_by("activity_id") if oldest_first else feed).page(limit)
    items: list[Any] = []
    while True:
        assert page.newest_first is not oldest_first
        items += page.items
        if page.next is None:
            assert len(page.items) <= limit
            return items
        assert len(page.items) == limit
        assert page.next == str(page.items[-1].serialization_id)
        keyword = "after" if oldest_first else "before"
        page = await feed.page(str(limit), **{keyword: page.next})


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("seed", range(3))
async def test_paging_to_the_end_reads_exactly_the_feed(
    make_feed: Any, kind: str, seed: int
) -> None:
    rng = random.Random(f"{kind}-{seed}")
    feed = make_feed(KINDS[kind], seed)
    await feed.add_many(random_activities(rng, rng.randint(0, 25)))
    whole = [item async for item in feed]
    oldest_first = [item async for item in feed.order_by("activity_id")]
    assert oldest_first == whole[::-1]
    for limit in sorted({1, rng.randint(2, 6), len(whole) or 1, len(whole) + 1}):
        assert await every_page(feed, limit) == whole, limit
        assert await every_page(feed, limit, oldest_first=True) == oldest_first, limit
        # The same as the feed's own slices.
        assert (await feed.page(limit)).items == await feed[:limit]


@pytest.mark.parametrize("seed", range(4))
async def test_writes_between_pages_neither_repeat_nor_skip(make_feed: Any, seed: int) -> None:
    """Items added or removed between pages: every item there from the first page to the
    last is read once, nothing is read twice, and the pages stay in id order."""
    rng = random.Random(seed)
    feed = make_feed(LongFeed, seed)
    first = random_activities(rng, 20)
    await feed.add_many(first)
    present = {a.serialization_id for a in first}
    ever = set(present)
    throughout = set(present)
    read: list[int] = []
    page = await feed.page(3)
    while True:
        read += [a.serialization_id for a in page.items]
        # A write of each kind between pages: newer than anything, anywhere, a removal.
        added = random_activities(rng, 2) + [
            Activity(9, Love, rng.randint(1, 10**6), time=at(10**6))
        ]
        await feed.add_many(added)
        ever |= {a.serialization_id for a in added}
        present |= {a.serialization_id for a in added}
        if present and rng.random() < 0.5:
            doomed = rng.choice(sorted(present))
            await feed.remove(doomed)
            present.discard(doomed)
            throughout.discard(doomed)
        if page.next is None:
            break
        page = await feed.page(3, before=page.next)
    assert len(read) == len(set(read)), "an item was read twice"
    assert read == sorted(read, reverse=True)
    assert throughout <= set(read), "an item there throughout was skipped"
    assert set(read) <= ever


async def test_a_cursor_is_the_id_to_dict_sends(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = [Activity(1, Love, n, time=at(n)) for n in range(5)]
    await feed.add_many(activities)
    shown = (await feed.page(2)).to_dict()
    json.dumps(shown)  # JSON-ready: ids as strings
    assert [a["id"] for a in shown["items"]] == [str(a.serialization_id) for a in activities[:2:-1]]
    assert shown["next"] == shown["items"][-1]["id"]
    rest = await feed.page(5, before=shown["next"])
    assert rest.items == activities[2::-1] and rest.next is None
    # int cursors, an empty before (a form's blank field) and custom rendering
    assert (await feed.page(5, before=activities[1].serialization_id)).items == [activities[0]]
    assert (await feed.page(1, before="")).items == [activities[4]]
    rendered = (await feed.page(1)).to_dict(lambda a: a.object_id)
    assert rendered == {"items": [4], "next": str(activities[4].serialization_id)}


async def test_pages_of_a_filtered_feed_stay_in_its_range(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = [Activity(1, Love, n, time=at(n)) for n in range(6)]
    await feed.add_many(activities)
    middle = feed.filter(
        activity_id__gte=activities[1].serialization_id,
        activity_id__lte=activities[4].serialization_id,
    )
    assert await every_page(middle, 3) == activities[4:0:-1]
    assert await every_page(middle, 3, oldest_first=True) == activities[1:5]


async def test_groups_page_by_their_ids(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many([Activity(u, Love, 42, time=at(u * 86400)) for u in range(1, 4)])
    first = await feed.page(2)
    assert [g.serialization_id for g in first.items] == [g.serialization_id for g in await feed[:2]]
    second = await feed.page(2, before=first.next)
    assert second.items == await feed[2:] and second.next is None
    assert json.loads(json.dumps(first.to_dict()))["next"] == first.next


BAD_ARGUMENTS = [
    ({"limit": "abc"}, "limit"),
    ({"limit": -5}, "limit"),
    ({"limit": "-5"}, "limit"),
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": "1" * 5000}, "limit"),  # no int() of a huge text
    ({"limit": True}, "limit"),
    ({"limit": 2.0}, "limit"),
    ({"limit": 11, "max_limit": 10}, "limit"),
    ({"limit": 1, "max_limit": 0}, "max_limit"),
    ({"before": "abc"}, "before"),
    ({"before": "-1"}, "before"),
    ({"before": " 12"}, "before"),
    ({"before": "0x10"}, "before"),
    ({"before": "1e5"}, "before"),
    ({"before": str(MAX_ID + 1)}, "before"),
    ({"before": "9" * 5000}, "before"),
    ({"before": 1.5}, "before"),
    ({"before": True}, "before"),
    ({"after": "x"}, "after"),
    ({"after": -1}, "after"),
    ({"before": "1", "after": "2"}, "after"),
]


@pytest.mark.parametrize(("arguments", "field"), BAD_ARGUMENTS)
async def test_bad_arguments_are_errors_naming_the_field(
    make_feed: Any, arguments: dict[str, Any], field: str
) -> None:
    feed = make_feed(TestFeed)
    with pytest.raises(InvalidQueryError) as caught:
        await feed.page(**arguments)
    assert isinstance(caught.value, ValidationError)  # a 400, not a 500
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert len(str(caught.value)) < 200


async def test_the_largest_id_and_limit_are_accepted(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    await feed.add(Activity(1, Love, 1, time=at(0)))
    assert len((await feed.page(100, before=str(MAX_ID))).items) == 1
    assert (await feed.page("7", after="0", max_limit=7)).newest_first is False
    assert await feed.page(1, before="0") == Page([], None)


# -- under a Manager's materialization policy -------------------------------------------------


class PulledFlat(BaseFeed):
    key_format = "page:flat:%(user_id)s"


class PulledUser(UserBaseFeed):
    key_format = "page:user:%(user_id)s"


class PullingManager(Manager):
    """Producer 1 is followed by 2 and 3, over the threshold: pulled at read time."""

    feed_classes: ClassVar[dict[str, Any]] = {"flat": PulledFlat}
    user_feed_class = PulledUser
    pull_threshold = 2
    graph: ClassVar[dict[int, list[int]]] = {1: [], 2: [1, 4], 3: [1], 4: []}

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: [u for u, f in self.graph.items() if user_id in f]}

    def get_user_following_ids(self, user_id: int) -> list[int]:
        return self.graph[user_id]


async def test_pages_read_through_a_manager_s_read_hook(storage: FeedStorage) -> None:
    manager = PullingManager(storage=storage)
    posts = [
        Activity(author, Love, n, time=T0 + dt.timedelta(seconds=n))
        for n, author in enumerate([1, 4, 1, 1, 4, 1, 4])
    ]
    for activity in posts:
        await manager.add_user_activity(activity.actor_id, activity)
    feed = manager.get_feeds(2)["flat"]
    assert feed.read_hook is not None
    stored = await feed.read_stored(0, None, feed._query)
    assert len(stored) < len(posts)  # the pulled producer's posts were never written
    whole = [a async for a in feed]
    assert whole == posts[::-1]
    assert await every_page(feed, 2) == whole
    assert await every_page(feed, 3, oldest_first=True) == posts
