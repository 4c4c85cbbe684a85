"""The example services on Redis: Redis-bound feeds, Manager and follow graph.

The feed classes are those of :mod:`examples.web.feeds` with
:class:`~aiostream.feeds.redis.RedisBinding` mixed in, so they keep their key formats and
use the Redis storage of the registry the service's connection enters (:func:`open_connection`).
The follow graph and the pin counter live in the same Redis, on the same connection pool.

Importing this module imports ``redis`` (``pip install "aiostream-feeds[redis]"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from aiostream import BaseFeed
from aiostream.feeds.redis import RedisBinding
from aiostream.storage.redis import get_default_storage
from examples.web.feeds import (
    AggregatedPinFeed,
    PinFeed,
    PinManager,
    PinNotificationFeed,
    UserPinFeed,
)

__all__ = [
    "RedisAggregatedPinFeed",
    "RedisGraph",
    "RedisPinFeed",
    "RedisPinManager",
    "RedisPinNotificationFeed",
    "RedisUserPinFeed",
]


class RedisPinFeed(RedisBinding, PinFeed):
    """:class:`~examples.web.feeds.PinFeed` in Redis."""


class RedisAggregatedPinFeed(RedisBinding, AggregatedPinFeed):
    """:class:`~examples.web.feeds.AggregatedPinFeed` in Redis."""


class RedisPinNotificationFeed(RedisBinding, PinNotificationFeed):
    """:class:`~examples.web.feeds.PinNotificationFeed` in Redis."""


class RedisUserPinFeed(RedisBinding, UserPinFeed):
    """:class:`~examples.web.feeds.UserPinFeed` in Redis."""


class RedisPinManager(PinManager):
    """:class:`~examples.web.feeds.PinManager` over the Redis-bound feeds (and so the
    Manager that arq workers rebuild to run fanout jobs)."""

    feed_classes: ClassVar[Mapping[str, type[BaseFeed[Any]]]] = {
        "normal": RedisPinFeed,
        "aggregated": RedisAggregatedPinFeed,
        "notification": RedisPinNotificationFeed,
    }
    user_feed_class: ClassVar[type[BaseFeed]] = RedisUserPinFeed


class RedisGraph:
    """A :class:`~examples.web.feeds.SocialGraph` in Redis sets, on the connection pool
    of the Redis storage of ``server`` in the current registry (looked up per call, as
    the feeds look theirs up: see :mod:`aiostream.storage.registry`).

    Keys: ``web:following:<id>`` and ``web:followers:<id>`` (sets of ids) and
    ``web:pin_ids`` (a counter).
    """

    def __init__(self, server: str = "default", *, namespace: str = "web:") -> None:
        self.server = server
        self.namespace = namespace

    def _client(self) -> Any:
        # redis-py annotates commands for its sync and async clients at once; Any keeps
        # mypy out of that union, as aiostream's own RedisStorage does.
        return get_default_storage(self.server).client

    def _key(self, kind: str, user_id: int) -> str:
        return f"{self.namespace}{kind}:{user_id}"

    async def follow(self, user_id: int, target_id: int) -> bool:
        """Record that ``user_id`` follows ``target_id``; False if it already did."""
        client = self._client()
        added = await client.sadd(self._key("following", user_id), target_id)
        await client.sadd(self._key("followers", target_id), user_id)
        return bool(added)

    async def unfollow(self, user_id: int, target_id: int) -> bool:
        """Forget that ``user_id`` follows ``target_id``; False if it did not."""
        client = self._client()
        removed = await client.srem(self._key("following", user_id), target_id)
        await client.srem(self._key("followers", target_id), user_id)
        return bool(removed)

    async def followers(self, user_id: int) -> list[int]:
        """Ids of the users following ``user_id``, ascending."""
        return sorted(
            int(m) for m in await self._client().smembers(self._key("followers", user_id))
        )

    async def following(self, user_id: int) -> list[int]:
        """Ids of the users ``user_id`` follows, ascending."""
        return sorted(
            int(m) for m in await self._client().smembers(self._key("following", user_id))
        )

    async def next_pin_id(self) -> int:
        """A new, unique pin id (``INCR``)."""
        return int(await self._client().incr(f"{self.namespace}pin_ids"))
