"""Groups of activities shown as one entry (see :mod:`aiostream.activity`)."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self

from aiostream._text import lone_surrogate, unwritable_int
from aiostream.activity._json_types import (
    AggregatedActivityDict,
    IdTypes,
    NotificationActivityDict,
)
from aiostream.activity._json_view import (
    IdReader,
    check_same,
    check_same_ids,
    check_verb_name,
    check_view_id,
    checked_view,
    encode_id,
    format_optional_time,
    parse_optional_time,
    read_count,
    required,
    reraise_nested,
)
from aiostream.activity._single import Activity, DehydratedActivity, utcnow
from aiostream.exceptions import ActivityNotFoundError, DuplicateActivityError, ValidationError
from aiostream.group_format import Capabilities, DeclaresCapabilities
from aiostream.ids import ID_KEY_WIDTH, check_time, id_to_key, make_id
from aiostream.verbs import Verb, VerbRegistry, default_registry

MAX_AGGREGATED_ACTIVITIES_LENGTH = 15
# What AggregatedActivity.append, the stock merge rule, depends on (see server_mergeable).
_MERGE_RULE = ("append", "copy", "contains", "let_go", "activity_ids", "serialization_id")


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


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class UnbuiltActivities(Protocol):
    """A group's activities as a storage returned them, not built yet.

    A serializer hands one to :meth:`AggregatedActivity.defer_activities`; the group
    answers its summaries from it and builds the activities when they are first
    touched. Every list is in the group's order, oldest first.
    """

    def __len__(self) -> int: ...

    def activity_ids(self) -> list[int]:
        """The activities' serialization ids."""
        ...

    def actor_ids(self) -> list[Any]:
        """Each activity's ``actor_id`` (repeats kept)."""
        ...

    def object_ids(self) -> list[Any]:
        """Each activity's ``object_id`` (repeats kept)."""
        ...

    def verbs(self) -> list[type[Verb]]:
        """Each activity's verb (repeats kept)."""
        ...

    def last(self) -> Activity:
        """The newest activity, built alone (:meth:`build` then returns this object)."""
        ...

    def build(self) -> list[Activity]:
        """Every activity, built once: each call returns a new list of the same objects."""
        ...


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
        self._activities: list[Activity] = []
        self._stored: UnbuiltActivities | None = None
        self.created_at = None if created_at is None else check_time(created_at, "created_at")
        self.updated_at = None if updated_at is None else check_time(updated_at, "updated_at")
        self.seen_at: dt.datetime | None = None
        self.read_at: dt.datetime | None = None
        self.minimized_activities = 0
        # The ids of the activities let go, as fixed-width hex keys, ascending, in one
        # string (what the stored form holds): a membership test is a binary search on
        # it, and a group read from storage never parses it unless it is merged into.
        self.minimized_keys = ""
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
        if self.dehydrated:
            return len(self._activity_ids)
        stored = self._stored
        return len(self._activities) if stored is None else len(stored)

    def copy(self) -> AggregatedActivity:
        """A copy whose activity list can change without touching this one (activities
        not built yet stay so: both build the same objects when first touched)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._activities = list(self._activities)
        clone._activity_ids = list(self._activity_ids)
        return clone

    # -- activities, built when first touched ----------------------------------------------

    @property
    def activities(self) -> list[Activity]:
        """The activities held, oldest first (a group read from storage builds them here,
        the first time they are asked for)."""
        stored = self._stored
        if stored is not None:
            self._activities = stored.build()
            self._stored = None
        return self._activities

    @activities.setter
    def activities(self, activities: list[Activity]) -> None:
        self._activities = activities
        self._stored = None

    def defer_activities(self, stored: UnbuiltActivities) -> None:
        """Hold ``stored`` instead of built activities: summaries (ids, actors, objects,
        verbs, counts, the last activity) are answered from it, and :attr:`activities`
        builds the rest when first touched. For serializers reading groups back."""
        self._activities = []
        self._stored = stored

    @property
    def activities_built(self) -> bool:
        """Whether :attr:`activities` holds built objects (False until a group read from
        storage is first asked for them)."""
        return self._stored is None

    # -- dehydration ----------------------------------------------------------------------

    def get_dehydrated(self) -> AggregatedActivity:
        """A copy that keeps only the activity ids (this object is left as it is)."""
        if self.dehydrated:
            raise ValidationError("aggregated", "is already dehydrated")
        clone = self.copy()
        clone._activity_ids = self.activity_ids
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
        if self._stored is not None:
            return self._stored.activity_ids()
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
        if self.contains(activity) or self.let_go(activity.serialization_id):
            raise DuplicateActivityError(f"{activity!r} is already in group {self.group!r}")
        # Kept in id order whatever the arrival order, so concurrent or retried writers
        # converge on the same group; the cap then drops the oldest.
        bisect.insort(self.activities, activity, key=lambda a: a.serialization_id)
        if self.created_at is None or activity.time < self.created_at:
            self.created_at = activity.time
        if self.updated_at is None or activity.time > self.updated_at:
            self.updated_at = activity.time
        if len(self.activities) > self.max_aggregated_activities_length:
            dropped = self.activities.pop(0)
            self.minimized_activities += 1
            # Remembered, so a retried or repeated delivery of it is not counted again.
            key = id_to_key(dropped.serialization_id)
            at = self._dropped_index(key)
            self.minimized_keys = self.minimized_keys[:at] + key + self.minimized_keys[at:]

    def _dropped_index(self, key: str) -> int:
        """Where ``key`` is or would go in :attr:`minimized_keys` (a string offset)."""
        keys, width = self.minimized_keys, ID_KEY_WIDTH
        lo, hi = 0, len(keys) // width
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid * width : (mid + 1) * width] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo * width

    def let_go(self, activity_id: int) -> bool:
        """Whether the group counted ``activity_id`` and then let it go (minimized it)."""
        key = id_to_key(activity_id)
        at = self._dropped_index(key)
        return self.minimized_keys[at : at + ID_KEY_WIDTH] == key

    @property
    def minimized_ids(self) -> list[int]:
        """Ids of the activities the group let go that it remembers, ascending (groups
        stored before it remembered them count more in ``minimized_activities``).
        Bookkeeping of the stored form: equality and the JSON view leave them out."""
        keys, width = self.minimized_keys, ID_KEY_WIDTH
        return [int(keys[i : i + width], 16) for i in range(0, len(keys), width)]

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
        if self._stored is not None:
            return _unique(self._stored.actor_ids())
        return _unique(a.actor_id for a in self.activities)

    @property
    def actor_count(self) -> int:
        """Distinct actors held plus minimized activities (an upper bound, as in Stream
        Framework)."""
        return self.minimized_activities + len(self.actor_ids)

    @property
    def other_actor_count(self) -> int:
        """``actor_count - 1``: the "and N others" of a notification."""
        return self.actor_count - 1

    @property
    def object_ids(self) -> list[int]:
        """Distinct objects of the held activities, oldest first."""
        if self._stored is not None:
            return _unique(self._stored.object_ids())
        return _unique(a.object_id for a in self.activities)

    @property
    def verbs(self) -> list[type[Verb]]:
        """Distinct verbs of the held activities, oldest first."""
        if self._stored is not None:
            return _unique(self._stored.verbs())
        return _unique(a.verb for a in self.activities)

    @property
    def verb(self) -> type[Verb]:
        """The verb of the first held activity."""
        if self._stored is not None:
            return self._stored.verbs()[0]
        return self.activities[0].verb

    @property
    def last_activity(self) -> Activity:
        """The newest held activity."""
        if self._stored is not None:
            return self._stored.last()
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

    # -- the JSON view -------------------------------------------------------------------

    def to_dict(self) -> AggregatedActivityDict:
        """The group as JSON-ready data (``json.dumps`` takes it as it is), typed as an
        :class:`~aiostream.activity.AggregatedActivityDict` (a plain dict at run time) so
        that a type checker and a ``response_model=`` know its keys; a group read from
        storage builds its activities for it.

        Keys: ``"id"`` (:attr:`serialization_id` as a str), ``"group"``, ``"verb"`` and
        ``"verb_id"`` (of :attr:`verb`), ``"activity_count"``, ``"actor_count"``,
        ``"actor_ids"``, ``"created_at"``, ``"updated_at"``, ``"seen_at"`` and
        ``"read_at"`` (ISO 8601 in UTC with a trailing ``Z``, or None),
        ``"minimized_activities"`` and ``"activities"`` (each activity's
        :meth:`~aiostream.activity.Activity.to_dict`, oldest first as held). Actor ids are
        written as :meth:`~aiostream.activity.Activity.to_dict` writes ids, a wide int or
        a UUID named in ``"id_types"`` (``{"actor_ids.3": "uuid"}``).

        Raises:
            ValidationError: the group is dehydrated or empty (it has nothing to show),
                or an activity's ``extra_context`` has no JSON form.
        """
        if self.dehydrated:
            raise ValidationError("aggregated", "is dehydrated: it holds only activity ids")
        activities = self.activities
        if not activities:
            raise ValidationError("activities", "an empty group has no JSON view")
        id_types: IdTypes = {}
        verb = self.verb
        data: AggregatedActivityDict = {
            "id": str(self.serialization_id),
            "group": self.group,
            "verb": verb.infinitive,
            "verb_id": verb.id,
            "activity_count": self.activity_count,
            "actor_count": self.actor_count,
            "actor_ids": [
                encode_id(actor, f"actor_ids.{i}", id_types)
                for i, actor in enumerate(self.actor_ids)
            ],
            "created_at": format_optional_time(self.created_at),
            "updated_at": format_optional_time(self.updated_at),
            "seen_at": format_optional_time(self.seen_at),
            "read_at": format_optional_time(self.read_at),
            "minimized_activities": self.minimized_activities,
            "activities": [activity.to_dict() for activity in activities],
        }
        if id_types:
            data["id_types"] = id_types
        return data

    @classmethod
    def from_dict(
        cls,
        data: AggregatedActivityDict | Mapping[str, Any],
        *,
        activity_class: type[Activity] = Activity,
        verbs: VerbRegistry = default_registry,
    ) -> Self:
        """The group of a :meth:`to_dict` view (of this class: a subclass builds its own),
        equal to the group it was made of, with the same :attr:`serialization_id`.

        ``"group"`` and ``"activities"`` (at least one, at most
        ``max_aggregated_activities_length``) are required; the activities are appended
        (so held in id order). ``"created_at"`` and ``"updated_at"`` default to the
        activities' oldest and newest times, ``"seen_at"`` and ``"read_at"`` to None and
        ``"minimized_activities"`` to 0. What the view repeats (``"id"``, ``"verb"``,
        ``"verb_id"``, the counts, ``"actor_ids"``) must agree with the rebuilt group when
        given. Other keys are ignored.

        Args:
            data: The view.
            activity_class: Class the activities are built as (its ``from_dict``).
            verbs: Registry the activities' verb ids are looked up in.

        Raises:
            ValidationError: naming the bad field (``"updated_at"``,
                ``"activities.2.time"``, ``"id_types.actor_ids.0"``...), or the repeated
                field that disagrees (``"id"``, ``"actor_count"``...).
        """
        data = checked_view(data, "aggregated")
        group = cls(required(data, "group"))
        rows = required(data, "activities")
        if not isinstance(rows, list | tuple) or not rows:
            raise ValidationError("activities", f"expected a non-empty list, got {rows!r}")
        if len(rows) > cls.max_aggregated_activities_length:
            raise ValidationError(
                "activities",
                f"a group holds at most {cls.max_aggregated_activities_length}, got {len(rows)}",
            )
        for index, row in enumerate(rows):
            try:
                activity = activity_class.from_dict(row, verbs=verbs)
            except ValidationError as exc:
                reraise_nested(exc, f"activities.{index}")
            try:
                group.append(activity)
            except DuplicateActivityError:
                raise ValidationError(f"activities.{index}", "repeats an activity") from None
        for field in ("created_at", "updated_at"):
            when = parse_optional_time(data, field)
            if when is not None:
                setattr(group, field, when)
        group.seen_at = parse_optional_time(data, "seen_at")
        group.read_at = parse_optional_time(data, "read_at")
        group.minimized_activities = read_count(data, "minimized_activities", 0)
        group._check_view(data)
        return group

    def _check_view(self, data: Mapping[str, Any]) -> None:
        """Raise unless what ``data`` repeats agrees with this group, rebuilt from it."""
        check_view_id(data, self.serialization_id)
        check_verb_name(data, self.verb)
        check_same(data, "verb_id", self.verb.id)
        check_same(data, "activity_count", self.activity_count)
        check_same(data, "actor_count", self.actor_count)
        ids = IdReader(data)
        check_same_ids(data, "actor_ids", self.actor_ids, ids)
        ids.check_all_read()

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

    def to_dict(self) -> NotificationActivityDict:
        """:meth:`AggregatedActivity.to_dict` plus ``"is_seen"`` and ``"is_read"`` (what
        :meth:`is_seen` and :meth:`is_read` answer: the feed's markers when the group came
        from a notification feed), typed as a
        :class:`~aiostream.activity.NotificationActivityDict`.

        Raises:
            ValidationError: as :meth:`AggregatedActivity.to_dict` does.
        """
        return {**super().to_dict(), "is_seen": self.is_seen(), "is_read": self.is_read()}

    @classmethod
    def from_dict(
        cls,
        data: NotificationActivityDict | Mapping[str, Any],
        *,
        activity_class: type[Activity] = Activity,
        verbs: VerbRegistry = default_registry,
    ) -> Self:
        """:meth:`AggregatedActivity.from_dict`; ``"is_seen"`` and ``"is_read"``, when
        given, become the group's markers (``marked_seen`` / ``marked_read``), so the
        rebuilt group answers :meth:`is_seen` and :meth:`is_read` as the one viewed did.

        Raises:
            ValidationError: as :meth:`AggregatedActivity.from_dict` does, or naming
                ``is_seen`` / ``is_read`` when it is not a bool.
        """
        group = super().from_dict(data, activity_class=activity_class, verbs=verbs)
        for field, marker in (("is_seen", "marked_seen"), ("is_read", "marked_read")):
            value = data.get(field)
            if value is None:
                continue
            if not isinstance(value, bool):
                raise ValidationError(field, f"expected a bool, got {value!r}")
            setattr(group, marker, value)
        return group
