"""The application core shared by the example services: configuration, the lifespan that
opens and closes aiostream's connections, and the operations behind the endpoints.

Backends:

- in memory (the default): one :class:`~aiostream.MemoryStorage` per application;
- Redis, when a URL is given (``--redis-url`` or ``AIOSTREAM_REDIS_URL``): the Redis-bound
  feeds of :mod:`examples.web.redis_backend`, resolving their storage in the
  :class:`~aiostream.storage.registry.Storages` the lifespan enters (and closes at
  shutdown);
- Redis plus arq workers (``--arq`` or ``AIOSTREAM_ARQ=1``): fanout chunks become arq jobs.

Everything is opened by one :func:`aiostream.connect` call (:func:`open_connection`, the
one place where storages and dispatcher are chosen), pinged at startup, and pinged again
by ``GET /ready``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiostream import (
    Activity,
    BaseFeed,
    ConfigurationError,
    Follow,
    MemoryStorage,
    NotificationData,
    NotificationFeed,
    Settings,
)
from aiostream.connection import Connection, connect
from examples.web.feeds import MemoryGraph, PinManager, PinVerb, SocialGraph

__all__ = [
    "FEED_NAMES",
    "Config",
    "FeedService",
    "open_connection",
    "open_service",
    "parse_args",
]

#: Feeds the API reads, by the name used in URLs: the Manager's ``feed_classes`` plus
#: ``"pins"``, the user's own feed.
FEED_NAMES = {
    "feed": "normal",
    "aggregated": "aggregated",
    "notifications": "notification",
    "pins": "user",
}
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, kw_only=True)
class Config:
    """How an example service stores its feeds.

    Args:
        redis_url: Redis server for feeds and follow graph; None keeps everything in memory.
        arq: Fan out through arq jobs on that Redis (workers:
            ``python -m arq examples.web.worker.WorkerSettings``).

    Raises:
        ConfigurationError: ``arq`` without ``redis_url``.

    Example::

        Config()                                         # in memory
        Config(redis_url="redis://127.0.0.1:6379/0")     # Redis, in-process fanout
        Config.from_env()                                # AIOSTREAM_REDIS_URL, AIOSTREAM_ARQ
    """

    redis_url: str | None = None
    arq: bool = False

    def __post_init__(self) -> None:
        if self.arq and not self.redis_url:
            raise ConfigurationError(
                "arq mode needs a Redis URL (--redis-url or AIOSTREAM_REDIS_URL)"
            )

    @property
    def backend(self) -> str:
        """``"memory"`` or ``"redis"``."""
        return "redis" if self.redis_url else "memory"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """From ``AIOSTREAM_REDIS_URL`` (unset or empty: in memory) and ``AIOSTREAM_ARQ``."""
        env = os.environ if environ is None else environ
        return cls(
            redis_url=env.get("AIOSTREAM_REDIS_URL") or None,
            arq=env.get("AIOSTREAM_ARQ", "").strip().lower() in _TRUE,
        )


class FeedService:
    """What the endpoints do, independent of the web framework.

    Args:
        manager: The Manager (its ``graph`` holds who follows whom).
        backend: ``"memory"`` or ``"redis"`` (reported by ``/healthz``).
        connection: The entered :class:`~aiostream.connection.Connection` the service
            runs on, pinged by :meth:`ready`; None has no server to check.

    Example::

        async with open_service(Config()) as service:
            pin = await service.post_pin(2, board="Kitchen", title="Bread")
            await service.ready()
    """

    def __init__(
        self, manager: PinManager, *, backend: str, connection: Connection | None = None
    ) -> None:
        self.manager = manager
        self.graph: SocialGraph = manager.graph
        self.backend = backend
        self.connection = connection

    async def ready(self) -> None:
        """Check that every server the service uses answers (``GET /ready``).

        Raises:
            StorageError: a storage or the queue Redis is down or too slow (the message
                names it).
        """
        if self.connection is not None:
            await self.connection.ping()

    def feed(self, user_id: int, name: str) -> BaseFeed:
        """The feed of ``user_id``: a name of the Manager's ``feed_classes``, or ``"user"``."""
        if name == "user":
            return self.manager.get_user_feed(user_id)
        feed_class = self.manager.feed_classes[name]
        return feed_class(user_id, storage=self.manager.storage)

    def notifications(self, user_id: int) -> NotificationFeed:
        """The notification feed of ``user_id``."""
        feed = self.feed(user_id, "notification")
        assert isinstance(feed, NotificationFeed)
        return feed

    async def post_pin(self, user_id: int, *, board: str, title: str) -> Activity:
        """Pin something: stored once, written to the user's feed, fanned out to followers."""
        pin_id = await self.graph.next_pin_id()
        pin = Activity(user_id, PinVerb, pin_id, extra_context={"board": board, "title": title})
        await self.manager.add_user_activity(user_id, pin)
        return pin

    async def edit_pin(self, user_id: int, pin_id: int, changes: dict[str, str]) -> Activity | None:
        """Change a pin's board / title everywhere it is shown (a partial update of its
        ``extra_context``); None when ``user_id`` has no pin with that id."""
        if await self._own_pin(user_id, pin_id) is None:
            return None
        return await self.manager.partial_update_activity(pin_id, set=changes)

    async def delete_pin(self, user_id: int, pin_id: int) -> bool:
        """Take a pin out of every feed it reached; False when ``user_id`` has no pin with
        that id."""
        if await self._own_pin(user_id, pin_id) is None:
            return False
        await self.manager.remove_user_activity(user_id, pin_id)
        return True

    async def _own_pin(self, user_id: int, pin_id: int) -> Activity | None:
        found = await self.manager.get_activities([pin_id])
        if not found or found[0].actor_id != user_id or found[0].verb is not PinVerb:
            return None
        return found[0]

    async def follow(self, user_id: int, target_id: int) -> bool:
        """Follow ``target_id``: backfill their recent pins, notify them. Idempotent;
        False when ``user_id`` already followed them."""
        if not await self.graph.follow(user_id, target_id):
            return False
        await self.manager.follow_user(user_id, target_id)
        await self.notifications(target_id).add(Activity(user_id, Follow, target_id))
        return True

    async def unfollow(self, user_id: int, target_id: int) -> bool:
        """Unfollow ``target_id`` and remove their pins from every feed of ``user_id``.
        False when ``user_id`` did not follow them."""
        if not await self.graph.unfollow(user_id, target_id):
            return False
        await self.manager.unfollow_user(user_id, target_id)
        return True

    async def mark(
        self, user_id: int, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> NotificationData:
        """Mark notification groups (all when ``ids`` is None) seen / read; the new counts."""
        feed = self.notifications(user_id)
        if ids is None:
            await feed.mark_all(seen=seen, read=read)
        else:
            await feed.mark_activities(ids, seen=seen, read=read)
        return await feed.get_notification_data()

    async def counts(self, user_id: int) -> NotificationData:
        """``{"unseen_count": n, "unread_count": m}``."""
        return await self.notifications(user_id).get_notification_data()


# ---- The one place where storages and dispatcher are chosen ------------------------------


def open_connection(config: Config) -> Connection:
    """The :func:`aiostream.connect` connection of ``config``, for ``async with``.

    In memory it has no backend to check and dispatches in this process (the service's
    feeds get their :class:`~aiostream.MemoryStorage` passed in). On Redis it enters a
    storage registry on ``config.redis_url`` (``backends=["redis"]``, so :meth:`ping
    <aiostream.connection.Connection.ping>` checks it); with ``config.arq`` its
    dispatcher is an :class:`aiostream.tasks.ArqDispatcher` on the same Redis, enqueueing
    on the queues of :mod:`examples.web.worker` (run ``python -m arq
    examples.web.worker.WorkerSettings``).

    Example::

        async with open_connection(Config(redis_url=url)) as feeds:
            await feeds.ping()
    """
    if config.redis_url is None:
        # Settings() and not from_env(): an in-memory service never looks at STREAM_*.
        return connect(Settings())
    options: dict[str, Any] = {}
    if config.arq:
        # Imported here: arq (and its redis-py 5 pin) is needed in arq mode only.
        from examples.web.worker import QUEUES

        options["queues"] = QUEUES
    return connect(
        Settings(redis_url=config.redis_url),
        backends=["redis"],
        arq=config.arq,
        dispatcher_options=options,
    )


# ------------------------------------------------------------------------------------------


@asynccontextmanager
async def open_service(config: Config) -> AsyncIterator[FeedService]:
    """Open the backend's connections, yield the service, close them on exit.

    Every example application runs this in its lifespan (Starlette and FastAPI
    ``lifespan=``, aiohttp ``cleanup_ctx``). It pings every server first (the storage
    Redis, and the queue in arq mode), so a wrong URL stops the application at startup
    rather than at its first request.

    Raises:
        StorageError: a server did not answer the startup ping.
    """
    async with open_connection(config) as feeds:
        await feeds.ping()
        if config.redis_url is None:
            async with MemoryStorage() as storage:
                manager = feeds.manager(PinManager, graph=MemoryGraph(), storage=storage)
                yield FeedService(manager, backend="memory", connection=feeds)
            return
        # Imported here: the in-memory service runs without redis-py installed.
        from examples.web.redis_backend import RedisGraph, RedisPinManager

        # The feeds and the graph find their storage in the connection's registry.
        manager = feeds.manager(RedisPinManager, graph=RedisGraph())
        yield FeedService(manager, backend="redis", connection=feeds)


def parse_args(
    argv: Sequence[str] | None, *, description: str, default_port: int
) -> tuple[Config, str, int]:
    """The command line shared by both services: ``--host``, ``--port``, ``--redis-url``,
    ``--arq`` (the last two default to ``AIOSTREAM_REDIS_URL`` / ``AIOSTREAM_ARQ``)."""
    env = Config.from_env()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help="port to listen on")
    parser.add_argument(
        "--redis-url",
        default=env.redis_url,
        help="store feeds in this Redis (default: AIOSTREAM_REDIS_URL; unset: in memory)",
    )
    parser.add_argument(
        "--arq",
        action=argparse.BooleanOptionalAction,
        default=env.arq,
        help="fan out through arq jobs (needs --redis-url and a worker; default: AIOSTREAM_ARQ)",
    )
    args = parser.parse_args(argv)
    try:
        config = Config(redis_url=args.redis_url or None, arq=args.arq)
    except ConfigurationError as exc:
        parser.error(str(exc))
    return config, args.host, args.port
