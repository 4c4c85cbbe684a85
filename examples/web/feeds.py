"""The feeds, the Manager and the follow graph of the example services (in-memory backend).

Pins fan out to every follower's flat, aggregated and notification feed. The flat,
aggregated and user feeds are the Pinterest demo's (:mod:`examples.pinterest_demo`);
the notification feed groups pins per author and day ("bob pinned 3 pins") and new
followers per day ("alice and carol started following you").

The Redis variants of these classes live in :mod:`examples.web.redis_backend`, so the
in-memory service never imports ``redis``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from aiostream import (
    Activity,
    BaseAggregator,
    BaseFeed,
    FanoutPriority,
    FeedStorage,
    Follow,
    Manager,
    NotificationFeed,
    RecentRankMixin,
)
from aiostream.fanout import Dispatcher
from examples.pinterest_demo import AggregatedPinFeed, PinFeed, PinVerb, UserPinFeed

__all__ = [
    "AggregatedPinFeed",
    "MemoryGraph",
    "PinFeed",
    "PinManager",
    "PinNotificationAggregator",
    "PinNotificationFeed",
    "PinVerb",
    "SocialGraph",
    "UserPinFeed",
]


class PinNotificationAggregator(RecentRankMixin, BaseAggregator):
    """Pins grouped per author and day; follows per day (whoever followed)."""

    def get_group(self, activity: Activity) -> str:
        """``"<verb id>-<actor id>-<date>"`` for pins, ``"<verb id>-<date>"`` for follows."""
        day = activity.time.date()
        if activity.verb is Follow:
            return f"{Follow.id}-{day}"
        return f"{activity.verb.id}-{activity.actor_id}-{day}"


class PinNotificationFeed(NotificationFeed):
    """New pins of the people you follow, and your new followers."""

    key_format = "feed:pin_notification:%(user_id)s"
    aggregator_class = PinNotificationAggregator


class SocialGraph(Protocol):
    """Who follows whom, and the pin id counter: the service's own data, beside the feeds."""

    async def follow(self, user_id: int, target_id: int) -> bool:
        """Record that ``user_id`` follows ``target_id``; False if it already did."""

    async def unfollow(self, user_id: int, target_id: int) -> bool:
        """Forget that ``user_id`` follows ``target_id``; False if it did not."""

    async def followers(self, user_id: int) -> list[int]:
        """Ids of the users following ``user_id``, ascending."""

    async def following(self, user_id: int) -> list[int]:
        """Ids of the users ``user_id`` follows, ascending."""

    async def next_pin_id(self) -> int:
        """A new, unique pin id."""


class MemoryGraph:
    """A :class:`SocialGraph` in this process's memory (lost on restart)."""

    def __init__(self) -> None:
        self._followers: defaultdict[int, set[int]] = defaultdict(set)
        self._following: defaultdict[int, set[int]] = defaultdict(set)
        self._pin_ids = itertools.count(1)

    async def follow(self, user_id: int, target_id: int) -> bool:
        """Record that ``user_id`` follows ``target_id``; False if it already did."""
        if target_id in self._following[user_id]:
            return False
        self._following[user_id].add(target_id)
        self._followers[target_id].add(user_id)
        return True

    async def unfollow(self, user_id: int, target_id: int) -> bool:
        """Forget that ``user_id`` follows ``target_id``; False if it did not."""
        if target_id not in self._following[user_id]:
            return False
        self._following[user_id].discard(target_id)
        self._followers[target_id].discard(user_id)
        return True

    async def followers(self, user_id: int) -> list[int]:
        """Ids of the users following ``user_id``, ascending."""
        return sorted(self._followers.get(user_id, ()))

    async def following(self, user_id: int) -> list[int]:
        """Ids of the users ``user_id`` follows, ascending."""
        return sorted(self._following.get(user_id, ()))

    async def next_pin_id(self) -> int:
        """A new, unique pin id."""
        return next(self._pin_ids)


class PinManager(Manager):
    """Fans pins out to followers' flat, aggregated and notification feeds.

    Args:
        graph: Where followers are looked up.
        storage: Storage of every feed (default: each feed class's own).
        dispatcher: Runs fanout chunks (default: in-process).

    Class attributes:
        follow_feeds: Feeds that get the recent pins of someone you start following;
            the notification feed is left out, so a follow does not bring a pile of old
            pins into it as unseen notifications.

    Example::

        manager = PinManager(MemoryGraph())
        await manager.add_user_activity(2, pin)
        page = await manager.get_feed(1, "normal", PinFeed)[:10]  # list[Activity]
    """

    feed_classes: ClassVar[Mapping[str, type[BaseFeed[Any]]]] = {
        "normal": PinFeed,
        "aggregated": AggregatedPinFeed,
        "notification": PinNotificationFeed,
    }
    user_feed_class: ClassVar[type[BaseFeed]] = UserPinFeed
    follow_activity_limit: ClassVar[int] = 100
    follow_feeds: ClassVar[tuple[str, ...] | None] = ("normal", "aggregated")

    def __init__(
        self,
        graph: SocialGraph,
        *,
        storage: FeedStorage | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        super().__init__(storage=storage, dispatcher=dispatcher)
        self.graph = graph

    async def get_user_follower_ids(self, user_id: Any) -> dict[FanoutPriority, list[int]]:
        """Every follower is HIGH priority here: a real service would put users who have
        not been active for a while in LOW, carried by its own (slower) worker."""
        return {FanoutPriority.HIGH: await self.graph.followers(int(user_id))}
