"""Every example of the Stream Framework documentation, with ``await`` added and nothing
else changed.

These run on the default storage (in memory). The server backends run the same API in
the behaviour suite. The examples call ``datetime.utcnow()``, deprecated since Python 3.12;
its warning (an error under ``filterwarnings = error``) is ignored here and only here.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import pytest

from aiostream import (
    Activity,
    AggregatedActivity,
    AggregatedFeed,
    BaseAggregator,
    BaseFeed,
    FanoutPriority,
    Love,
    Manager,
    MemoryStorage,
    NotificationFeed,
    RecentVerbAggregator,
    get_verb_by_id,
    register,
)
from aiostream.storage import memory
from tests.helpers import Pin as PinVerb

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(r"ignore:datetime\.datetime\.utcnow\(\) is deprecated"),
]


@pytest.fixture(autouse=True)
def fresh_default_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed examples use the default storage; give each test an empty one."""
    monkeypatch.setattr(memory, "_default", MemoryStorage())


# The seed's ``class Pin(Verb): id = 5 ...; register(Pin)`` lives in tests.helpers (one
# class per id per registry); registering the same class again is allowed:
register(PinVerb)
FOLLOWS: dict[int, list[int]] = {1: [2, 3]}


class Pin:
    def __init__(self, id: int, user_id: int, influencer_id: int, item_id: int) -> None:
        self.id = id
        self.user_id = user_id
        self.influencer_id = influencer_id
        self.item_id = item_id
        self.created_at = datetime.datetime.utcnow()

    def create_activity(self) -> Activity:
        activity = Activity(
            self.user_id,
            PinVerb,
            self.id,
            self.influencer_id,
            time=self.created_at,
            extra_context=dict(item_id=self.item_id),
        )
        return activity


class PinFeed(BaseFeed):
    key_format = "feed:normal:%(user_id)s"


class UserPinFeed(PinFeed):
    key_format = "feed:user:%(user_id)s"


class PinManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = dict(normal=PinFeed)
    user_feed_class = UserPinFeed

    async def add_pin(self, pin: Pin) -> None:
        activity = pin.create_activity()
        # add user activity adds it to the user feed, and starts the fanout
        await self.add_user_activity(pin.user_id, activity)

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        ids = FOLLOWS.get(user_id, [])
        return {FanoutPriority.HIGH: ids}


async def test_using_stream_framework() -> None:
    manager = PinManager()
    pin = Pin(id=7, user_id=1, influencer_id=4, item_id=99)
    await manager.add_pin(pin)
    feed = manager.get_feeds(2)["normal"]
    activities = list(await feed[:25])
    assert [a.object_id for a in activities] == [7]
    assert activities[0].extra_context == {"item_id": 99}
    feed = UserPinFeed(13)
    await feed.add(pin.create_activity())
    assert await feed.count() == 1


async def test_adding_data_and_querying() -> None:
    activity = Activity(
        actor=13,  # Thierry's user id
        verb=1,  # The id associated with the Pin verb
        object=1,  # The id of the newly created Pin object
        target=1,  # The id of the Surf Girls board
        time=datetime.datetime.utcnow(),  # The time the activity occurred
    )
    feed = UserPinFeed(13)
    await feed.add(activity)
    # add many example
    await feed.add_many([activity])
    assert await feed.count() == 1
    activities = await feed[:10]
    assert activities == [activity]
    assert await feed.filter(activity_id__gte=1)[:10] == [activity]
    assert await feed.filter(activity_id__lte=1)[:10] == []
    assert await feed.filter(activity_id__gt=1)[:10] == [activity]
    assert await feed.filter(activity_id__lt=1)[:10] == []
    assert await feed.order_by("activity_id")[:10] == [activity]
    assert await feed.order_by("-activity_id")[:10] == [activity]
    await feed.remove(activity)
    await feed.delete()
    assert await feed.count() == 0


def test_verbs() -> None:
    pin_verb = get_verb_by_id(5)
    assert pin_verb.past_tense == "pinned"


async def test_prioritise_fanouts() -> None:
    def get_follower_ids(user_id: int, active: bool) -> list[int]:
        return [2] if active else [3]

    class MyStreamManager(PinManager):
        def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
            follower_ids = {
                FanoutPriority.HIGH: get_follower_ids(user_id, active=True),
                FanoutPriority.LOW: get_follower_ids(user_id, active=False),
            }
            return follower_ids

    manager = MyStreamManager()
    await manager.add_user_activity(1, Pin(1, 1, 1, 1).create_activity())
    assert await manager.get_feeds(3)["normal"].count() == 1


async def test_extend_the_activity_class() -> None:
    # subclass the activity object
    class CustomActivity(Activity):
        def mymethod(self) -> str:
            return "mine"

    # hookup the custom activity object to the feed
    class CustomFeed(PinFeed):
        activity_class = CustomActivity

    # define the custom aggregated activity
    class CustomAggregated(AggregatedActivity):
        pass

    # hook the custom classes up to the feed
    class CustomAggregatedFeed(AggregatedFeed):
        activity_class = CustomActivity
        aggregated_activity_class = CustomAggregated

    await CustomFeed(1).add(CustomActivity(1, Love, 2))
    assert (await CustomFeed(1)[:1])[0].mymethod() == "mine"
    await CustomAggregatedFeed(1).add(CustomActivity(1, Love, 2))
    (group,) = await CustomAggregatedFeed(1)[:1]
    assert isinstance(group, CustomAggregated)


async def test_notification_tutorial() -> None:
    class MyAggregator(BaseAggregator):
        """
        Aggregates based on the same verb and same time period
        """

        def get_group(self, activity: Activity) -> str:
            """
            Returns a group based on the day and verb
            """
            verb = activity.verb.id
            date = activity.time.date()
            group = "%s-%s" % (verb, date)  # noqa: UP031 - as written in the seed
            return group

    class MyNotificationFeed(NotificationFeed):
        # : they key format determines where the data gets stored
        key_format = "feed:notification:%(user_id)s"

        # : the aggregator controls how the activities get aggregated
        aggregator_class = MyAggregator

    user_id, object_id, influencer_id = 1, 2, 3
    created_at = datetime.datetime.utcnow()
    feed = MyNotificationFeed(user_id)
    activity = Activity(
        user_id, Love, object_id, influencer_id, time=created_at, extra_context=dict(entity_id=7)
    )
    await feed.add(activity)
    print(await feed[:5])
    assert await feed.count_unseen() == 1
    await feed.mark_all()
    assert await feed.count_unseen() == 0
    assert await feed.count_unread() == 1


async def test_aggregated_pin_feed_of_the_example_app() -> None:
    class AggregatedPinFeed(AggregatedFeed):
        aggregator_class = RecentVerbAggregator
        key_format = "feed:aggregated:%(user_id)s"

    feed = AggregatedPinFeed(1)
    await feed.add_many([Pin(i, 1, 1, i).create_activity() for i in range(3)])
    (group,) = await feed[:25]
    assert group.activity_count == 3
