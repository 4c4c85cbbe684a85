"""Activities: who did what to which object, when; and groups of them.

An :class:`Activity` follows the activity-stream vocabulary: actor, verb, object,
optional target, time and ``extra_context``. An :class:`AggregatedActivity` is a group of
activities that an aggregator decided belong together ("alice and 3 others loved your
pin"); a :class:`NotificationActivity` is one that also knows whether it was seen / read.

Example::

    >>> import datetime as dt
    >>> from aiostream import Activity, Love
    >>> a = Activity(13, Love, 42, time=dt.datetime(2024, 5, 1, 12, 0))
    >>> (a.actor_id, a.verb.past_tense, a.object_id, a.target_id)
    (13, 'loved', 42, None)
    >>> a.time.isoformat()
    '2024-05-01T12:00:00+00:00'
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self, cast

from aiostream._text import lone_surrogate, unwritable_int
from aiostream.exceptions import (
    ActivityNotFoundError,
    DuplicateActivityError,
    UnknownVerbError,
    ValidationError,
)
from aiostream.group_format import Capabilities, DeclaresCapabilities
from aiostream.ids import check_time, make_id
from aiostream.verbs import Verb, VerbRegistry, default_registry

__all__ = [
    "Activity",
    "AggregatedActivity",
    "DehydratedActivity",
    "MAX_AGGREGATED_ACTIVITIES_LENGTH",
    "NotificationActivity",
    "group_key",
    "utcnow",
]

MAX_AGGREGATED_ACTIVITIES_LENGTH = 15
_LAZY_FIELDS = ("actor", "object", "target")
# What AggregatedActivity.append, the stock merge rule, depends on (see server_mergeable).
_MERGE_RULE = ("append", "copy", "contains", "activity_ids", "serialization_id")


def group_key(group: object) -> str:
    """A group key as stored: a str, or an int (as Stream Framework's aggregators may
    return) in its decimal form.

    Raises:
        ValidationError: any other type, or a str holding a lone surrogate (which no
            storage can hold).
    """
    if isinstance(group, str):
        problem = lone_surrogate(group)
        if problem is not None:
            raise ValidationError("group", problem)
        return group
    if isinstance(group, int) and not isinstance(group, bool):
        problem = unwritable_int(group)
        if problem is not None:
            raise ValidationError("group", problem)
        return str(group)
    raise ValidationError("group", f"expected a str or an int, got {type(group).__name__}")


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def _object_id(field: str, value: Any, *, required: bool) -> tuple[int | None, Any]:
    """Split an actor / object / target argument into ``(id, object or None)``."""
    if value is None:
        if required:
            raise ValidationError(field, "is required, got None")
        return None, None
    if isinstance(value, bool):
        raise ValidationError(field, "expected an int id or an object with an int .id, got bool")
    if isinstance(value, int):
        return _checked_id(field, value), None
    ident = getattr(value, "id", None)
    if isinstance(ident, int) and not isinstance(ident, bool):
        return _checked_id(field, ident), value
    raise ValidationError(
        field, f"expected an int id or an object with an int .id, got {type(value).__name__}"
    )


def _checked_id(field: str, value: int) -> int:
    problem = unwritable_int(value)
    if problem is not None:
        raise ValidationError(field, problem)
    return value


def _resolve_verb(verb: Any, verbs: VerbRegistry) -> type[Verb]:
    if verb is None:
        raise ValidationError("verb", "is required, got None")
    if isinstance(verb, int) and not isinstance(verb, bool):
        return verbs.get(verb)
    if isinstance(verb, Verb):
        verb = type(verb)
    if isinstance(verb, type) and issubclass(verb, Verb):
        if not verbs.is_registered(verb):
            raise UnknownVerbError(verb.id)
        return verb
    raise ValidationError("verb", f"expected a registered Verb class or id, got {verb!r}")


class Activity(DeclaresCapabilities):
    """One thing that happened: ``actor`` did ``verb`` to ``object`` (on ``target``).

    Args:
        actor: Int id of the actor, or an object with an int ``id``.
        verb: A registered :class:`~aiostream.verbs.Verb` subclass (or its int id).
        object: Int id of the object, or an object with an int ``id``.
        target: Optional int id / object (e.g. the board a pin was added to).
        time: When it happened, from 1970 to 2112 (:data:`~aiostream.ids.MIN_TIME` ..
            :data:`~aiostream.ids.MAX_TIME`, the times ids can encode). Naive datetimes are
            taken as UTC; the stored time is always an aware UTC datetime. Defaults to now.
        extra_context: JSON-compatible dict (plus datetimes, dates, Decimals, UUIDs).

    Raises:
        ValidationError: a required field is missing or of the wrong type, or ``time`` is
            out of range.
        UnknownVerbError: the verb is not registered.

    Class attributes:
        inline_from_storage: Whether serializers may build this class's activities read
            from storage the way the stock :meth:`from_storage` does, without calling it
            (the read path of every feed). True here; a subclass that overrides
            :meth:`from_storage` gets False unless it sets it in its own body.
    """

    inline_from_storage: ClassVar[bool] = True
    capability_rules: ClassVar[Capabilities] = {"inline_from_storage": ("from_storage",)}

    def __init__(
        self,
        actor: Any,
        verb: Any,
        object: Any,
        target: Any = None,
        time: dt.datetime | None = None,
        extra_context: Mapping[str, Any] | None = None,
        *,
        verbs: VerbRegistry = default_registry,
    ) -> None:
        actor_id, actor_obj = _object_id("actor", actor, required=True)
        object_id, object_obj = _object_id("object", object, required=True)
        self.actor_id: int = cast(int, actor_id)
        self.object_id: int = cast(int, object_id)
        self.target_id: int | None
        self.target_id, target_obj = _object_id("target", target, required=False)
        for name, obj in zip(_LAZY_FIELDS, (actor_obj, object_obj, target_obj), strict=True):
            if obj is not None:
                setattr(self, name, obj)
        self.verb: type[Verb] = _resolve_verb(verb, verbs)
        if time is None:
            time = utcnow()
        elif not isinstance(time, dt.datetime):
            raise ValidationError("time", f"expected a datetime, got {type(time).__name__}")
        self.time: dt.datetime = check_time(time)
        if extra_context is None:
            extra_context = {}
        elif not isinstance(extra_context, Mapping):
            raise ValidationError(
                "extra_context", f"expected a dict, got {type(extra_context).__name__}"
            )
        self.extra_context: dict[str, Any] = dict(extra_context)
        self.dehydrated = False

    @classmethod
    def from_storage(
        cls,
        actor_id: int,
        verb: type[Verb],
        object_id: int,
        target_id: int | None,
        time: dt.datetime,
        extra_context: dict[str, Any],
    ) -> Self:
        """Rebuild an activity from trusted stored fields, skipping validation (the read
        path of every feed). Override it if a subclass sets more state in ``__init__``."""
        activity = cls.__new__(cls)
        # Set one by one, in __init__'s order: the values stay inline in the object.
        activity.actor_id = actor_id
        activity.object_id = object_id
        activity.target_id = target_id
        activity.verb = verb
        activity.time = time
        activity.extra_context = extra_context
        activity.dehydrated = False
        return activity

    def __getattr__(self, name: str) -> Any:
        # Only reached when the attribute is missing: actor / object / target were given as ids.
        if name in _LAZY_FIELDS:
            raise AttributeError(f"Field self.{name} is not defined, use self.{name}_id instead")
        raise AttributeError(name)

    def keep_id(self, activity_id: int) -> None:
        """Take ``activity_id`` as the id of the current fields instead of computing it:
        for an activity read back with the id it was stored under (a storage keeps the
        ids it was given). Changing a field later computes the id again."""
        fields = (self.time, self.actor_id, self.verb.id, self.object_id, self.target_id)
        self.__dict__["_id_cache"] = (fields, activity_id)

    @property
    def serialization_id(self) -> int:
        """Unique, exactly ordered id: the time in microseconds, then a digest of
        actor, verb, object and target (see :mod:`aiostream.ids`)."""
        fields = (self.time, self.actor_id, self.verb.id, self.object_id, self.target_id)
        cached = self.__dict__.get("_id_cache")
        if cached is not None and cached[0] == fields:
            return cached[1]  # type: ignore[no-any-return]
        time, actor_id, verb_id, object_id, target_id = fields
        activity_id = make_id(time, f"a|{actor_id}|{verb_id}|{object_id}|{target_id}")
        # Cached with the fields it was made from: reassigning a field recomputes it.
        self.__dict__["_id_cache"] = (fields, activity_id)
        return activity_id

    @property
    def activity_id(self) -> int:
        """Alias of :attr:`serialization_id`, the name feed filters use."""
        return self.serialization_id

    def get_dehydrated(self) -> DehydratedActivity:
        """A reference to this activity that holds only its id."""
        return DehydratedActivity(self.serialization_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activity):
            return NotImplemented
        return self.serialization_id == other.serialization_id

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Activity):
            return NotImplemented
        return self.serialization_id < other.serialization_id

    def __hash__(self) -> int:
        return hash(self.serialization_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self.verb.past_tense}) {self.actor_id} {self.object_id}>"


class DehydratedActivity:
    """An activity known only by its id, hydrated from a mapping of loaded activities."""

    dehydrated = True

    def __init__(self, serialization_id: int) -> None:
        self.serialization_id = int(serialization_id)

    def get_hydrated(self, activities: Mapping[int, Activity]) -> Activity:
        """Return the full activity from ``activities`` (keyed by serialization id).

        Raises:
            ActivityNotFoundError: ``activities`` lacks this id.
        """
        try:
            return activities[self.serialization_id]
        except KeyError:
            raise ActivityNotFoundError(
                f"activity {self.serialization_id} is not in the activity storage"
            ) from None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DehydratedActivity | Activity):
            return self.serialization_id == other.serialization_id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.serialization_id)

    def __repr__(self) -> str:
        return f"<DehydratedActivity {self.serialization_id}>"


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class AggregatedActivity(DeclaresCapabilities):
    """A group of activities shown as one entry ("alice and 3 others loved your pin").

    Holds the newest ``max_aggregated_activities_length`` activities (in id order, oldest
    first) and counts the older ones it let go in ``minimized_activities``.
    :meth:`append` is the merge rule of aggregated feeds.

    Args:
        group: The aggregator's group key (e.g. ``"3-2024-05-01"``).
        activities: Initial activities, appended in order.
        created_at: When the group was created (defaults to its first activity's time).
        updated_at: When it last changed (defaults to its newest activity's time).

    Class attributes:
        max_aggregated_activities_length: Activities a group keeps (15).
        server_mergeable: Whether a storage may merge activities into stored groups of
            this class itself, applying a copy of :meth:`append` (Redis does, in one
            script; see :class:`~aiostream.storage.base.GroupMergeStorage`). True here;
            a subclass that overrides :meth:`append`, :meth:`copy`, :meth:`contains`,
            :attr:`activity_ids` or :attr:`serialization_id` gets False (its feeds read
            the groups and write them back) unless it sets it in its own body.

    Example::

        >>> import datetime as dt
        >>> from aiostream import Activity, AggregatedActivity, Love
        >>> t = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
        >>> group = AggregatedActivity("3-2024-05-01")
        >>> for actor in (1, 2, 3):
        ...     group.append(Activity(actor, Love, 42, time=t))
        >>> group.actor_count, group.other_actor_count, group.is_seen()
        (3, 2, False)
    """

    max_aggregated_activities_length: ClassVar[int] = MAX_AGGREGATED_ACTIVITIES_LENGTH
    server_mergeable: ClassVar[bool] = True
    capability_rules: ClassVar[Capabilities] = {"server_mergeable": _MERGE_RULE}

    def __init__(
        self,
        group: str | int,
        activities: Iterable[Activity] | None = None,
        created_at: dt.datetime | None = None,
        updated_at: dt.datetime | None = None,
    ) -> None:
        self.group = group_key(group)
        self.activities: list[Activity] = []
        self.created_at = None if created_at is None else check_time(created_at, "created_at")
        self.updated_at = None if updated_at is None else check_time(updated_at, "updated_at")
        self.seen_at: dt.datetime | None = None
        self.read_at: dt.datetime | None = None
        self.minimized_activities = 0
        self.dehydrated = False
        self._activity_ids: list[int] = []
        for activity in activities or ():
            self.append(activity)

    # -- identity -------------------------------------------------------------------------

    @property
    def serialization_id(self) -> int:
        """Exactly ordered by ``updated_at`` (microseconds), unique per group."""
        if self.updated_at is None:
            raise ValidationError("updated_at", "an empty group has no serialization_id")
        return make_id(self.updated_at, f"g|{self.group}")

    @property
    def activity_id(self) -> int:
        """Alias of :attr:`serialization_id`, the name feed filters use."""
        return self.serialization_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AggregatedActivity):
            return NotImplemented
        return (
            self.group == other.group
            and self.activity_ids == other.activity_ids
            and self.minimized_activities == other.minimized_activities
            and self.created_at == other.created_at
            and self.updated_at == other.updated_at
            and self.seen_at == other.seen_at
            and self.read_at == other.read_at
        )

    def __hash__(self) -> int:
        return hash(self.group)

    def __len__(self) -> int:
        return len(self._activity_ids) if self.dehydrated else len(self.activities)

    def copy(self) -> AggregatedActivity:
        """A copy whose activity list can change without touching this one."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.activities = list(self.activities)
        clone._activity_ids = list(self._activity_ids)
        return clone

    # -- dehydration ----------------------------------------------------------------------

    def get_dehydrated(self) -> AggregatedActivity:
        """A copy that keeps only the activity ids (this object is left as it is)."""
        if self.dehydrated:
            raise ValidationError("aggregated", "is already dehydrated")
        clone = self.copy()
        clone._activity_ids = [a.serialization_id for a in self.activities]
        clone.activities = []
        clone.dehydrated = True
        return clone

    def get_hydrated(self, activities: Mapping[int, Activity]) -> AggregatedActivity:
        """A hydrated copy, its activities looked up in ``activities`` by id.

        Raises:
            ActivityNotFoundError: an id is missing from ``activities``.
        """
        if not self.dehydrated:
            raise ValidationError("aggregated", "is not dehydrated")
        clone = self.copy()
        clone.activities = [
            DehydratedActivity(i).get_hydrated(activities) for i in self._activity_ids
        ]
        clone._activity_ids = []
        clone.dehydrated = False
        return clone

    # -- membership -----------------------------------------------------------------------

    @property
    def activity_ids(self) -> list[int]:
        """Ids of the activities held (oldest first)."""
        if self.dehydrated:
            return list(self._activity_ids)
        return [a.serialization_id for a in self.activities]

    def contains(self, activity: Activity | int) -> bool:
        """Whether the group holds ``activity`` (an Activity or its serialization id)."""
        if isinstance(activity, Activity):
            wanted = activity.serialization_id
        elif isinstance(activity, int) and not isinstance(activity, bool):
            wanted = activity
        else:
            raise ValidationError(
                "activity", f"expected an Activity or an int id, got {type(activity).__name__}"
            )
        return wanted in self.activity_ids

    def append(self, activity: Activity) -> None:
        """Add ``activity`` in time order; past the length cap the oldest is minimized.

        Raises:
            DuplicateActivityError: the group already holds it.
        """
        if not isinstance(activity, Activity):
            raise ValidationError(
                "activity", f"expected an Activity, got {type(activity).__name__}"
            )
        if self.contains(activity):
            raise DuplicateActivityError(f"{activity!r} is already in group {self.group!r}")
        # Kept in id order whatever the arrival order, so concurrent or retried writers
        # converge on the same group; the cap then drops the oldest.
        bisect.insort(self.activities, activity, key=lambda a: a.serialization_id)
        if self.created_at is None or activity.time < self.created_at:
            self.created_at = activity.time
        if self.updated_at is None or activity.time > self.updated_at:
            self.updated_at = activity.time
        if len(self.activities) > self.max_aggregated_activities_length:
            self.activities.pop(0)
            self.minimized_activities += 1

    def remove(self, activity: Activity | int) -> None:
        """Remove ``activity``; ``updated_at`` falls back to the newest one left.

        Raises:
            ActivityNotFoundError: the group does not hold it.
            ValidationError: it is the last activity (delete the group instead).
        """
        if not self.contains(activity):
            raise ActivityNotFoundError(f"{activity!r} is not in group {self.group!r}")
        if len(self.activities) == 1:
            raise ValidationError("activity", "is the last one of its group; delete the group")
        wanted = activity.serialization_id if isinstance(activity, Activity) else activity
        self.activities = [a for a in self.activities if a.serialization_id != wanted]
        self.updated_at = max(a.time for a in self.activities)

    def remove_many(self, activities: Sequence[Activity | int]) -> list[Activity | int]:
        """Remove those of ``activities`` the group holds; returns the ones removed."""
        removed: list[Activity | int] = []
        for activity in activities:
            try:
                self.remove(activity)
            except ActivityNotFoundError:
                continue
            removed.append(activity)
        return removed

    # -- summaries ------------------------------------------------------------------------

    @property
    def activity_count(self) -> int:
        """Activities ever in the group, minimized ones included."""
        return self.minimized_activities + len(self)

    @property
    def actor_ids(self) -> list[int]:
        """Distinct actors of the held activities, oldest first."""
        return _unique(a.actor_id for a in self.activities)

    @property
    def actor_count(self) -> int:
        """Distinct actors held plus minimized activities (an upper bound, as in the seed)."""
        return self.minimized_activities + len(self.actor_ids)

    @property
    def other_actor_count(self) -> int:
        """``actor_count - 1``: the "and N others" of a notification."""
        return self.actor_count - 1

    @property
    def object_ids(self) -> list[int]:
        """Distinct objects of the held activities, oldest first."""
        return _unique(a.object_id for a in self.activities)

    @property
    def verbs(self) -> list[type[Verb]]:
        """Distinct verbs of the held activities, oldest first."""
        return _unique(a.verb for a in self.activities)

    @property
    def verb(self) -> type[Verb]:
        """The verb of the first held activity."""
        return self.activities[0].verb

    @property
    def last_activity(self) -> Activity:
        """The newest held activity."""
        return self.activities[-1]

    @property
    def last_activities(self) -> list[Activity]:
        """Held activities, newest first."""
        return list(reversed(self.activities))

    # -- seen / read ------------------------------------------------------------------------

    def is_seen(self) -> bool:
        """True when marked seen at or after the last update."""
        return (
            self.seen_at is not None
            and self.updated_at is not None
            and self.seen_at >= self.updated_at
        )

    def is_read(self) -> bool:
        """True when marked read at or after the last update."""
        return (
            self.read_at is not None
            and self.updated_at is not None
            and self.read_at >= self.updated_at
        )

    def update_seen_at(self) -> None:
        """Mark seen now (on this object; notification feeds persist marks themselves)."""
        self.seen_at = utcnow()

    def update_read_at(self) -> None:
        """Mark read now (on this object; notification feeds persist marks themselves)."""
        self.read_at = utcnow()

    def __repr__(self) -> str:
        if self.dehydrated:
            return f"Dehydrated {type(self).__name__} ({self._activity_ids})"
        verbs = ",".join(v.infinitive for v in self.verbs)
        return (
            f"{type(self).__name__}({self.group}-{verbs}) "
            f"Actors {self.actor_ids}: Objects {self.object_ids}"
        )


class NotificationActivity(AggregatedActivity):
    """An aggregated activity read from a notification feed.

    The feed's markers decide :meth:`is_seen` / :meth:`is_read` for it; on a group that
    did not come from a notification feed they fall back to ``seen_at`` / ``read_at``.
    """

    # Set by the feed that read the group; None when it did not come from one.
    marked_seen: bool | None = None
    marked_read: bool | None = None

    def is_seen(self) -> bool:
        """Seen according to the feed's markers (or ``seen_at`` when not from a feed)."""
        return super().is_seen() if self.marked_seen is None else self.marked_seen

    def is_read(self) -> bool:
        """Read according to the feed's markers (or ``read_at`` when not from a feed)."""
        return super().is_read() if self.marked_read is None else self.marked_read
