"""Flat feeds: a user's activities, newest first.

Example::

    class PinFeed(BaseFeed):
        key_format = "feed:normal:%(user_id)s"

    feed = PinFeed(13)
    await feed.add(activity)
    page = await feed[:25]
    older = await feed.filter(activity_id__lt=page[-1].serialization_id)[:25]
    async for activity in feed:          # the whole feed, page by page
        ...
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import random
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol

from typing_extensions import TypeVar

from aiostream._arguments import listed
from aiostream.activity import Activity
from aiostream.exceptions import (
    ActivityNotFoundError,
    ConfigurationError,
    ConflictError,
    InvalidQueryError,
    StorageError,
    ValidationError,
)
from aiostream.fanout import StoredActivities
from aiostream.ids import ItemId, format_key, parse_id
from aiostream.metrics import Metrics, noop_metrics, stopwatch
from aiostream.query import Query, check_slice
from aiostream.realtime import DEFAULT_BUFFER, Subscription, UpdateKind, template
from aiostream.realtime import logger as realtime_logger
from aiostream.serializers import ActivitySerializer
from aiostream.storage.base import Capability, Entry, FeedStorage, has, require
from aiostream.storage.registry import default_storage
from aiostream.storage.timing import timed_storage
from aiostream.verbs import VerbRegistry, default_registry

logger = logging.getLogger("aiostream.feeds")

__all__ = [
    "BaseFeed",
    "FanoutBatch",
    "Page",
    "ReadHook",
    "UserBaseFeed",
    "hybridmethod",
]

T = TypeVar("T")
F = TypeVar("F", bound="BaseFeed[Any]")
# What a flat feed's reads return: its activity class's instances. A default (PEP 696) so
# that a plain ``class PinFeed(BaseFeed)`` reads ``list[Activity]``; covariant, as items
# only come out, so a feed of a subclass of Activity is a feed of Activity too.
ItemT = TypeVar("ItemT", default=Activity, covariant=True)


class hybridmethod(Generic[T]):
    """A method bound to the instance when called on one, to the class otherwise.

    ``Feed.insert_activity(a)`` uses the class's default storage (as in Stream Framework);
    ``feed.insert_activity(a)`` uses the storage injected into that feed.
    """

    def __init__(self, func: Callable[..., T]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, obj: object, owner: type) -> Callable[..., T]:
        return functools.partial(self.func, owner if obj is None else obj)


def _storage_of(target: Any) -> FeedStorage:
    return target.io if isinstance(target, BaseFeed) else target._io_for(None, None)


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


@dataclass(frozen=True, slots=True)
class FanoutBatch:
    """One fanout call of a feed class: the follower feeds and what goes into them.

    Attributes:
        feed_class: The feed class fanned out to.
        user_ids: The followers.
        keys: Their feed keys (each id checked).
        activities: The activities to add, remove or update.
        storage: The storage passed in (None: the class's own).
        metrics: The metrics sink passed in (None: the class's own).
        trim: Whether writes may trim the feeds.
    """

    feed_class: type[BaseFeed[Any]]
    user_ids: Sequence[int | str]
    keys: list[str]
    activities: Sequence[Activity]
    storage: FeedStorage | None
    metrics: Metrics | None
    trim: bool = True

    @property
    def io(self) -> FeedStorage:
        """The storage to call, timed for ``metrics`` (looked up only by the feed kinds
        that write: a flat feed's update writes nothing)."""
        return self.feed_class._io_for(self.storage, self.metrics)

    @classmethod
    def of(
        cls,
        feed_class: type[BaseFeed[Any]],
        user_ids: Sequence[int | str],
        activities: Sequence[Activity],
        storage: FeedStorage | None,
        metrics: Metrics | None,
        trim: bool = True,
    ) -> FanoutBatch:
        """The batch of a fanout call; checks every user id.

        Raises:
            ValidationError: a user id that cannot name a feed.
        """
        keys = [format_key(feed_class.key_format, user_id) for user_id in user_ids]
        return cls(feed_class, user_ids, keys, activities, storage, metrics, trim)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a feed, as :meth:`BaseFeed.page` reads it.

    A page carries its own cursor so that a web handler answers ``{"items", "next"}``
    without knowing how feeds are ordered: cursors are ids, not offsets, so a page stays
    right while new items arrive on top, and they are decimal strings because ids
    exceed what a JavaScript number holds (2**53).

    Attributes:
        items: The page's activities (or groups), in the page's order.
        next: The cursor of the following page (the last item's id as a decimal str),
            or None when this page is the last.
        newest_first: The page's order; the following page is
            ``feed.page(before=page.next)`` when True, ``feed.page(after=page.next)``
            otherwise.
    """

    items: list[T]
    next: str | None
    newest_first: bool = True

    def to_dict(self, render: Callable[[T], Any] | None = None) -> dict[str, Any]:
        """``{"items": [...], "next": cursor or None}``, JSON-ready.

        Args:
            render: Turns an item into JSON data; default: the item's own ``to_dict()``
                (:meth:`aiostream.activity.Activity.to_dict`,
                :meth:`aiostream.activity.AggregatedActivity.to_dict`).
        """
        items = [item.to_dict() if render is None else render(item) for item in self.items]  # type: ignore[attr-defined]
        return {"items": items, "next": self.next}


class ReadHook(Protocol):
    """What a feed built with ``read_hook=`` reads, removes, trims, deletes and
    subscribes through, instead of its own timeline alone.

    A :class:`~aiostream.manager.Manager` with a materialization policy
    (:mod:`aiostream.materialize`) gives one to each flat feed it hands out: the policy
    skips some writes, and the hook's reads make up for them. A feed built without one
    (``PinFeed(7)``) reads its own timeline. The hook reaches the feed through its public
    calls (:meth:`BaseFeed.read_stored`, :attr:`BaseFeed.io`, :meth:`BaseFeed.should_trim`).
    """

    async def read(
        self, feed: BaseFeed[Any], start: int, stop: int | None, query: Query
    ) -> list[Any]:
        """Items ``[start:stop]`` of ``feed`` under ``query``."""
        ...

    async def before_removal(self, feed: BaseFeed[Any], ids: Sequence[int]) -> None:
        """The feed's reader removes ``ids`` (called before the feed's own timeline
        loses them): no later read may show them again."""
        ...

    async def settle(self, feed: BaseFeed[Any]) -> None:
        """The feed is about to be trimmed or deleted: whatever its reads show besides
        its own timeline must be in it, so the trim or the delete reaches it."""
        ...

    def subscribe(
        self, feed: BaseFeed[Any], own: AbstractAsyncContextManager[Subscription], buffer: int
    ) -> AbstractAsyncContextManager[Subscription]:
        """``feed.subscribe()``: ``own`` (the feed's own updates), or more."""
        ...


class BaseFeed(Generic[ItemT]):
    """A flat feed stored under ``key_format % {"user_id": ...}``.

    Subclass it and set class attributes; bind it to a backend by subclassing a backend
    feed (``RedisFeed``, ``CassandraFeed``: they set :attr:`storage_backend`) or by
    passing ``storage=``. Without either it uses the process-wide in-memory storage.

    The feed is generic in what its reads return (``await feed[:n]``,
    :meth:`get_activity_slice`, ``async for``): :class:`~aiostream.activity.Activity` by
    default; a feed of your own activity class says so for type checkers with
    ``class MyFeed(BaseFeed[MyActivity])`` (and ``activity_class = MyActivity``, which is
    what reads build). ``BaseFeed[Any]`` is any feed, aggregated ones included.

    The feed holds activity ids and shows the activity storage's payloads, so an update
    of a stored activity shows at once, and an activity deleted from the activity storage
    (:meth:`remove_activity`) is never shown: reads pass over it, a page of n holds n
    activities whenever n remain, ``async for`` yields every one, and the entries a read
    passes over are removed from the feed. :meth:`count` counts entries, those of deleted
    activities included until a read passes over them.

    Args:
        user_id: Whose feed (an int or a str; escaped in the key).
        storage: Storage to use instead of the class's default.
        metrics: Metrics sink to use instead of the class's :attr:`metrics`.
        read_hook: What reads, removals, trims and subscriptions go through (a
            :class:`ReadHook`; a Manager with a materialization policy gives its flat
            feeds one); None: the feed's own timeline.

    Class attributes:
        key_format: Key template with ``%(user_id)s``.
        max_length: Entries kept when the feed is trimmed (100).
        trim_chance: Probability that a write also trims (0.01; 1.0 = always).
        activity_class: Class of the activities stored (subclasses accepted).
        page_size: Page size of ``async for``.
        metrics: Metrics sink of every feed of the class (default: no-op); an instance's
            ``metrics=`` argument overrides it.
        storage_backend: The backend of the storage used when none is passed
            (``"memory"``; ``RedisFeed`` sets ``"redis"``, ``CassandraFeed``
            ``"cassandra"``), found in :mod:`aiostream.storage.registry`.
        storage_server: Which of that backend's servers (``"default"``).
        required_capabilities: What the storage must declare beyond the required core
            (:class:`~aiostream.storage.base.Capability`; aggregated feeds: groups),
            checked when a feed is built.
        keeps_copies: Whether the feed keeps its own copies of activities, which an
            update must rewrite (:meth:`fanout_update`); flat feeds show the activity
            storage's payload, so the Manager sends them no update jobs.
    """

    key_format: ClassVar[str] = "feed_%(user_id)s"
    max_length: ClassVar[int] = 100
    trim_chance: ClassVar[float] = 0.01
    activity_class: ClassVar[type[Activity]] = Activity
    verbs: ClassVar[VerbRegistry] = default_registry
    filtering_supported: ClassVar[bool] = True
    ordering_supported: ClassVar[bool] = True
    page_size: ClassVar[int] = 100
    metrics: Metrics = noop_metrics
    storage_backend: ClassVar[str] = "memory"
    keeps_copies: ClassVar[bool] = False
    storage_server: ClassVar[str] = "default"
    required_capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(
        self,
        user_id: int | str | uuid.UUID,
        *,
        storage: FeedStorage | None = None,
        metrics: Metrics | None = None,
        read_hook: ReadHook | None = None,
    ) -> None:
        self.user_id = user_id
        self.key = format_key(self.key_format, user_id)
        # An unknown backend or server fails here, not later.
        bound = self.default_storage() if storage is None else storage
        self._storage = storage
        if metrics is not None:
            self.metrics = metrics
        self.read_hook = read_hook
        if self.required_capabilities:
            # Checked once, here, so a storage without one fails naming what it lacks,
            # not with an AttributeError mid-write (every fanout path builds the
            # follower's feed first, so it is checked there too).
            require(bound, *sorted(self.required_capabilities), for_=type(self).__name__)
        self._query = Query()

    @property
    def storage(self) -> FeedStorage:
        """The storage passed in, or else the class's :meth:`default_storage`, looked up
        at each call (so a feed made outside a running loop uses the storage of the loop
        it is used in)."""
        return self._storage if self._storage is not None else self.default_storage()

    @storage.setter
    def storage(self, storage: FeedStorage | None) -> None:
        self._storage = storage

    @property
    def io(self) -> FeedStorage:
        """:attr:`storage` for the feed's own calls: timed when the metrics sink wants
        storage timings (:func:`~aiostream.storage.timing.timed_storage`), itself otherwise."""
        return self._io_for(self.storage, self.metrics)

    @classmethod
    def default_storage(cls) -> FeedStorage:
        """The storage of :attr:`storage_backend` / :attr:`storage_server` in the current
        registry (:func:`aiostream.storage.registry.current_storages`)."""
        return default_storage(cls.storage_backend, cls.storage_server)

    @classmethod
    def get_activity_serializer(cls) -> ActivitySerializer[Activity]:
        """Serializer for this feed's ``activity_class``."""
        return ActivitySerializer(cls.activity_class, cls.verbs)

    @classmethod
    def serialize_activities(cls, activities: Iterable[Activity]) -> list[Entry]:
        """Validate and serialize; raises before anything is written."""
        serializer = cls.get_activity_serializer()
        return [(serializer.check(a).serialization_id, serializer.dumps(a)) for a in activities]

    @classmethod
    def should_trim(cls, trim: bool = True) -> bool:
        """Whether this write trims: ``trim`` and a draw under :attr:`trim_chance`."""
        return trim and random.random() < cls.trim_chance

    # -- writing -----------------------------------------------------------------------------

    async def add(self, activity: Activity) -> None:
        """Add one activity (see :meth:`add_many`)."""
        await self.add_many([activity])

    async def add_many(self, activities: Iterable[Activity], trim: bool = True) -> None:
        """Add activities to this feed and to the activity storage, in one batch.

        Adding an activity that is already there changes nothing, and an add never
        changes a stored activity (see :meth:`admit`).

        Raises:
            SerializationError: an activity is of the wrong class or cannot be stored.
            ActivityConflictError: another activity is stored under one of the ids
                (nothing is written).
        """
        activities = list(activities)
        entries = self.serialize_activities(activities)
        if not entries:
            return
        max_length = self.max_length if self.should_trim(trim) else None
        io, keys = self.io, [self.key]
        await self.write_new(
            io, lambda e: io.add_to_timelines(keys, e, max_length=max_length, store=True), entries
        )
        await self._announce(self.io, [self.key], "added", [i for i, _ in entries])
        self.metrics.on_feed_write(type(self).__name__, len(entries))
        await _maybe_await(self.on_update_feed(new=activities, deleted=[]))

    async def remove(self, activity: Activity | int | str) -> None:
        """Remove one activity (or id: an int, or the decimal str ``to_dict()`` sent) from
        this feed."""
        await self.remove_many([activity])

    async def remove_many(self, activities: Iterable[Activity | int | str]) -> None:
        """Remove activities (or their ids, ints or decimal strs) from this feed; missing
        ones are ignored.

        The activity storage keeps them (other feeds may still show them); use
        :meth:`remove_activity` to delete them there.
        """
        ids = _ids_of(activities)
        if ids and self.read_hook is not None:
            # A reader's removal: no read through the hook may bring them back.
            await self.read_hook.before_removal(self, ids)
        await self._remove_ids(ids)

    async def _remove_ids(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        await self.io.remove_from_timelines([self.key], ids)
        await self._announce(self.io, [self.key], "removed", ids)
        self.metrics.on_feed_remove(type(self).__name__, len(ids))
        await _maybe_await(self.on_update_feed(new=[], deleted=ids))

    def on_update_feed(self, new: Sequence[Any], deleted: Sequence[Any]) -> Any:
        """Hook called after each write (may be ``async def``); does nothing by default."""
        return None

    # -- realtime updates (aiostream.realtime) ------------------------------------------------

    def subscribe(
        self, *, buffer: int = DEFAULT_BUFFER
    ) -> AbstractAsyncContextManager[Subscription]:
        """The updates of this feed, as they happen, whichever process writes it.

        Example::

            async with feed.subscribe() as updates:
                async for update in updates:
                    print(update.kind, update.activity_ids)

        A flat feed of a Manager whose policy pulls producers (their posts are written
        to no follower's feed: reads merge them in) also hears, as its own, the
        ``added``, ``removed`` and ``updated`` updates of the user feeds of whom its
        owner follows when the subscription starts: one channel more per followee
        (see :func:`aiostream.realtime.relayed`).

        Args:
            buffer: Updates held for a slow reader; one more replaces them with a
                single ``gap`` update (read the feed again).

        Raises:
            ConfigurationError: the storage carries no updates (Cassandra without a
                ``notifier``).
        """
        require(self.storage, Capability.UPDATES, for_=f"{type(self).__name__}.subscribe")
        own = self.io.subscribe(self.key, buffer=buffer)
        if self.read_hook is None:
            return own
        return self.read_hook.subscribe(self, own, buffer)

    @classmethod
    def _update_counts(cls) -> tuple[bool, bool]:
        """Which counts (unseen, unread) this class's updates carry."""
        return (False, False)

    @classmethod
    async def _announce(
        cls,
        io: FeedStorage,
        keys: Sequence[str],
        kind: UpdateKind,
        ids: Sequence[int] = (),
        groups: Sequence[str] = (),
    ) -> None:
        """Tell the subscribers of ``keys`` what was written. The write is done: an
        update that cannot be sent is logged, not raised (a subscriber learns of lost
        updates from the ``gap`` its reconnection gives)."""
        if not keys or not has(io, Capability.UPDATES):
            return  # no feeds, or a storage that declares no realtime updates
        try:
            if not await io.listening():
                return  # nobody subscribes: nothing to build, nothing to time
            update = template(kind, ids, groups)
            await io.publish_updates(keys, update, counts=cls._update_counts())
        except StorageError as exc:
            realtime_logger.warning(
                "%s update of %d %s feeds not sent: %s", kind, len(keys), cls.__name__, exc
            )

    @classmethod
    async def write_new(
        cls,
        io: FeedStorage,
        write: Callable[[list[Entry]], Awaitable[dict[int, str]]],
        entries: list[Entry],
    ) -> None:
        """Store new activities in ``io`` with ``write`` (``add_to_timelines(...,
        store=True)`` or ``store_activities(..., only_new=True)``), which writes nothing
        and returns the stored payloads when some differ from the entries'.

        Raises:
            ActivityConflictError: another activity is stored under one of the ids.
            ConflictError: the stored payloads kept changing under the write.
        """
        differ = await write(entries)
        # Stored before with other payloads, so nothing was written: with the same content
        # (and only then), again with the stored payloads, first widened to the new `to`
        # targets where the add brings some. Twice at most: a third difference is another
        # writer changing them meanwhile.
        for _ in range(2):
            if not differ:
                return
            entries = cls.get_activity_serializer().admit(entries, differ)
            widened = [(i, p) for i, p in entries if i in differ and p != differ[i]]
            if widened:
                await io.store_activities(widened)
            differ = await write(entries)
        if differ:
            raise ConflictError.given_up(logger, f"activities {sorted(differ)} keep changing")

    @classmethod
    async def admit(cls, io: FeedStorage, entries: list[Entry]) -> list[Entry]:
        """The serialized ``entries`` an add may store in ``io``: those not stored yet,
        and those stored with the same content (kept as stored, ``to`` targets joined).
        A check that writes nothing (an import checks every chunk before the first);
        adds write with :meth:`write_new`.

        Raises:
            ActivityConflictError: another activity is stored under one of the ids.
        """
        if not entries:
            return entries
        stored = await io.load_activities([activity_id for activity_id, _ in entries])
        return cls.get_activity_serializer().admit(entries, stored) if stored else entries

    @hybridmethod
    async def insert_activities(target: Any, activities: Iterable[Activity]) -> None:
        """Store activities in the activity storage only (no timeline); an activity
        stored with the same content changes nothing (see :meth:`admit`)."""
        io = _storage_of(target)
        entries = target.serialize_activities(activities)
        await target.write_new(io, functools.partial(io.store_activities, only_new=True), entries)

    @hybridmethod
    async def insert_activity(target: Any, activity: Activity) -> None:
        """Store one activity in the activity storage only."""
        await target.insert_activities([activity])

    @hybridmethod
    async def remove_activity(target: Any, activity: Activity | int) -> None:
        """Delete one activity (or id) from the activity storage.

        Flat feeds stop showing it at once, on every backend (their entries go when a
        read passes over them); aggregated and notification groups keep the copy they
        embed (remove it from them with ``remove`` or ``Manager.remove_user_activity``).
        """
        await _storage_of(target).delete_activities(_ids_of([activity]))

    # -- batch path (fanout) -------------------------------------------------------------------

    @classmethod
    async def fanout_add(
        cls,
        user_ids: Sequence[int | str],
        activities: Sequence[Activity],
        *,
        storage: FeedStorage | None = None,
        trim: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        """Add ``activities`` to the feeds of all ``user_ids``: one storage call for a flat
        feed class (and for an aggregated one on a storage that merges groups itself).

        The activities must already be in the activity storage (the Manager stores them
        once before fanning out). ``metrics`` (default: the class's) times the storage
        calls. Every user id is checked before any feed is written.
        """
        await cls._fanout_add(FanoutBatch.of(cls, user_ids, activities, storage, metrics, trim))

    @classmethod
    async def fanout_remove(
        cls,
        user_ids: Sequence[int | str],
        activities: Sequence[Activity],
        *,
        storage: FeedStorage | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """Remove ``activities`` from the feeds of all ``user_ids`` (flat feeds: in one
        storage call)."""
        await cls._fanout_remove(FanoutBatch.of(cls, user_ids, activities, storage, metrics))

    @classmethod
    async def fanout_update(
        cls,
        user_ids: Sequence[int | str],
        activities: Sequence[Activity],
        *,
        storage: FeedStorage | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """Make the feeds of ``user_ids`` show the stored version of ``activities`` where
        they hold them, and add them nowhere else.

        Nothing to write for flat feeds: they read the activity storage, which the
        Manager has updated. Aggregated feeds rewrite the copies their groups embed.
        """
        await cls._fanout_update(FanoutBatch.of(cls, user_ids, activities, storage, metrics))

    # What each feed kind does with a fanout (the public methods above check the ids and
    # build the batch once for all kinds).

    @classmethod
    async def _fanout_add(cls, batch: FanoutBatch) -> None:
        activities = batch.activities
        # A chunk's payloads were made by this class's serializer: written as they are.
        entries = activities.entries if isinstance(activities, StoredActivities) else None
        if entries is None:
            entries = cls.serialize_activities(activities)
        if entries and batch.keys:
            max_length = cls.max_length if cls.should_trim(batch.trim) else None
            await batch.io.add_to_timelines(batch.keys, entries, max_length=max_length, store=False)
            await cls._announce(batch.io, batch.keys, "added", [i for i, _ in entries])

    @classmethod
    async def _fanout_remove(cls, batch: FanoutBatch) -> None:
        ids = _ids_of(batch.activities)
        if ids and batch.keys:
            await batch.io.remove_from_timelines(batch.keys, ids)
            await cls._announce(batch.io, batch.keys, "removed", ids)

    @classmethod
    async def _fanout_update(cls, batch: FanoutBatch) -> None:
        # Nothing to write (flat feeds read the activity storage); the Manager sends
        # flat feeds an update job only while someone listens, for this.
        await cls._announce(batch.io, batch.keys, "updated", _ids_of(batch.activities))

    @classmethod
    def _io_for(cls, storage: FeedStorage | None, metrics: Metrics | None) -> FeedStorage:
        """``storage`` (None: the class's default) timed for ``metrics`` (None: the
        class's sink): the one place a feed binds a storage to its sink."""
        bound = cls.default_storage() if storage is None else storage
        return timed_storage(bound, cls.metrics if metrics is None else metrics)

    # -- reading -----------------------------------------------------------------------------

    def __getitem__(self, key: int | slice) -> Coroutine[Any, Any, list[ItemT]]:
        """``await feed[:10]``, ``await feed[5:10]``; ``await feed[i]`` is a list of at most
        one item, as in the Stream Framework API. Bounds are checked here, before any I/O."""
        start, stop = check_slice(key)
        return self.get_activity_slice(start, stop)

    async def get_activity_slice(self, start: int = 0, stop: int | None = None) -> list[ItemT]:
        """Items ``[start:stop]`` under the feed's filter and ordering."""
        if stop is not None and stop <= start:
            return []
        with stopwatch() as elapsed:
            items = await self._read(start, stop, self._query)
        self.metrics.on_feed_read(type(self).__name__, len(items), elapsed[0])
        return items

    async def _read(self, start: int, stop: int | None, query: Query) -> list[Any]:
        if self.read_hook is not None:
            return await self.read_hook.read(self, start, stop, query)
        return await self.read_stored(start, stop, query)

    async def read_stored(self, start: int, stop: int | None, query: Query) -> list[Any]:
        """The page as stored in this feed's own timeline."""
        entries = await self.io.read_timeline(self.key, start, stop, query)
        return self.get_activity_serializer().loads_entries(entries)

    def __iter__(self) -> Iterator[Any]:
        """Refused: a feed is read with ``await``; without this, ``for`` would fall back
        to ``__getitem__`` with ints and never end."""
        raise TypeError(
            f"{type(self).__name__} is not iterable: use `async for item in feed` "
            "or `await feed[:n]`"
        )

    def __contains__(self, item: object) -> bool:
        """Refused for the same reason as :meth:`__iter__` (membership needs I/O)."""
        raise TypeError(
            f"`in` does not work on {type(self).__name__}: use `await feed.index_of(item)` "
            "(or `await feed.contains(activity)` on aggregated feeds)"
        )

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        """Every item, page by page (``page_size``), keyed on ids so writes in between
        neither repeat nor skip items (every live activity: see the class docstring)."""
        async for item in self._paged(self._read):
            yield item

    async def _paged(
        self, read: Callable[[int, int | None, Query], Awaitable[list[Any]]]
    ) -> AsyncIterator[Any]:
        """:meth:`__aiter__` with pages read by ``read``."""
        size = self.page_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            name = type(self).__name__
            raise ConfigurationError(f"page_size of {name} must be an int >= 1, got {size!r}")
        query = self._query
        while True:
            page = await read(0, size, query)
            if not page:
                return
            for item in page:
                yield item
            last = page[-1].serialization_id
            query = (
                query.filter(activity_id__lt=last)
                if query.descending
                else query.filter(activity_id__gt=last)
            )

    def filter(self: F, **filters: Any) -> F:
        """A copy of this feed narrowed by ``activity_id__gt/__gte/__lt/__lte``.

        Raises:
            InvalidQueryError: unknown keyword or non-int value (checked now).
        """
        clone = copy.copy(self)
        clone._query = self._query.filter(**filters)
        return clone

    def order_by(self: F, *fields: str) -> F:
        """A copy ordered by ``'activity_id'`` (oldest first) or ``'-activity_id'``."""
        clone = copy.copy(self)
        clone._query = self._query.order_by(*fields)
        return clone

    async def count(self) -> int:
        """Number of entries in the feed (filters do not apply).

        Entries of activities deleted from the activity storage count until a read
        passes over them (reads never show them, and remove the ones they pass over).
        """
        return await self.io.count_timeline(self.key)

    async def index_of(self, activity: Any) -> int:
        """Position of an item (an activity, a group or an id), 0 being the newest.

        Raises:
            ActivityNotFoundError: it is not in the feed.
        """
        (activity_id,) = _ids_of([activity])
        index = await self._position(activity_id)
        if index is None:
            raise ActivityNotFoundError(f"{activity_id} is not in feed {self.key!r}")
        return index

    async def _position(self, item_id: int) -> int | None:
        return await self.io.timeline_index_of(self.key, item_id)

    async def page(
        self,
        limit: int | str = 25,
        *,
        before: int | str | None = None,
        after: int | str | None = None,
        max_limit: int = 100,
    ) -> Page[ItemT]:
        """One page of the feed and the cursor of the next, for an API: ``limit``,
        ``before`` and ``after`` may come straight from a query string.

        ``before=`` (or no cursor) reads newest first the items older than ``before``;
        ``after=`` reads oldest first the items newer than ``after`` (what arrived since
        a page was shown). Without a cursor the page follows the feed's ordering
        (``feed.order_by("activity_id").page()`` starts at the oldest item). Each
        page's :attr:`Page.next` goes back as the same keyword; paging to the end yields
        what ``[item async for item in feed]`` yields, and writes in between neither
        repeat nor skip an item that was there throughout (ids only go one way past a
        cursor). The page is read through the feed's own read path (its filters, a
        Manager's read hook), so it shows what ``await feed[:limit]`` would.

        Args:
            limit: Items per page, ``1..max_limit``: an int or its decimal str.
            before: A cursor (an id as an int or as its decimal str, as ``to_dict()``
                and :attr:`Page.next` write it); None or ``""``: from the newest item.
            after: A cursor for an oldest-first page; not with ``before``.
            max_limit: The largest ``limit`` accepted (a client asks, the server bounds).

        Returns:
            The :class:`Page`: ``items`` and ``next`` (None on the last page).

        Raises:
            InvalidQueryError: naming ``limit``, ``before`` or ``after`` (a
                :class:`~aiostream.exceptions.ValidationError`): a limit that is not an
                int in ``1..max_limit``, a cursor that is not an id, or both cursors;
                checked before any I/O.

        Example::

            page = await feed.page(limit=25, before=request.query.get("before"))
            return {"items": [a.to_dict() for a in page.items], "next": page.next}
        """
        count = _page_limit(limit, max_limit)
        low, high = _page_cursor(after, "after"), _page_cursor(before, "before")
        if low is not None and high is not None:
            raise InvalidQueryError("after", "give before or after, not both")
        query = self
        if high is not None:
            query = self.filter(activity_id__lt=high).order_by("-activity_id")
        elif low is not None:
            query = self.filter(activity_id__gt=low).order_by("activity_id")
        # One more than asked: whether a next page exists, without a count.
        items = await query.get_activity_slice(0, count + 1)
        more, items = len(items) > count, items[:count]
        cursor = str(items[-1].serialization_id) if more else None  # type: ignore[attr-defined]
        return Page(items, cursor, query._query.descending)

    # -- maintenance ---------------------------------------------------------------------------

    async def trim(self, length: int | None = None) -> None:
        """Keep only the newest ``length`` (default ``max_length``) entries."""
        length = _length(length, self.max_length)
        if self.read_hook is not None:  # what reads merge in is trimmed too
            await self.read_hook.settle(self)
        await self.io.trim_timeline(self.key, length)

    async def delete(self) -> None:
        """Delete the whole feed (the activity storage is left alone)."""
        if self.read_hook is not None:  # what reads merge in is deleted too
            await self.read_hook.settle(self)
        await self.io.delete_feeds([self.key])

    async def remove_actors(self, actor_ids: Iterable[ItemId]) -> None:
        """Remove every activity by one of ``actor_ids`` (used by unfollow): actors are
        matched as users are, by their id's text (``7`` and ``"7"``, a UUID and its str,
        are one user, as they are one feed)."""
        actors = {str(a) for a in actor_ids}
        # The feed's own timeline, never through a Manager's policy: the library's own
        # reads are no user's (no rebuild, no read recorded).
        read = self.read_stored if self.read_hook is not None else self._read
        doomed = [
            a
            async for item in self._paged(read)
            for a in self.inner_activities(item)
            if str(a.actor_id) in actors
        ]
        if self.read_hook is not None:  # the unfollow's removal, not the reader's
            await self._remove_ids(_ids_of(doomed))
        else:
            await self.remove_many(doomed)

    @staticmethod
    def inner_activities(item: Any) -> list[Activity]:
        """The activities an item read from this feed stands for."""
        return [item]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r}>"


class UserBaseFeed(BaseFeed[ItemT]):
    """The feed of a user's own activities: kept long (``max_length`` 10**6)."""

    key_format: ClassVar[str] = "user_feed:%(user_id)s"
    max_length: ClassVar[int] = 10**6


def _ids_of(items: Iterable[Any]) -> list[int]:
    """The ids of activities, groups, int ids or the decimal str ids ``to_dict()`` sends
    (a client removes or marks what it was shown by the ids it got)."""
    ids: list[int] = []
    for item in listed(items, "activities", "a list of activities or ids"):
        if isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        elif isinstance(item, str):
            ids.append(parse_id(item, "activities"))
        elif hasattr(item, "serialization_id"):
            ids.append(item.serialization_id)
        else:
            raise ValidationError(
                "activities",
                f"expected activities, int ids or their decimal strs, got {type(item).__name__}",
            )
    return ids


def _length(length: int | None, default: int) -> int:
    if length is None:
        return default
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValidationError("length", f"expected a non-negative int, got {length!r}")
    return length


def _page_limit(limit: object, max_limit: int) -> int:
    """:meth:`BaseFeed.page`'s ``limit``, from an int or a query string's text."""
    if isinstance(max_limit, bool) or not isinstance(max_limit, int) or max_limit < 1:
        raise InvalidQueryError("max_limit", f"expected an int >= 1, got {max_limit!r}")
    value = limit
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_limit:
        shown = _shown(limit)
        raise InvalidQueryError("limit", f"expected an int from 1 to {max_limit}, got {shown}")
    return value


def _page_cursor(cursor: object, field: str) -> int | None:
    """A cursor of :meth:`BaseFeed.page`: an id, as an int or the decimal str ``str(id)``
    gives (what ``to_dict()`` and :attr:`Page.next` send); None or ``""`` for none."""
    if cursor is None or cursor == "":
        return None
    return parse_id(cursor, field, error=InvalidQueryError)


def _shown(value: object) -> str:
    """A client's value in an error message: its repr, cut short (it may be huge)."""
    if not isinstance(value, int | str):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}..."
