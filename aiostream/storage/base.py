"""What feeds need from a storage backend: a small required core, and optional
capabilities a backend declares.

A backend stores activities, timelines and (optionally) groups, leases and states, all
addressed by a *feed key* (the feed's formatted ``key_format``, already escaped so it
never contains ``:{}%`` from user input).

**The required core** (:class:`CoreStorage`, 12 methods) is what a backend writes to
hold flat feeds, and all a third-party backend must write before it stores its first
activity:

* an **activity storage** shared by all feeds: ``id -> payload``
  (:class:`ActivityStorage`);
* **timelines** (flat feeds): ordered sets of activity ids, newest first
  (:class:`TimelineStorage`);
* ``delete_feeds``, ``ping`` (the readiness probe calls it on every storage: a no-op
  without a server) and ``aclose``.

**Optional capabilities**, one Protocol each, name what else a backend can do and what
that enables (:data:`ENABLES`). A backend lists those it implements in its
``capabilities`` class attribute (:class:`Capability`); what needs one checks the
declaration once, when it is given the storage (:func:`require`), and fails there with
a :class:`~aiostream.exceptions.ConfigurationError` naming what is missing, instead of
an ``AttributeError`` in the middle of a write. Optional fast paths ask :func:`has`
(a set lookup) instead of probing for methods:

* ``groups`` (:class:`GroupStorage`): aggregated and notification feeds;
* ``leases`` (:class:`~aiostream.leases.LeaseStorage`): follows and unfollows through
  a Manager (one at a time per user);
* ``states`` (:class:`StateStorage`): states and maxima, which materialization policies
  keep (:mod:`aiostream.materialize`);
* ``group_merge`` (:class:`GroupMergeStorage`): an aggregated add merged into the
  groups of a whole fanout chunk on the server, in one call;
* ``merged_read`` (:class:`MergedReadStorage`): a selectively materialized feed's page
  merged from many feeds in one step;
* ``updates`` (:class:`UpdateStorage`): realtime updates (``feed.subscribe()``).

:class:`FeedStorage` is the core with groups, leases, states and updates: what every
built-in backend implements, and what the feeds and the Manager are typed against.

The methods take many keys or many items at once so each backend can batch its own way
(one Redis pipeline or script, concurrent Cassandra statements). In particular:

* :meth:`TimelineStorage.add_to_timelines` writes a set of activities into a whole
  chunk of follower feeds, trimming each, in one call: the fanout path;
* :meth:`TimelineStorage.read_timeline` returns a page *with payloads*: one round trip
  (on Cassandra: the page, then its activities);
* :meth:`GroupStorage.write_groups` is a compare-and-set over several groups of one
  feed, so concurrent writers on one aggregated feed never lose each other's updates;
  :meth:`GroupMergeStorage.merge_groups` (optional) merges activities into the groups
  of a whole chunk of feeds on the server, the aggregated fanout path;
* :meth:`GroupStorage.update_groups` rewrites groups of a whole chunk of feeds in place
  (an activity's update reaching the copies groups embed).

A timeline entry points at the activity storage: a flat feed shows the stored payload,
and never an activity deleted from the activity storage (reads skip such entries, fill
the window from the entries after them, and remove them from the timeline). Groups embed
their activities and never read the activity storage.

Payloads are opaque strings made by :mod:`aiostream.serializers`. Ids are ints below
``2**104`` (see :mod:`aiostream.ids`). The in-memory storage is the reference
implementation; the behaviour suite runs every backend against the same expectations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from math import isfinite
from types import MappingProxyType
from typing import Literal, NamedTuple, Protocol, overload, runtime_checkable

from typing_extensions import TypeIs, get_protocol_members

from aiostream.exceptions import ConfigurationError, ValidationError
from aiostream.leases import LeaseStorage
from aiostream.query import Query
from aiostream.realtime import DEFAULT_BUFFER, FeedUpdate, Subscription

__all__ = [
    "ActivityStorage",
    "Capability",
    "CoreStorage",
    "ENABLES",
    "Entry",
    "FeedStorage",
    "GroupChange",
    "GroupChanges",
    "GroupMerge",
    "GroupMergeStorage",
    "GroupRecord",
    "GroupRewrite",
    "GroupStorage",
    "LeaseStorage",
    "LiveWindow",
    "MergedPage",
    "MergedReadStorage",
    "PROTOCOLS",
    "StateStorage",
    "TimelineStorage",
    "UpdateStorage",
    "capabilities_of",
    "check_maxima",
    "check_times",
    "has",
    "methods_of",
    "renews",
    "require",
    "stored_differently",
]

Entry = tuple[int, str]
"""``(activity id, payload)``."""

GroupChanges = Sequence["GroupChange"]
"""What :meth:`GroupStorage.write_groups` applies in one compare-and-set."""

GroupRewrite = Callable[[str, "GroupRecord"], str | None]
"""``(feed key, stored group) -> new payload``, or ``None`` to leave the group as it is
(see :meth:`GroupStorage.update_groups`)."""


class GroupRecord(NamedTuple):
    """One group of an aggregated feed as stored (immutable).

    A named tuple rather than a frozen dataclass: a page of 25 groups builds 25 of them,
    and a frozen dataclass costs 30 times as much to build.

    Attributes:
        group: The aggregator's group key; unique within a feed.
        id: The group's id (its ``serialization_id``); orders the feed.
        payload: The serialized aggregated activity.
        version: Bumped by every write of the group; compare-and-set checks it (the id
            alone cannot: adding an older activity leaves ``updated_at``, so the id, as is).
        unseen: Marker state (only filled when asked for).
        unread: Marker state (only filled when asked for).
    """

    group: str
    id: int
    payload: str
    version: int = 1
    unseen: bool = False
    unread: bool = False


@dataclass(frozen=True, slots=True)
class GroupChange:
    """Replace, create or delete one group, if it is still as the writer last saw it.

    Attributes:
        group: Group key.
        expected_version: The version the writer read (``None``: must not exist yet).
        new: The record to store (its ``version`` is ``expected_version + 1``, or 1), or
            ``None`` to delete the group.
        keeps_markers: The new record keeps the group's seen / read markers as they
            were (a removal: it brings nothing new to see). Otherwise a written group is
            unseen and unread when the feed tracks markers.
    """

    group: str
    expected_version: int | None
    new: GroupRecord | None
    keeps_markers: bool = False


@dataclass(frozen=True, slots=True)
class GroupMerge:
    """Activities to merge into one group, or the group to create (see
    :class:`GroupMergeStorage`).

    Attributes:
        group: Group key.
        header: What every stored payload of the group starts with
            (:func:`aiostream.serializers.group_header`); a stored payload that does not
            is in a format the storage cannot merge into.
        record: The record to store when the group does not exist yet (version 1).
        activities: ``(activity id, time in microseconds, stored activity)`` of the
            activities to merge, in id order.
    """

    group: str
    header: str
    record: GroupRecord
    activities: Sequence[tuple[int, int, str]]


class LiveWindow:
    """The ``[start:stop]`` window a timeline read fills while it passes over entries
    whose activity was deleted (see :meth:`TimelineStorage.read_timeline`): the first
    ``start`` live entries are skipped, then live ones taken until the page is full.
    Backends offer it their entries in feed order.

    Attributes:
        skip: Live entries still to pass before the page starts.
        want: Entries the page still lacks (``None``: no limit).
        page: The entries taken.
    """

    __slots__ = ("page", "skip", "want")

    def __init__(self, start: int, stop: int | None) -> None:
        self.skip = start
        self.want = None if stop is None else stop - start
        self.page: list[Entry] = []

    @property
    def full(self) -> bool:
        """Whether the page holds all it wants."""
        return self.want == 0

    def offer(self, activity_id: int, payload: str | None) -> bool:
        """Take the next entry (``payload`` None: its activity was deleted).

        Returns:
            False for an entry of a deleted activity (the caller removes it).
        """
        if payload is None:
            return False
        if self.skip:
            self.skip -= 1
        elif self.want != 0:
            self.page.append((activity_id, payload))
            if self.want is not None:
                self.want -= 1
        return True


@runtime_checkable
class GroupMergeStorage(Protocol):
    """A storage that merges activities into stored groups itself (optional).

    Aggregated feeds use it, when their aggregator and group class keep the stock
    merge rules, instead of reading the groups and writing them back with
    :meth:`GroupStorage.write_groups`: one atomic step instead of a read and a
    compare-and-set. The result must be exactly what that read-modify-write would
    store (the behaviour suite and the concurrency tests compare the two).
    """

    async def merge_groups(
        self,
        keys: Sequence[str],
        merges: Sequence[GroupMerge],
        *,
        cap: int,
        max_length: int | None,
        track_markers: bool,
        results: bool = True,
    ) -> list[list[tuple[bool, GroupRecord]] | None]:
        """Merge each :class:`GroupMerge` into every feed of ``keys``, atomically per
        feed, as ``AggregatedActivity.append`` of its activities (in order) to the stored
        group would, keeping ``cap`` activities per group; create the groups that do not
        exist. A fanout chunk of aggregated feeds is one call.

        A group that gains nothing (every activity already in it) is left as it is.
        Written groups get the next version and, with ``track_markers``, become unseen
        and unread under their new id (as with ``write_groups``); with ``max_length``
        each feed is then trimmed, unless nothing changed in it.

        Returns:
            Per feed, in ``keys`` order: ``(created, record)`` for each group written, in
            ``merges`` order (an empty list when ``results`` is false); ``None``, having
            written nothing to that feed, when one of its stored groups is in a format
            the storage cannot merge into (the caller then merges it itself).
        """
        ...


@runtime_checkable
class ActivityStorage(Protocol):
    """The activity storage shared by every feed of a backend: ``id -> payload``.

    Every method of this and the other storage protocols is a coroutine, safe to call
    concurrently from many tasks (and, for server backends, many processes)."""

    async def store_activities(
        self, entries: Sequence[Entry], *, only_new: bool = False
    ) -> dict[int, str]:
        """Insert or overwrite activities in the shared activity storage.

        Args:
            only_new: Never overwrite a stored activity (an add): when one is stored under
                an entry's id with another payload, write nothing at all.

        Returns:
            With ``only_new``, the stored payloads that differ from their entries', by
            id (then nothing was written); else ``{}``.
        """

    async def load_activities(self, ids: Sequence[int]) -> dict[int, str]:
        """Payloads of those ``ids`` that are stored (missing ones are left out)."""
        ...

    async def delete_activities(self, ids: Sequence[int]) -> None:
        """Remove activities from the shared activity storage.

        Flat feeds stop showing them at once (see
        :meth:`TimelineStorage.read_timeline`); groups keep the copies they embed.
        """


@runtime_checkable
class TimelineStorage(Protocol):
    """Flat feeds: ordered sets of activity ids, newest first, pointing at the activity
    storage."""

    async def add_to_timelines(
        self, keys: Sequence[str], entries: Sequence[Entry], *, max_length: int | None, store: bool
    ) -> dict[int, str]:
        """Add every entry to every feed in ``keys`` (idempotent).

        Args:
            keys: Feed keys to write to.
            entries: Activities to add.
            max_length: When given, trim each feed to its newest ``max_length`` entries
                atomically with the add.
            store: Also write ``entries`` into the activity storage in the same batch,
                never after a timeline points at them: a read that met an entry before
                its activity is stored would take it for a deleted one. An add never
                overwrites a stored activity: when one is stored under an entry's id
                with another payload, nothing at all is written.

        Returns:
            With ``store``, the stored payloads that differ from their entries', by id
            (then nothing was written: the caller compares them, see
            :meth:`~aiostream.serializers.ActivitySerializer.admit`); else ``{}``.
        """

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        """Remove activity ids from every feed in ``keys`` (missing ones are ignored)."""

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        """The ``[start:stop]`` window of the feed's live entries under ``query``, with
        the activity storage's payloads.

        An entry whose activity was deleted from the activity storage is not shown: the
        window is taken from the entries that remain (``start`` counts live entries, a
        window of n holds n entries whenever n live ones follow it) and every such entry
        the read passes over is removed from the timeline. Entries are checked in one
        step with the page, so a page without such entries costs nothing more.
        """
        ...

    async def count_timeline(self, key: str) -> int:
        """Number of entries in the feed: including those whose activity was deleted
        from the activity storage, until a read passes over them."""
        ...

    async def trim_timeline(self, key: str, max_length: int) -> None:
        """Keep only the newest ``max_length`` entries."""

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        """Position of ``activity_id`` counted from the newest (``None`` if absent), over
        the entries :meth:`count_timeline` counts."""
        ...


@runtime_checkable
class GroupStorage(Protocol):
    """Aggregated and notification feeds: at most one record per group name, ordered by
    the group's id, each with an unseen and an unread marker."""

    async def read_groups(
        self, key: str, start: int, stop: int | None, query: Query, *, markers: bool
    ) -> list[GroupRecord]:
        """The ``[start:stop]`` window of groups under ``query`` (markers filled if asked)."""
        ...

    async def get_groups(self, key: str, groups: Sequence[str]) -> dict[str, GroupRecord]:
        """Current records of the named groups (absent ones left out)."""
        ...

    async def write_groups(
        self, key: str, changes: GroupChanges, *, max_length: int | None, track_markers: bool
    ) -> bool:
        """Apply ``changes`` atomically if every group still has its ``expected_version``.

        A written group loses the markers of its old id; with ``track_markers`` its new
        id becomes unseen and unread. A deleted group loses its markers. With
        ``max_length`` the feed is trimmed to its newest groups (markers included).

        Returns:
            ``False`` (and writes nothing) when some group changed since it was read.
        """
        ...

    async def update_groups(
        self, keys: Sequence[str], names: Sequence[str], rewrite: GroupRewrite, *, max_attempts: int
    ) -> None:
        """Rewrite the named groups of every feed in ``keys`` in place.

        For each group a feed holds, ``rewrite(key, record)`` gives its new payload (or
        ``None``: leave it). A new payload is stored with the next version under the same
        id: the group keeps its place and its markers. Compare-and-set per group: one
        written meanwhile is read again and rewritten again. Groups a feed does not hold
        are not created. Idempotent when ``rewrite`` is (a payload equal to the stored
        one is not written).

        Raises:
            ConflictError: a group kept changing for ``max_attempts`` attempts.
        """

    async def count_groups(self, key: str) -> int:
        """Number of groups in the feed."""
        ...

    async def trim_groups(self, key: str, max_length: int) -> None:
        """Keep only the newest ``max_length`` groups (and their markers)."""

    async def groups_index_of(self, key: str, group_id: int) -> int | None:
        """Position of a group id counted from the newest (``None`` if absent)."""
        ...

    async def mark_groups(
        self, key: str, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> None:
        """Clear the unseen (``seen``) and / or unread (``read``) markers of group ids
        (``None``: of every group in the feed)."""

    async def count_markers(self, key: str) -> tuple[int, int]:
        """``(unseen, unread)`` group counts of the feed."""
        ...


# Maxima are kept where an int is exact as a double too (Redis sorted-set scores).
MAX_MAXIMUM = 1 << 53


def stored_differently(stored: Mapping[int, str], entries: Sequence[Entry]) -> dict[int, str]:
    """The payloads of ``stored`` that differ from their entry's, by id (what
    :meth:`TimelineStorage.add_to_timelines` returns, from what a storage holds)."""
    return {
        activity_id: stored[activity_id]
        for activity_id, payload in entries
        if activity_id in stored and stored[activity_id] != payload
    }


def check_maxima(values: Mapping[str, int]) -> Mapping[str, int]:
    """``values`` for :meth:`StateStorage.raise_maxima`, checked.

    Raises:
        ValidationError: naming the member whose value is not an int in ``[0, 2**53)``.
    """
    for member, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_MAXIMUM:
            raise ValidationError(
                f"maxima[{member!r}]", f"expected an int in [0, 2**53), got {value!r}"
            )
    return values


def check_times(times: Mapping[str, float], before: float) -> Mapping[str, float]:
    """``times`` and ``before`` for :meth:`StateStorage.renew_states`, checked.

    Raises:
        ValidationError: naming the time (or ``before``) that is not a finite number.
    """
    for field, value in [*((f"times[{n!r}]", t) for n, t in times.items()), ("before", before)]:
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise ValidationError(field, f"expected a finite number, got {value!r}")
    return times


def renews(stored: str | None, before: float) -> bool:
    """Whether :meth:`StateStorage.renew_states` overwrites ``stored``: unless it is a
    time later than ``before`` (a value that is no number is overwritten). The Redis
    script decides the same way."""
    if stored is None:
        return True
    try:
        return not float(stored) > before
    except ValueError:
        return True


@runtime_checkable
class StateStorage(Protocol):
    """Small named values kept beside the feeds: when users last read, which feeds are
    stale, which producers are pulled, decayed rates (see :mod:`aiostream.materialize`).

    Names and values are short strings; a name is unique across the storage (the
    callers give them prefixes). Every method takes many names, so a backend batches
    them its own way.
    """

    async def load_states(self, names: Sequence[str]) -> dict[str, str]:
        """The values of ``names`` that are set (unset ones are left out)."""
        ...

    async def store_states(self, states: Mapping[str, str]) -> None:
        """Set each name to its value (overwriting)."""

    async def delete_states(self, names: Sequence[str]) -> None:
        """Unset ``names`` (unset ones are ignored)."""

    async def renew_states(
        self, times: Mapping[str, float], before: float, names: Sequence[str] = ()
    ) -> dict[str, str]:
        """Set each name of ``times`` to its time (as ``repr(time)``) unless it holds a
        time later than ``before`` (see :func:`renews`), and load ``names`` beside: a
        timestamp that many processes renew now and then, written at most once per
        interval, in the same round trip as the states read with it.

        Returns:
            The values the names of ``times`` and ``names`` held before (unset ones
            left out).

        Raises:
            ValidationError: a time or ``before`` that is not a finite number.
        """
        ...

    async def raise_maxima(self, name: str, values: Mapping[str, int]) -> dict[str, int]:
        """Keep, for each member of the set of maxima ``name``, the largest value it was
        ever given: a value below the kept one changes nothing, whoever wrote either,
        so writers in many processes need no lock. Values are ints in ``[0, 2**53)``.

        Returns:
            The maxima the members had before (those that had one): atomically on
            memory and Redis; on Cassandra read just before the write (a raise by
            another process in between may be missed)."""
        ...

    async def load_maxima(self, name: str, members: Sequence[str]) -> dict[str, int]:
        """The kept maximum of each of ``members`` of ``name`` that has one."""
        ...


class MergedPage(NamedTuple):
    """What :meth:`MergedReadStorage.read_merged` returns."""

    entries: list[Entry]
    """The page: at most ``stop`` entries, newest first."""
    joined: list[str]
    """The members of the set of maxima from the ``since``-th on, in joining order."""
    since: int
    """``known`` as the caller gave it, or 0 when the set no longer holds that many
    members (it was emptied since: the caller forgets those it knew)."""
    apart: list[list[Entry]] | None = None
    """Per member of ``joined``, the entries of its source that may reach the page, read
    as a source's would be but kept apart (none for a member named among the sources,
    or whose maximum is older than the page's last entry): the page of a reader who
    follows some of them is the first ``stop`` of the page and theirs together. None
    when the storage did not read them (too many joined)."""


@runtime_checkable
class MergedReadStorage(Protocol):
    """A storage that reads a page merged from many feeds in one step (optional).

    Selective materialization reads a follower's page as its own feed together with the
    user feeds of the producers it follows whose posts skipped followers: those in the
    set of maxima ``posted``. Such a storage keeps the members of each set of maxima in
    the order they joined, so a process can know them all without asking for each; a
    read names only the sources the caller knows to be in the set and tells it which
    joined since. Without this, the reader looks up every followee's maximum and reads
    the pages itself. The result must be exactly that (the materialization tests
    compare the two).
    """

    async def read_merged(
        self,
        key: str,
        sources: Sequence[str],
        maxima: str,
        stop: int,
        query: Query,
        known: int,
        *,
        floors: str | None = None,
        suffix: str = "",
    ) -> MergedPage | None:
        """The first ``stop`` live entries under ``query`` (newest first) of feed ``key``
        and the sources together, each entry once: what reading ``[0:stop]`` of each of
        them and merging would give. A source is named by its member in the set of
        maxima ``maxima`` (its timeline is the feed of that key followed by
        ``suffix``); it counts only if it has a maximum there, and its maximum bounds
        the time of what it gives: a source whose maximum is older than the page's last
        entry need not be read. With ``floors`` (another set of maxima, by the same
        members), a source gives only its entries of a later microsecond than its
        floor there.

        Returns:
            The page, and the members of ``maxima`` after the first ``known`` in the
            order they joined (all of them if it holds fewer), with the entries of a
            few of them apart (:attr:`MergedPage.apart`), read together (an empty
            page, of an empty query or ``stop <= 0``, reads and reports nothing);
            ``None`` when this storage cannot
            read it in one step (a Redis Cluster, an ascending query): the caller reads
            the pages itself.
        """
        ...


@runtime_checkable
class UpdateStorage(Protocol):
    """Realtime updates of feeds (see :mod:`aiostream.realtime`)."""

    async def listening(self) -> bool:
        """Whether anyone may subscribe to a feed here now (when not, writers skip
        building updates). May be a second late (see each backend)."""
        ...

    async def publish_updates(
        self,
        keys: Sequence[str],
        update: FeedUpdate,
        *,
        counts: tuple[bool, bool] = (False, False),
    ) -> None:
        """Announce ``update`` to the subscribers of each feed of ``keys`` (its ``feed``
        replaced by each key), with each notification feed's unseen and / or unread
        count when ``counts`` asks. Cheap when nobody subscribes."""

    def subscribe(
        self, key: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AbstractAsyncContextManager[Subscription]:
        """The updates of the feed ``key``, from the moment the context is entered.

        Raises:
            ConfigurationError: the storage cannot carry updates (Cassandra without a
                ``notifier``).
        """
        ...


@runtime_checkable
class CoreStorage(ActivityStorage, TimelineStorage, Protocol):
    """The required core: what a backend must implement to hold flat feeds, and all a
    feed needs from it until it uses an optional :class:`Capability`.

    12 methods: the activity storage's three, the timelines' six, and deleting feeds,
    the readiness probe and closing. ``ping`` stays required because
    :meth:`aiostream.connection.Connection.ping` asks every storage; a backend without
    a server makes it a no-op.
    """

    async def delete_feeds(self, keys: Sequence[str]) -> None:
        """Delete everything stored under each feed key: entries, and groups and markers
        where the storage keeps them."""

    async def ping(self) -> None:
        """Check that the server answers (a readiness probe); a no-op without a server.

        Raises:
            StorageUnavailableError: the server is down or refused the connection.
            StorageTimeoutError: it did not answer in time.
        """

    async def aclose(self) -> None:
        """Release connections this storage opened (injected clients are left open)."""


@runtime_checkable
class FeedStorage(
    CoreStorage,
    GroupStorage,
    LeaseStorage,
    StateStorage,
    UpdateStorage,
    Protocol,
):
    """The core with the groups, leases, states and updates capabilities: what every
    built-in backend implements (each declares them, see :class:`Capability`), and the
    type the feeds, the Manager and the registry are written against.

    A third-party backend need not implement all of it: the core
    (:class:`CoreStorage`) holds flat feeds, and whatever needs more checks the
    backend's declared capabilities when it is given the storage (:func:`require`).
    """


class Capability(StrEnum):
    """An optional part of the storage contract beyond :class:`CoreStorage`.

    A backend declares those it implements, once, in a class attribute::

        class MyStorage:
            capabilities: ClassVar[frozenset[Capability]] = frozenset(
                {Capability.GROUPS, Capability.LEASES}
            )

    so what needs one checks a set, once, instead of probing for methods on every call
    (:func:`require`, :func:`has`). Each value's Protocol is :data:`PROTOCOLS`'s, and
    what it enables :data:`ENABLES`'s. A storage that declares nothing has the core only.
    """

    GROUPS = "groups"
    LEASES = "leases"
    STATES = "states"
    GROUP_MERGE = "group_merge"
    MERGED_READ = "merged_read"
    UPDATES = "updates"


PROTOCOLS: Mapping[Capability, type] = MappingProxyType(
    {
        Capability.GROUPS: GroupStorage,
        Capability.LEASES: LeaseStorage,
        Capability.STATES: StateStorage,
        Capability.GROUP_MERGE: GroupMergeStorage,
        Capability.MERGED_READ: MergedReadStorage,
        Capability.UPDATES: UpdateStorage,
    }
)
"""The Protocol whose methods a backend declaring each capability implements."""

ENABLES: Mapping[Capability, str] = MappingProxyType(
    {
        Capability.GROUPS: "aggregated and notification feeds",
        Capability.LEASES: "follows and unfollows through a Manager",
        Capability.STATES: "materialization policies (states and maxima)",
        Capability.GROUP_MERGE: "aggregated adds merged on the server (optional fast path)",
        Capability.MERGED_READ: "merged reads of selectively materialized feeds "
        "(optional fast path)",
        Capability.UPDATES: "realtime updates (subscribe, publish_updates)",
    }
)
"""What each capability enables (error messages and the docs say it)."""


def methods_of(capability: Capability) -> frozenset[str]:
    """The method names of ``capability``'s Protocol (inherited ones included)."""
    return frozenset(get_protocol_members(PROTOCOLS[capability]))


def capabilities_of(storage: object) -> frozenset[Capability]:
    """The capabilities ``storage`` declares: none when it declares nothing (the core is
    all it promises). A wrapper that forwards attributes to another storage (the
    metrics' timed storage, test doubles) declares what the wrapped one does.

    Raises:
        ConfigurationError: ``capabilities`` holds something that is no capability.
    """
    declared = getattr(storage, "capabilities", None)
    if declared is None:
        return frozenset()
    try:
        return frozenset(Capability(c) for c in declared)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{type(storage).__qualname__}.capabilities must hold Capability values "
            f"({', '.join(c.value for c in Capability)}), got {declared!r}"
        ) from exc


@overload
def has(storage: object, capability: Literal[Capability.GROUPS]) -> TypeIs[GroupStorage]: ...
@overload
def has(storage: object, capability: Literal[Capability.LEASES]) -> TypeIs[LeaseStorage]: ...
@overload
def has(storage: object, capability: Literal[Capability.STATES]) -> TypeIs[StateStorage]: ...
@overload
def has(
    storage: object, capability: Literal[Capability.GROUP_MERGE]
) -> TypeIs[GroupMergeStorage]: ...
@overload
def has(
    storage: object, capability: Literal[Capability.MERGED_READ]
) -> TypeIs[MergedReadStorage]: ...
@overload
def has(storage: object, capability: Literal[Capability.UPDATES]) -> TypeIs[UpdateStorage]: ...
def has(storage: object, capability: Capability) -> bool:
    """Whether ``storage`` declares ``capability``: one set lookup, for an optional fast
    path asked on each call (a storage that can merge groups itself, one that carries
    updates). The declaration is trusted: :func:`require` is what checks the methods.
    """
    return capability in getattr(storage, "capabilities", ())


# (storage class, capability) pairs whose methods were found on the class itself: a
# feed built per follower of a fanout checks its storage without looking them up again.
_VERIFIED: set[tuple[type, Capability]] = set()


def require(storage: object, *capabilities: Capability, for_: str) -> None:
    """Check, once, when ``storage`` is given to what needs ``capabilities`` (``for_``
    names it, e.g. ``"AggregatedPinFeed"``), that the storage declares each of them and
    has its methods: a backend without one fails here, naming what is missing, rather
    than with an ``AttributeError`` halfway through a write.

    Raises:
        ConfigurationError: naming the storage, the missing capability (or method) and
            what needed it.
    """
    declared = getattr(storage, "capabilities", ())
    kind = type(storage)
    for capability in capabilities:
        if capability not in declared:
            raise ConfigurationError(
                f"{kind.__qualname__} does not declare the {capability.value!r} storage "
                f"capability ({PROTOCOLS[capability].__name__}), which {for_} needs: it "
                f"enables {ENABLES[capability]}. A backend that implements it lists "
                f"Capability.{capability.name} in its `capabilities` class attribute."
            )
        if (kind, capability) in _VERIFIED:
            continue
        missing = sorted(m for m in methods_of(capability) if not hasattr(storage, m))
        if missing:
            raise ConfigurationError(
                f"{kind.__qualname__} declares the {capability.value!r} storage capability, "
                f"which {for_} needs, but lacks {', '.join(missing)} "
                f"(see {PROTOCOLS[capability].__name__})"
            )
        if all(hasattr(kind, m) for m in methods_of(capability)):
            _VERIFIED.add((kind, capability))
