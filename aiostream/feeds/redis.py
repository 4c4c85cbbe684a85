"""Feeds bound to Redis: the seed API's ``RedisFeed`` and friends.

They differ from the backend-free feeds only in :meth:`default_storage`: without a
``storage=`` argument they use the shared :class:`~aiostream.storage.redis.RedisStorage`
of the server named by the class attribute ``redis_server`` (``"default"``:
``STREAM_REDIS_URL``; others: ``STREAM_REDIS_SERVERS`` or
:func:`aiostream.storage.redis.configure`). Timelines, groups, markers and the activity
storage of such a feed all live on that server.

Importing this module imports ``redis``; ``import aiostream`` does not.

Example::

    class PinFeed(RedisFeed):
        key_format = "feed:normal:%(user_id)s"

    await PinFeed(13).add(activity)           # with STREAM_REDIS_URL set
    ...
    await close_default_storages()            # at shutdown
"""

from __future__ import annotations

from typing import ClassVar

from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import BaseFeed, UserBaseFeed
from aiostream.feeds.notification import NotificationFeed
from aiostream.storage.base import FeedStorage
from aiostream.storage.redis.defaults import close_default_storages, default_storage

__all__ = [
    "RedisAggregatedFeed",
    "RedisBinding",
    "RedisFeed",
    "RedisNotificationFeed",
    "RedisUserBaseFeed",
    "close_default_storages",
]


class RedisBinding:
    """Mixin binding a feed class to Redis.

    Class attributes:
        redis_server: Name of the Redis server holding everything of this feed.
    """

    redis_server: ClassVar[str] = "default"

    @classmethod
    def default_storage(cls) -> FeedStorage:
        """The shared storage of ``redis_server`` for the running event loop."""
        return default_storage(cls.redis_server)


class RedisFeed(RedisBinding, BaseFeed):
    """A flat feed stored in Redis."""


class RedisUserBaseFeed(UserBaseFeed, RedisFeed):
    """The feed of a user's own activities, in Redis (``max_length`` 10**6)."""


class RedisAggregatedFeed(RedisBinding, AggregatedFeed):
    """An aggregated feed stored in Redis."""


class RedisNotificationFeed(RedisBinding, NotificationFeed):
    """A notification feed stored in Redis."""
