"""What every part of the Manager works with: its settings, the hooks an application
overrides, its feeds and storages, and how work is cut into jobs and dispatched.

:class:`ManagerCore` is the bottom of the :mod:`aiostream.manager` package: the parts
(following, updates, lookups, targets, materialization) are functions and classes typed
against it, and :class:`~aiostream.manager.Manager`, on top, adds the public calls that
use them. Nothing here imports a part.
"""

from __future__ import annotations

import abc
import datetime as dt
import inspect
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from aiostream._concurrency import chunked
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError, ValidationError
from aiostream.fanout import Dispatcher, FanoutChunk, InProcessDispatcher, Job, Operation
from aiostream.feeds.base import BaseFeed, ReadHook, UserBaseFeed
from aiostream.ids import is_id
from aiostream.manager._checks import check_followers
from aiostream.manager._feed_access import FeedT, HasUserFeed, registered_feed_class
from aiostream.manager._lookup import (
    ForeignRef,
    checked_foreign_ids,
    checked_id,
    checked_ids,
    foreign_ref_id,
)
from aiostream.manager._targets import Target, target_chunks
from aiostream.metrics import Metrics, noop_metrics
from aiostream.storage.base import FeedStorage
from aiostream.storage.timing import timed_storage

logger = logging.getLogger("aiostream.manager")


def _check_positive(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int of at least {minimum}, got {value!r}")


class ManagerCore(abc.ABC):
    """The settings, hooks, feeds and job cutting every part of a Manager uses (see
    :class:`~aiostream.manager.Manager`, which documents them for users).

    Args:
        storage: Storage for every feed the manager builds (default: each feed class's own).
        dispatcher: Runs fanout chunks (default: :class:`InProcessDispatcher`).
        metrics: Metrics sink (default: no-op).

    The class attributes and hooks are documented on :class:`~aiostream.manager.Manager`,
    where applications meet them.
    """

    name: ClassVar[str] = "ManagerCore"
    feed_classes: ClassVar[Mapping[str, type[BaseFeed[Any]]]] = {"normal": BaseFeed}
    user_feed_class: ClassVar[type[BaseFeed[Any]]] = UserBaseFeed
    fanout_chunk_size: ClassVar[int] = 100
    follow_activity_limit: ClassVar[int] = 5000
    follow_feeds: ClassVar[tuple[str, ...] | None] = None
    follow_lease_ttl: ClassVar[float] = 30.0
    inactive_after: ClassVar[dt.timedelta | None] = None
    pull_threshold: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Name each class (its ``__qualname__``) unless its body names it: the name its
        jobs carry, so that a worker running several Managers picks the right one."""
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__qualname__
        elif not isinstance(cls.name, str) or not cls.name:
            raise ConfigurationError(
                f"{cls.__qualname__}.name must be a non-empty str, got {cls.name!r}"
            )

    def __init__(
        self,
        *,
        storage: FeedStorage | None = None,
        dispatcher: Dispatcher | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if not self.feed_classes:
            raise ConfigurationError("Manager.feed_classes must name at least one feed class")
        _check_positive(f"{type(self).__name__}.fanout_chunk_size", self.fanout_chunk_size)
        _check_positive(
            f"{type(self).__name__}.follow_activity_limit", self.follow_activity_limit, minimum=0
        )
        names = self.follow_feeds if self.follow_feeds is not None else ()
        unknown = [name for name in names if name not in self.feed_classes]
        if unknown:
            raise ConfigurationError(
                f"{type(self).__name__}.follow_feeds names {unknown!r}, not in feed_classes"
            )
        self.storage = storage
        self.dispatcher: Dispatcher = dispatcher or InProcessDispatcher()
        self.metrics: Metrics = metrics or noop_metrics
        # Given to the feeds only when set, so a feed class's own sink is kept otherwise.
        self.feed_metrics = metrics
        # Per feed name, what the feeds handed out read through (a materialization
        # policy's reads, set by the Manager that has one).
        self.read_hooks: dict[str, ReadHook] = {}

    # -- hooks ---------------------------------------------------------------------------------

    def get_user_follower_ids(self, user_id: Any) -> Any:
        """Return ``{FanoutPriority.HIGH: ids, FanoutPriority.LOW: ids}`` (may be
        ``async def``). Any key works; each becomes the chunk's priority."""
        raise NotImplementedError("subclass Manager and implement get_user_follower_ids")

    def get_user_following_ids(self, user_id: Any) -> Any:
        """Return the ids of the users ``user_id`` follows (may be ``async def``): needed
        only with a materialization policy, to pull and to rebuild. It must agree with
        :meth:`get_user_follower_ids`."""
        raise NotImplementedError("implement get_user_following_ids to skip feeds")

    def get_user_follower_count(self, user_id: Any) -> Any:
        """Optional: how many followers ``user_id`` has (may be ``async def``; None:
        unknown). With a pull threshold and only flat feeds, a post by a pulled producer
        then skips :meth:`get_user_follower_ids` altogether."""
        return None

    def now(self) -> float:
        """The time (Unix seconds) the materialization policy goes by."""
        return time.time()

    async def follower_ids(self, user_id: Any) -> dict[str | None, list[Any]]:
        """Await :meth:`get_user_follower_ids` if needed and validate its whole result.

        Called by keyword (``user_id=``), as Stream Framework calls it.

        Raises:
            ValidationError: not a mapping of priority to a collection of ids, or an id
                that is not an int or a non-empty str (the field names the priority and
                the position), checked for every id before anything is written.
        """
        result = self.get_user_follower_ids(user_id=user_id)
        if inspect.isawaitable(result):
            result = await result
        return check_followers(result)

    # -- feeds -----------------------------------------------------------------------------------

    def get_feeds(self, user_id: Any) -> dict[str, BaseFeed[Any]]:
        """``{name: feed}`` of ``user_id`` for every feed class."""
        return {name: self._feed(name, cls, user_id) for name, cls in self.feed_classes.items()}

    def _feed(self, name: str, cls: type[FeedT], user_id: Any) -> FeedT:
        hook = self.read_hooks.get(name)
        if hook is None:  # (a feed class of an application's own with an older __init__)
            return cls(user_id, storage=self.storage, metrics=self.feed_metrics)
        return cls(user_id, storage=self.storage, metrics=self.feed_metrics, read_hook=hook)

    def get_feed(self, user_id: Any, name: str, feed_class: type[FeedT]) -> FeedT:
        """The feed ``name`` of ``user_id``, typed as ``feed_class``.

        Args:
            feed_class: The class registered as ``name`` or a base of it; subscript a
                generic base (``NotificationFeed[NotificationActivity]``): mypy reads a
                bare one with Any items.

        Raises:
            ConfigurationError: no feed class ``name``, or not a subclass of ``feed_class``.
        """
        cls = registered_feed_class(self, self.feed_classes, name, feed_class)
        return self._feed(name, cls, user_id)

    def get_user_feed(self: HasUserFeed[FeedT], user_id: Any) -> FeedT:
        """The feed of the user's own activities, typed as :attr:`user_feed_class` where
        a subclass assigns it without a wider annotation."""
        return self.user_feed_class(user_id, storage=self.storage, metrics=self.feed_metrics)

    def storage_for(self, feed_class: type[BaseFeed]) -> FeedStorage:
        """Storage the manager uses for ``feed_class``."""
        return self.storage if self.storage is not None else feed_class.default_storage()

    async def get_activities(
        self,
        ids: Iterable[int | str] | None = None,
        *,
        foreign_ids: Iterable[ForeignRef] | None = None,
    ) -> list[Activity]:
        """Stored activities by id, or by ``(foreign id, time)`` pairs, in the order
        asked; ids no stored activity has are left out. An id may be the decimal str
        ``to_dict()`` sent (``"id"``).

        Read from the activity storage of :attr:`user_feed_class` (where every published
        activity is stored) in one call: one round trip on Redis (one per node on a
        cluster), one concurrent query per id on Cassandra.

        Raises:
            ValidationError: naming ``ids[i]`` / ``foreign_ids[i]`` for a bad element,
                or ``ids`` when both or neither are given.
        """
        if (ids is None) == (foreign_ids is None):
            raise ValidationError("ids", "give ids or foreign_ids (one of them)")
        wanted = checked_ids(ids) if ids is not None else checked_foreign_ids(foreign_ids)
        if not wanted:
            return []
        user_class = self.user_feed_class
        storage = self.io_for(user_class)
        stored = await storage.load_activities(list(dict.fromkeys(wanted)))
        found = [(i, stored[i]) for i in wanted if i in stored]
        return list(user_class.get_activity_serializer().loads_entries(found))

    async def named_activity(self, activity: object, foreign_id: object, time: object) -> Activity:
        """The activity a call names by itself, by its id, or by ``foreign_id`` and ``time``
        (the last two looked up with :meth:`get_activities`).

        Raises:
            ValidationError: naming ``activity`` or ``foreign_id``: both or neither given, a
                bad id, or no stored activity with that id / foreign id and time.
        """
        if isinstance(activity, Activity):
            if foreign_id is not None:
                raise ValidationError("foreign_id", "give an activity or a foreign id, not both")
            return activity
        if activity is None:
            if foreign_id is None:
                raise ValidationError("activity", "give an activity, its id, or a foreign_id")
            activity_id, field = foreign_ref_id(foreign_id, time), "foreign_id"
        elif foreign_id is not None:
            raise ValidationError("foreign_id", "give an activity id or a foreign id, not both")
        elif is_id(activity):
            activity_id, field = activity, "activity"
        elif isinstance(activity, str):  # the decimal id to_dict() sent to a client
            activity_id, field = checked_id(activity, "activity"), "activity"
        else:
            raise ValidationError(
                "activity",
                f"expected an Activity, an int id or its decimal str, got "
                f"{type(activity).__name__}",
            )
        found = await self.get_activities([activity_id])
        if not found:
            raise ValidationError(field, f"no stored activity has id {activity_id}")
        return found[0]

    def target_chunks(
        self, operation: Operation, activities: list[Activity], targets: Sequence[Target]
    ) -> list[FanoutChunk]:
        """Chunks carrying ``operation`` of ``activities`` to the ``targets`` feeds."""
        size = self.fanout_chunk_size
        return target_chunks(self.feed_classes, targets, operation, activities, size=size)

    def io_for(self, feed_class: type[BaseFeed]) -> FeedStorage:
        """:meth:`storage_for` as the Manager's own calls use it: timed for its metrics
        sink when the sink wants storage timings (the one place the Manager binds a
        storage to its sink)."""
        return timed_storage(self.storage_for(feed_class), self.metrics)

    def storages(self, *feed_classes: type[BaseFeed]) -> list[FeedStorage]:
        """The distinct storages of ``feed_classes``, each once, as :meth:`io_for`
        gives them."""
        distinct = {id(s): s for s in map(self.storage_for, feed_classes)}
        return [timed_storage(storage, self.metrics) for storage in distinct.values()]

    async def fanout_chunks(
        self,
        user_id: Any,
        operation: Operation,
        activities: list[Activity],
        *,
        trim: bool,
        followers: Mapping[str | None, Sequence[Any]] | None = None,
    ) -> list[FanoutChunk]:
        """The chunks of a fanout of ``operation`` to the followers of ``user_id``
        (``followers``, when they were asked for already)."""
        if followers is None:
            followers = await self.follower_ids(user_id)
        chunks = list(self.create_fanout_chunks(followers, operation, activities, trim=trim))
        if logger.isEnabledFor(logging.DEBUG):
            what = (
                f"activity {activities[0].serialization_id}"
                if len(activities) == 1
                else f"{len(activities)} activities"
            )
            logger.debug(
                "fanout %s of %s by user %s: %d followers (%s) into %d feed classes, %d chunks",
                operation,
                what,
                user_id,
                sum(map(len, followers.values())),
                ", ".join(f"{priority}: {len(ids)}" for priority, ids in followers.items()),
                len(self.feed_classes),
                len(chunks),
            )
        return chunks

    async def dispatch(self, jobs: Sequence[Job]) -> None:
        """Hand ``jobs`` to the dispatcher, which carries each out with :meth:`run`; each
        job carries this Manager's :attr:`name`, so that a worker running several
        Managers runs it with this one."""
        if jobs:
            named = [j if j.manager is not None else replace(j, manager=self.name) for j in jobs]
            await self.dispatcher.dispatch(named, self.run)

    def create_fanout_chunks(
        self,
        followers: Mapping[str | None, Sequence[Any]],
        operation: Operation,
        activities: Sequence[Activity],
        *,
        trim: bool = True,
    ) -> Iterable[FanoutChunk]:
        """Chunks of ``fanout_chunk_size`` followers, per priority and per feed class."""
        for name, feed_class in self.feed_classes.items():
            entries = feed_class.serialize_activities(activities)
            payloads = tuple(p for _, p in entries)
            activity_ids = tuple(i for i, _ in entries)
            for priority, ids in followers.items():
                for user_ids in chunked(ids, self.fanout_chunk_size):
                    yield FanoutChunk(
                        operation, name, user_ids, payloads, priority, trim, activity_ids
                    )

    @abc.abstractmethod
    async def run(self, job: Job) -> None:
        """Carry out one job: what :meth:`dispatch` hands the dispatcher (the Manager's)."""
