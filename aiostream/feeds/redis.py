"""Feeds bound to Redis: Stream Framework's ``RedisFeed`` and friends.

They differ from the backend-free feeds only in ``storage_backend = "redis"``: without a
``storage=`` argument they use the :class:`~aiostream.storage.redis.RedisStorage` of the
server named by the class attribute ``redis_server``, found in the current
:class:`~aiostream.storage.registry.Storages` and built from its settings (or
:func:`~aiostream.storage.registry.configure`'s); with none given, from
``STREAM_REDIS_URL`` (``"default"``) or ``STREAM_REDIS_SERVERS`` (others) when that
variable is set, else a :class:`~aiostream.exceptions.ConfigurationError`: never a
server on 127.0.0.1 that nobody named. Timelines, groups, markers and the activity
storage of such a feed all live on that server.

Importing this module imports ``redis``; ``import aiostream`` does not.

Example::

    class PinFeed(RedisFeed):
        key_format = "feed:normal:%(user_id)s"

    await PinFeed(13).add(activity)           # with STREAM_REDIS_URL set
    ...
    await close_default_storages()            # at shutdown (aiostream.storage.registry)
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiostream.feeds.aggregated import AggregatedFeed, GroupT
from aiostream.feeds.base import BaseFeed, ItemT, UserBaseFeed
from aiostream.feeds.notification import NotificationFeed, NotificationT

__all__ = [
    "RedisAggregatedFeed",
    "RedisBinding",
    "RedisFeed",
    "RedisNotificationFeed",
    "RedisUserBaseFeed",
]


class RedisBinding:
    """Mixin binding a feed class to Redis.

    Class attributes:
        redis_server: Name of the Redis server holding everything of this feed (the
            feed's ``storage_server``; either name may be set).
    """

    storage_backend: ClassVar[str] = "redis"
    storage_server: ClassVar[str] = "default"
    redis_server: ClassVar[str] = "default"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Stream Framework's name and the registry's name stay one setting.
        if "redis_server" in vars(cls):
            cls.storage_server = cls.redis_server
        elif "storage_server" in vars(cls):
            cls.redis_server = cls.storage_server


# Each binding keeps its kind's type parameter (and so its default): a plain subclass of
# RedisFeed reads Activity, of RedisAggregatedFeed AggregatedActivity, and so on.


class RedisFeed(RedisBinding, BaseFeed[ItemT]):
    """A flat feed stored in Redis."""


class RedisUserBaseFeed(UserBaseFeed[ItemT], RedisFeed[ItemT]):
    """The feed of a user's own activities, in Redis (``max_length`` 10**6)."""


class RedisAggregatedFeed(RedisBinding, AggregatedFeed[GroupT]):
    """An aggregated feed stored in Redis."""


class RedisNotificationFeed(RedisBinding, NotificationFeed[NotificationT]):
    """A notification feed stored in Redis."""
