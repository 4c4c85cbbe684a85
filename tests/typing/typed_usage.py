"""What a type checker reads from aiostream's public API, checked by ``mypy --strict``.

Each ``assert_type`` fails the check when a type regresses (to ``Any`` included), and each
``# type: ignore[code]`` marks a call that must stay refused: strict mode reports an
ignore that is no longer needed. pyproject's ``[tool.mypy] files`` names this file (so
``nox -s typing`` checks it) and ``tests/test_typing_usage.py`` runs mypy on it.

Nothing here runs: importing the module only defines classes and coroutine functions
(pytest does not collect it, its name is not ``test_*``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal, assert_type

from aiostream import (
    Activity,
    ActivityDict,
    AggregatedActivity,
    AggregatedActivityDict,
    AggregatedFeed,
    BaseFeed,
    FanoutPriority,
    Manager,
    NotificationActivity,
    NotificationActivityDict,
    NotificationData,
    NotificationFeed,
    UserBaseFeed,
)
from aiostream.feeds.cassandra import (
    CassandraAggregatedFeed,
    CassandraFeed,
    CassandraNotificationFeed,
    CassandraUserBaseFeed,
)
from aiostream.feeds.redis import (
    RedisAggregatedFeed,
    RedisFeed,
    RedisNotificationFeed,
    RedisUserBaseFeed,
)
from aiostream.realtime import FeedUpdate, FeedUpdateDict
from aiostream.storage.base import FeedStorage
from aiostream.testing import MemoryStorages as MemoryStoragesType

if TYPE_CHECKING:  # aiostream.tasks needs arq, which the newest test stack leaves out
    from aiostream.tasks import WorkerSettings, worker_settings

# -- plain subclasses of every binding: the defaults ------------------------------------------


class PinFeed(BaseFeed):
    key_format = "typed:pin:%(user_id)s"


class UserPinFeed(UserBaseFeed):
    key_format = "typed:user:%(user_id)s"


class AggregatedPinFeed(AggregatedFeed):
    key_format = "typed:aggregated:%(user_id)s"


class PinNotificationFeed(NotificationFeed):
    key_format = "typed:notification:%(user_id)s"


class RedisPinFeed(RedisFeed):
    key_format = "typed:redis:pin:%(user_id)s"


class RedisUserPinFeed(RedisUserBaseFeed):
    key_format = "typed:redis:user:%(user_id)s"


class RedisAggregatedPinFeed(RedisAggregatedFeed):
    key_format = "typed:redis:aggregated:%(user_id)s"


class RedisPinNotificationFeed(RedisNotificationFeed):
    key_format = "typed:redis:notification:%(user_id)s"


class CassandraPinFeed(CassandraFeed):
    key_format = "typed:cassandra:pin:%(user_id)s"


class CassandraUserPinFeed(CassandraUserBaseFeed):
    key_format = "typed:cassandra:user:%(user_id)s"


class CassandraAggregatedPinFeed(CassandraAggregatedFeed):
    key_format = "typed:cassandra:aggregated:%(user_id)s"


class CassandraPinNotificationFeed(CassandraNotificationFeed):
    key_format = "typed:cassandra:notification:%(user_id)s"


# -- your own activity and group classes flow through ------------------------------------------


class MyActivity(Activity):
    pass


class MyGroup(AggregatedActivity):
    pass


class MyNotification(NotificationActivity):
    pass


class MyFeed(BaseFeed[MyActivity]):
    key_format = "typed:mine:%(user_id)s"
    activity_class = MyActivity


class MyRedisFeed(RedisFeed[MyActivity]):
    key_format = "typed:redis:mine:%(user_id)s"
    activity_class = MyActivity


class MyAggregatedFeed(AggregatedFeed[MyGroup]):
    key_format = "typed:mine:aggregated:%(user_id)s"
    aggregated_activity_class = MyGroup


class MyCassandraAggregatedFeed(CassandraAggregatedFeed[MyGroup]):
    key_format = "typed:cassandra:mine:aggregated:%(user_id)s"
    aggregated_activity_class = MyGroup


class MyNotificationFeed(RedisNotificationFeed[MyNotification]):
    key_format = "typed:redis:mine:notification:%(user_id)s"
    aggregated_activity_class = MyNotification


class PinManager(Manager):
    # Mixed kinds: the mapping is of any feed class (a bare ``type[BaseFeed]`` is a flat
    # feed of Activity, which an aggregated feed class is not).
    feed_classes: ClassVar[dict[str, type[BaseFeed[Any]]]] = {
        "normal": PinFeed,
        "aggregated": AggregatedPinFeed,
        "notification": PinNotificationFeed,
    }
    user_feed_class = UserPinFeed

    async def get_user_follower_ids(self, user_id: Any) -> dict[FanoutPriority, list[int]]:
        return {FanoutPriority.HIGH: [2, 3]}


class RedisPinManager(Manager):
    feed_classes: ClassVar[dict[str, type[BaseFeed[Any]]]] = {
        "normal": RedisPinFeed,
        "notification": MyNotificationFeed,
    }
    user_feed_class = RedisUserPinFeed


# -- reads -------------------------------------------------------------------------------------


async def flat_reads(n: int) -> None:
    assert_type(await PinFeed(1)[:n], list[Activity])
    assert_type(await UserPinFeed(1)[:n], list[Activity])
    assert_type(await RedisPinFeed(1)[:n], list[Activity])
    assert_type(await RedisUserPinFeed(1)[:n], list[Activity])
    assert_type(await CassandraPinFeed(1)[:n], list[Activity])
    assert_type(await CassandraUserPinFeed(1)[:n], list[Activity])
    assert_type(await PinFeed(1)[3], list[Activity])
    assert_type(await RedisPinFeed(1).get_activity_slice(0, n), list[Activity])
    assert_type(await CassandraPinFeed(1).get_activity_slice(), list[Activity])
    async for activity in PinFeed(1):
        assert_type(activity, Activity)
    async for activity in CassandraUserPinFeed(1):
        assert_type(activity, Activity)


async def aggregated_reads(n: int) -> None:
    assert_type(await AggregatedPinFeed(1)[:n], list[AggregatedActivity])
    assert_type(await RedisAggregatedPinFeed(1)[:n], list[AggregatedActivity])
    assert_type(await CassandraAggregatedPinFeed(1)[:n], list[AggregatedActivity])
    assert_type(await RedisAggregatedPinFeed(1).get_activity_slice(0, n), list[AggregatedActivity])
    async for group in CassandraAggregatedPinFeed(1):
        assert_type(group, AggregatedActivity)


async def notification_reads(n: int) -> None:
    assert_type(await PinNotificationFeed(1)[:n], list[NotificationActivity])
    assert_type(await RedisPinNotificationFeed(1)[:n], list[NotificationActivity])
    assert_type(await CassandraPinNotificationFeed(1)[:n], list[NotificationActivity])
    assert_type(
        await CassandraPinNotificationFeed(1).get_activity_slice(0, n), list[NotificationActivity]
    )
    async for group in RedisPinNotificationFeed(1):
        assert_type(group, NotificationActivity)


async def custom_classes(n: int) -> None:
    assert_type(await MyFeed(1)[:n], list[MyActivity])
    assert_type(await MyRedisFeed(1).get_activity_slice(0, n), list[MyActivity])
    assert_type(await MyAggregatedFeed(1)[:n], list[MyGroup])
    assert_type(await MyCassandraAggregatedFeed(1)[:n], list[MyGroup])
    assert_type(await MyNotificationFeed(1)[:n], list[MyNotification])
    async for mine in MyFeed(1):
        assert_type(mine, MyActivity)
    async for group in MyNotificationFeed(1):
        assert_type(group, MyNotification)


async def filtered_reads(n: int) -> None:
    flat = PinFeed(1).filter(activity_id__lt=10**30).order_by("-activity_id")
    assert_type(flat, PinFeed)
    assert_type(await flat[:n], list[Activity])
    groups = RedisAggregatedPinFeed(1).filter(activity_id__gt=0).order_by("activity_id")
    assert_type(await groups[:n], list[AggregatedActivity])
    notes = CassandraPinNotificationFeed(1).order_by("-activity_id").filter(activity_id__lte=9)
    assert_type(await notes[:n], list[NotificationActivity])
    assert_type(await MyAggregatedFeed(1).filter(activity_id__lt=5)[:n], list[MyGroup])


# -- kinds and their subtypes --------------------------------------------------------------------


def subtypes() -> None:
    # A notification feed is an aggregated feed; a feed of a subclass of Activity is a
    # feed of Activity (the item type is covariant).
    aggregated: AggregatedFeed = RedisPinNotificationFeed(1)
    flat: BaseFeed = MyFeed(1)
    anything: list[BaseFeed[Any]] = [PinFeed(1), AggregatedPinFeed(1), MyNotificationFeed(1)]
    classes: dict[str, type[BaseFeed[Any]]] = {"normal": PinFeed, "aggregated": MyAggregatedFeed}
    # ...and an aggregated feed is not a flat feed of activities, nor the reverse.
    not_flat: BaseFeed = AggregatedPinFeed(1)  # type: ignore[assignment]
    not_grouped: AggregatedFeed = PinFeed(1)  # type: ignore[assignment]
    not_notifications: NotificationFeed = AggregatedPinFeed(1)  # type: ignore[assignment]
    del aggregated, flat, anything, classes, not_flat, not_grouped, not_notifications


# -- the Manager's feeds -----------------------------------------------------------------------


async def manager_feeds(n: int) -> None:
    manager = PinManager()
    assert_type(manager.get_feeds(1), dict[str, BaseFeed[Any]])
    notifications = manager.get_feed(1, "notification", PinNotificationFeed)
    assert_type(notifications, PinNotificationFeed)
    assert_type(await notifications[:n], list[NotificationActivity])
    # A base class of the registered one works too, typed as that base. (mypy reads a
    # bare generic class passed as an argument with Any for its parameter, not its
    # default: subscript it to have the items typed.)
    assert_type(
        await manager.get_feed(1, "notification", NotificationFeed[NotificationActivity])[:n],
        list[NotificationActivity],
    )
    assert_type(
        await manager.get_feed(1, "aggregated", AggregatedFeed[AggregatedActivity])[:n],
        list[AggregatedActivity],
    )
    assert_type(manager.get_feed(1, "normal", PinFeed), PinFeed)
    assert_type(manager.get_user_feed(1), UserPinFeed)
    assert_type(await manager.get_user_feed(1)[:n], list[Activity])
    redis_manager = RedisPinManager()
    assert_type(redis_manager.get_user_feed(1), RedisUserPinFeed)
    assert_type(
        await redis_manager.get_feed(1, "notification", MyNotificationFeed)[:n],
        list[MyNotification],
    )
    # The stock Manager's user feed class is any feed class.
    assert_type(Manager().get_user_feed(1), BaseFeed[Any])
    manager.get_feed(1, "normal", "PinFeed")  # type: ignore[arg-type]


async def notification_data() -> None:
    data = await PinNotificationFeed(1).get_notification_data()
    assert_type(data, NotificationData)
    assert_type(data["unseen_count"], int | None)
    assert_type(data["unread_count"], int | None)
    assert_type(await MyNotificationFeed(1).get_notification_data(), NotificationData)
    data["unseen_count"] + 1  # type: ignore[operator]  # an untracked count is None
    data["seen_count"]  # type: ignore[typeddict-item]


def arq_worker_settings() -> None:
    assert_type(worker_settings(PinManager), type[WorkerSettings])


# -- JSON views: TypedDicts ----------------------------------------------------------------------


class PinDict(ActivityDict):
    """A subclass's view adds its keys in a TypedDict subclass."""

    title: str


class TitledPin(Activity):
    def to_dict(self) -> PinDict:
        return {**super().to_dict(), "title": str(self.extra_context["title"])}


async def json_views(n: int) -> None:
    (activity,) = await PinFeed(1)[:1]
    view = activity.to_dict()
    assert_type(view, ActivityDict)
    assert_type(view["id"], str)
    assert_type(view["actor"], int | str)
    assert_type(view["target"], int | str | None)
    assert_type(view["extra_context"], dict[str, Any])
    assert_type(view.get("id_types"), dict[str, Literal["int", "uuid"]] | None)
    view["nope"]  # type: ignore[typeddict-item]
    assert_type(TitledPin(1, "love", 2).to_dict()["title"], str)
    groups = await AggregatedPinFeed(1)[:n]
    assert_type(groups[0].to_dict(), AggregatedActivityDict)
    assert_type(groups[0].to_dict()["activities"], list[ActivityDict])
    notes = await PinNotificationFeed(1)[:n]
    assert_type(notes[0].to_dict(), NotificationActivityDict)
    assert_type(notes[0].to_dict()["is_seen"], bool)
    grouped: AggregatedActivityDict = notes[0].to_dict()  # a notification view is a group view
    # The views go back in as they came out, and as plain JSON read back.
    assert_type(Activity.from_dict(view), Activity)
    assert_type(NotificationActivity.from_dict(notes[0].to_dict()), NotificationActivity)
    assert_type(AggregatedActivity.from_dict(grouped), AggregatedActivity)
    assert_type(Activity.from_dict(json.loads("{}")), Activity)
    # Display fields for one response: a new dict, no class needed.
    shown: dict[str, Any] = {**view, "text": "alice loved"}
    del shown


# -- ids as to_dict() sends them ---------------------------------------------------------------


async def string_ids(
    manager: PinManager, view: ActivityDict, group: NotificationActivityDict
) -> None:
    await PinFeed(1).remove(view["id"])
    await PinFeed(1).remove_many([view["id"], 7])
    assert_type(await PinFeed(1).filter(activity_id__lt=view["id"])[:10], list[Activity])
    await PinNotificationFeed(1).mark_activity(group["id"], read=True)
    await PinNotificationFeed(1).mark_activities([group["id"], 7])
    assert_type(await manager.get_activities([view["id"], 7]), list[Activity])
    await manager.remove_user_activity(1, view["id"])
    await PinFeed(1).remove(1.5)  # type: ignore[arg-type]


def feed_update_views(update: FeedUpdate) -> None:
    view = update.to_dict()
    assert_type(view, FeedUpdateDict)
    assert_type(view["activity_ids"], list[str])
    assert_type(view.get("unseen"), int | None)


# -- aiostream.testing -------------------------------------------------------------------------


async def testing_helpers(manager: PinManager) -> None:
    from aiostream import connect
    from aiostream.fanout import InProcessDispatcher
    from aiostream.storage.memory import MemoryStorage
    from aiostream.testing import MemoryStorages, drain, fanout_in_process, memory_storages

    async with memory_storages() as storages:
        assert_type(storages, MemoryStorages)
        assert_type(storages.memory, dict[tuple[str, str], MemoryStorage])
        with fanout_in_process(manager) as dispatcher:
            assert_type(dispatcher, InProcessDispatcher)
        await drain(manager)
        await drain(manager.dispatcher, max_wait=5)
    async with connect(storages=MemoryStorages()) as feeds:
        with fanout_in_process(feeds, manager, max_concurrency=2):
            await drain(feeds)
    with fanout_in_process("manager"):  # type: ignore[arg-type]
        pass


async def fixture_user(memory_storages: MemoryStoragesType) -> None:
    """A test taking the plugin's fixture, typed."""
    assert_type(memory_storages.get("redis"), FeedStorage)
