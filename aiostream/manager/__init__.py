"""The Manager: publishes a user's activities to the feeds of all their followers.

Example (Stream Framework's Pinterest manager, awaited)::

    class PinManager(Manager):
        feed_classes = {"normal": PinFeed, "aggregated": AggregatedPinFeed}
        user_feed_class = UserPinFeed

        async def get_user_follower_ids(self, user_id):
            return {FanoutPriority.HIGH: await active_followers(user_id),
                    FanoutPriority.LOW: await inactive_followers(user_id)}

    manager = PinManager()
    await manager.add_user_activity(pin.user_id, activity)
    feed = manager.get_feeds(user_id)["normal"]
    page = await feed[:25]

The package, bottom up: ``_checks`` / ``_lookup`` / ``_partial`` / ``_targets`` /
``_feed_access`` (what calls and hooks hand in, checked before any I/O), ``_core``
(:class:`ManagerCore`: settings, hooks, feeds, storages, job cutting), the parts typed
against it (``_materialized``: a materialization policy at work; ``_following``;
``_updates``), and ``_manager`` (:class:`Manager`: the public calls).
"""

from aiostream._concurrency import chunked
from aiostream.fanout import FanoutPriority
from aiostream.manager._checks import check_followers
from aiostream.manager._core import ManagerCore
from aiostream.manager._manager import Manager

__all__ = ["FanoutPriority", "Manager", "ManagerCore", "check_followers", "chunked"]
