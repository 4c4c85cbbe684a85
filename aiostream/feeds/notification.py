"""Notification feeds: aggregated feeds that know what the user has seen and read.

Every group carries an *unseen* and an *unread* marker. A group that receives a new
activity becomes unseen and unread again; ``mark_*`` clear markers; counts are of groups.

Example::

    class MyNotificationFeed(NotificationFeed):
        key_format = "feed:notification:%(user_id)s"

    feed = MyNotificationFeed(user_id)
    await feed.add(activity)
    await feed.count_unseen()                 # 1
    await feed.mark_all(seen=True)            # read stays as it was
    data = await feed.get_notification_data() # {"unseen_count": 0, "unread_count": 1}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

# typing_extensions' TypedDict: pydantic (FastAPI's response_model=) refuses typing's on 3.11.
from typing_extensions import TypedDict, TypeVar

from aiostream._arguments import checked_flag
from aiostream.activity import AggregatedActivity, NotificationActivity
from aiostream.aggregators import BaseAggregator, NotificationAggregator
from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import _ids_of
from aiostream.storage.base import GroupRecord

__all__ = ["NotificationData", "NotificationFeed"]

# The group class reads return (see BaseFeed's ItemT): NotificationActivity by default.
NotificationT = TypeVar(
    "NotificationT", bound=NotificationActivity, default=NotificationActivity, covariant=True
)


class NotificationData(TypedDict):
    """The counts of a notification feed, as :meth:`NotificationFeed.get_notification_data`
    returns them: both keys are always there, and a count the feed does not track
    (``track_unseen`` / ``track_unread`` False) is None.

    Example::

        data = await feed.get_notification_data()
        badge = data["unseen_count"] or 0
    """

    unseen_count: int | None
    unread_count: int | None


class NotificationFeed(AggregatedFeed[NotificationT]):
    """An aggregated feed with per-group seen / read markers.

    Generic in the group class its reads return (``NotificationActivity`` by default), as
    :class:`~aiostream.feeds.aggregated.AggregatedFeed` is:
    ``class MyNotificationFeed(NotificationFeed[MyNotification])`` with
    ``aggregated_activity_class = MyNotification``.

    Class attributes (beyond :class:`~aiostream.feeds.aggregated.AggregatedFeed`'s):
        track_unseen: Report unseen counts (``count_unseen`` returns None otherwise).
        track_unread: Report unread counts (``count_unread`` returns None otherwise).
    """

    key_format: ClassVar[str] = "notification_feed:%(user_id)s"
    aggregator_class: ClassVar[type[BaseAggregator]] = NotificationAggregator
    aggregated_activity_class: ClassVar[type[AggregatedActivity]] = NotificationActivity
    track_unseen: ClassVar[bool] = True
    track_unread: ClassVar[bool] = True
    track_markers: ClassVar[bool] = True

    def _loaded(self, aggregated: AggregatedActivity, record: GroupRecord) -> None:
        if isinstance(aggregated, NotificationActivity):
            aggregated.marked_seen = not record.unseen
            aggregated.marked_read = not record.unread

    async def count_unseen(self) -> int | None:
        """Groups not seen since their last update (None when not tracked)."""
        unseen, _ = await self.io.count_markers(self.key)
        return unseen if self.track_unseen else None

    async def count_unread(self) -> int | None:
        """Groups not read since their last update (None when not tracked)."""
        _, unread = await self.io.count_markers(self.key)
        return unread if self.track_unread else None

    async def get_notification_data(self) -> NotificationData:
        """Both counts in one storage call.

        Returns:
            ``{"unseen_count": n, "unread_count": m}``, always with both keys; a count
            that is not tracked (``track_unseen`` / ``track_unread`` False) is None.
            (Stream Framework leaves an untracked count's key out instead.)
        """
        unseen, unread = await self.io.count_markers(self.key)
        return {
            "unseen_count": unseen if self.track_unseen else None,
            "unread_count": unread if self.track_unread else None,
        }

    async def mark_activity(
        self, activity: AggregatedActivity | int | str, seen: bool = True, read: bool = False
    ) -> None:
        """Mark one group (or group id, as an int or the decimal str of ``"id"`` in its
        ``to_dict()``) seen and / or read."""
        await self.mark_activities([activity], seen=seen, read=read)

    async def mark_activities(
        self,
        activities: Iterable[AggregatedActivity | int | str],
        seen: bool = True,
        read: bool = False,
    ) -> None:
        """Mark groups (or group ids) seen and / or read. A group updated since it was
        read has a new id, so marking the old id leaves the update unseen.

        An id may be the decimal str a group's ``to_dict()`` sends as ``"id"``, so a
        client marks what it was shown with the ids it got back.

        Raises:
            ValidationError: naming the argument: not a list of groups or ids, an id
                str that is not an id's decimal form (``"-1"``, ``"1e5"``), or ``seen``
                / ``read`` not a bool.
        """
        checked_flag(seen, "seen")
        checked_flag(read, "read")
        ids = _ids_of(activities)
        if ids and (seen or read):
            await self.io.mark_groups(self.key, ids, seen=seen, read=read)
            await self._announce(self.io, [self.key], "marked", ids)

    async def mark_all(self, seen: bool = True, read: bool = False) -> None:
        """Mark every group seen and / or read.

        Raises:
            ValidationError: ``seen`` or ``read`` is not a bool (``"no"`` is not False).
        """
        checked_flag(seen, "seen")
        checked_flag(read, "read")
        if seen or read:
            await self.io.mark_groups(self.key, None, seen=seen, read=read)
            await self._announce(self.io, [self.key], "marked")

    @classmethod
    def _update_counts(cls) -> tuple[bool, bool]:
        return (cls.track_markers and cls.track_unseen, cls.track_markers and cls.track_unread)
