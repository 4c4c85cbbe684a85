"""One activity: who did what to which object, when (see :mod:`aiostream.activity`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeGuard, cast

from aiostream._text import lone_surrogate, unwritable_int
from aiostream.activity._json_types import ActivityDict, IdTypes
from aiostream.activity._json_view import (
    IdReader,
    check_view_id,
    checked_view,
    encode_id,
    format_time,
    json_context,
    parse_time,
    read_verb,
    required,
)
from aiostream.exceptions import (
    ActivityConflictError,
    ActivityNotFoundError,
    UnknownVerbError,
    ValidationError,
)
from aiostream.group_format import Capabilities, DeclaresCapabilities
from aiostream.ids import ItemId, check_time, foreign_activity_id, id_text, make_id
from aiostream.verbs import Verb, VerbRegistry, default_registry

_LAZY_FIELDS = ("actor", "object", "target")


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


_ID_TYPES = (int, str, uuid.UUID)
_EXPECTED_ID = "expected an int, str or UUID id, or an object with one as its .id"


def _is_id(value: object) -> TypeGuard[ItemId]:
    return isinstance(value, _ID_TYPES) and not isinstance(value, bool)


def _object_id(field: str, value: Any, *, required: bool) -> tuple[ItemId | None, Any]:
    """Split an actor / object / target argument into ``(id, object or None)``."""
    if value is None:
        if required:
            raise ValidationError(field, "is required, got None")
        return None, None
    if _is_id(value):
        return _checked_id(field, value), None
    ident = getattr(value, "id", None)
    if _is_id(ident):
        return _checked_id(field, ident), value
    raise ValidationError(field, f"{_EXPECTED_ID}, got {type(value).__name__}")


def _checked_id(field: str, value: ItemId) -> ItemId:
    if isinstance(value, str):
        problem = _text_problem(value)
    elif isinstance(value, int):
        problem = unwritable_int(value)
    else:
        problem = None  # a UUID
    if problem is not None:
        raise ValidationError(field, problem)
    return value


def _text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a str id or foreign id (None when it can)."""
    return "must not be empty" if not value else lone_surrogate(value)


def checked_foreign_id(value: object, field: str = "foreign_id") -> str:
    """``value`` if it can be a foreign id: a non-empty str that UTF-8 can encode.

    Raises:
        ValidationError: naming ``field``.
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"expected a non-empty str, got {type(value).__name__}")
    problem = _text_problem(value)
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


def _read_targets(value: object, ids: IdReader) -> tuple[tuple[str, int | str], ...]:
    """The ``"to"`` of a view: ``[feed name, user id]`` pairs (None: no targets).

    Raises:
        ValidationError: naming ``to`` or ``to.<i>``.
    """
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValidationError("to", f"expected a list of [feed, user id] pairs, got {value!r}")
    targets: list[tuple[str, int | str]] = []
    for index, pair in enumerate(value):
        where = f"to.{index}"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValidationError(where, f"expected a [feed name, user id] pair, got {pair!r}")
        name, user_id = pair
        if not isinstance(name, str) or not name:
            raise ValidationError(where, f"expected a feed name (a str), got {name!r}")
        user = ids.read(where, user_id)
        # A UUID user id names the feed its str names, as add_user_activity keeps it.
        targets.append((name, str(user) if isinstance(user, uuid.UUID) else user))
    return tuple(targets)


class Activity(DeclaresCapabilities):
    """One thing that happened: ``actor`` did ``verb`` to ``object`` (on ``target``).

    Args:
        actor: Id of the actor (an int, a non-empty str or a UUID: ``7``, ``"7"`` and
            ``UUID(...)`` are different actors), or an object with such an ``id``.
        verb: A registered :class:`~aiostream.verbs.Verb` subclass (or its int id).
        object: Id of the object, or an object with such an ``id`` (as ``actor``).
        target: Optional id / object (e.g. the board a pin was added to).
        time: When it happened, from 1970 to 2112 (:data:`~aiostream.ids.MIN_TIME` ..
            :data:`~aiostream.ids.MAX_TIME`, the times ids can encode). Naive datetimes are
            taken as UTC; the stored time is always an aware UTC datetime. Defaults to now.
        extra_context: JSON-compatible dict (plus datetimes, dates, Decimals, UUIDs).
        foreign_id: Optional non-empty str naming the activity in your own system
            (``"pin:42"``). With ``time`` it *is* the activity's identity: its id is made of
            the two (instead of actor, verb, object and target), so the calls that take a
            foreign id and a time find it without a lookup, and a second activity with the
            same foreign id and time is the same activity.

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
    # Set on the instance only when given: most activities have none, and read ones are
    # built without __init__.
    foreign_id: str | None = None
    to: tuple[tuple[str, int | str], ...] = ()
    """The feeds (``(feed name, user id)``) the activity was also written to when
    published with ``Manager.add_user_activity(..., to=...)``; set on activities read
    from the activity storage (flat feeds, ``get_activities``), not on the copies groups
    embed."""

    def __init__(
        self,
        actor: Any,
        verb: Any,
        object: Any,
        target: Any = None,
        time: dt.datetime | None = None,
        extra_context: Mapping[str, Any] | None = None,
        *,
        foreign_id: str | None = None,
        verbs: VerbRegistry = default_registry,
    ) -> None:
        actor_id, actor_obj = _object_id("actor", actor, required=True)
        object_id, object_obj = _object_id("object", object, required=True)
        self.actor_id: ItemId = cast("ItemId", actor_id)  # (required: never None)
        self.object_id: ItemId = cast("ItemId", object_id)
        self.target_id: ItemId | None
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
        if foreign_id is not None:
            self.foreign_id = checked_foreign_id(foreign_id)

    @classmethod
    def from_storage(
        cls,
        actor_id: ItemId,
        verb: type[Verb],
        object_id: ItemId,
        target_id: ItemId | None,
        time: dt.datetime,
        extra_context: dict[str, Any],
        foreign_id: str | None = None,
    ) -> Self:
        """Rebuild an activity from trusted stored fields, skipping validation (the read
        path of every feed). Override it if a subclass sets more state in ``__init__``
        (serializers pass ``foreign_id`` only to activities that have one)."""
        activity = cls.__new__(cls)
        # Set one by one, in __init__'s order: the values stay inline in the object.
        activity.actor_id = actor_id
        activity.object_id = object_id
        activity.target_id = target_id
        activity.verb = verb
        activity.time = time
        activity.extra_context = extra_context
        activity.dehydrated = False
        if foreign_id is not None:
            activity.foreign_id = foreign_id
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
        self.__dict__["_id_cache"] = (self._id_fields(), activity_id)

    def _id_fields(self) -> tuple[Any, ...]:
        return (
            self.time,
            self.actor_id,
            self.verb.id,
            self.object_id,
            self.target_id,
            self.foreign_id,
        )

    @property
    def serialization_id(self) -> int:
        """Unique, exactly ordered id: the time in microseconds, then a digest of
        actor, verb, object and target (see :mod:`aiostream.ids`)."""
        fields = self._id_fields()
        cached = self.__dict__.get("_id_cache")
        if cached is not None and cached[0] == fields:
            return cached[1]  # type: ignore[no-any-return]
        time, actor_id, verb_id, object_id, target_id, foreign_id = fields
        if foreign_id is not None:
            activity_id = foreign_activity_id(foreign_id, time)
        else:
            activity_id = make_id(
                time,
                f"a|{id_text(actor_id)}|{verb_id}|{id_text(object_id)}|{id_text(target_id)}",
            )
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

    # -- the JSON view -------------------------------------------------------------------

    def to_dict(self) -> ActivityDict:
        """The activity as JSON-ready data (``json.dumps`` takes it as it is), typed as an
        :class:`~aiostream.activity.ActivityDict` (a plain dict at run time) so that a
        type checker and a ``response_model=`` know its keys; a subclass that adds keys
        returns a TypedDict subclass of it (see :class:`~aiostream.activity.ActivityDict`).

        Keys: ``"id"`` (:attr:`serialization_id` as a str: it is far beyond ``2**53``),
        ``"actor"``, ``"verb"`` (the verb's ``infinitive``), ``"verb_id"``, ``"object"``,
        ``"target"`` (or None), ``"time"`` (ISO 8601 in UTC with a trailing ``Z``,
        microseconds only when not 0), ``"foreign_id"`` (or None), ``"to"`` (the
        :attr:`to` targets as ``[feed name, user id]`` pairs, ``[]`` when none) and
        ``"extra_context"``.

        Ids: a str is a JSON string and an int with ``abs(n) <= 2**53`` a JSON number;
        a wider int and a UUID are written as strings and named in ``"id_types"``
        (``{"actor": "int", "object": "uuid", "to.0": "int"}``), a key there only when
        some id needs it, so :meth:`from_dict` gives each id back as the type it was.

        ``extra_context`` is plain JSON: JSON values as they are, a datetime in ISO 8601
        (``Z`` when aware and in UTC), a date as an ISO date, a Decimal and a UUID as their
        ``str()``, ints wider than ``2**53`` as ints (data, not ids). Read back by
        :meth:`from_dict` those rich values are strings, so ``Activity.from_dict(
        a.to_dict()) == a`` with every field equal holds exactly when ``extra_context``
        is plain JSON; ids, time, verb, foreign id and targets always come back exactly,
        and so does :attr:`serialization_id`.

        Returns:
            A new dict (its lists and dicts are new too).

        Raises:
            SerializationError: naming the path of an ``extra_context`` value with no
                JSON form (a set, bytes, NaN, a key that is not a str...).

        Example::

            >>> import datetime as dt
            >>> from aiostream import Activity, Love
            >>> a = Activity(13, Love, 2**60, time=dt.datetime(2024, 5, 1, 12, 0))
            >>> data = a.to_dict()
            >>> data["actor"], data["object"], data["id_types"], data["time"]
            (13, '1152921504606846976', {'object': 'int'}, '2024-05-01T12:00:00Z')
        """
        id_types: IdTypes = {}
        target = self.target_id
        data: ActivityDict = {
            "id": str(self.serialization_id),
            "actor": encode_id(self.actor_id, "actor", id_types),
            "verb": self.verb.infinitive,
            "verb_id": self.verb.id,
            "object": encode_id(self.object_id, "object", id_types),
            "target": None if target is None else encode_id(target, "target", id_types),
            "time": format_time(self.time),
            "foreign_id": self.foreign_id,
            "to": [
                [name, encode_id(user_id, f"to.{i}", id_types)]
                for i, (name, user_id) in enumerate(self.to)
            ],
            "extra_context": json_context(self.extra_context),
        }
        if id_types:
            data["id_types"] = id_types
        return data

    @classmethod
    def from_dict(
        cls, data: ActivityDict | Mapping[str, Any], *, verbs: VerbRegistry = default_registry
    ) -> Self:
        """The activity of a :meth:`to_dict` view (of this class: a subclass builds its own).

        ``"actor"``, ``"verb_id"``, ``"object"`` and ``"time"`` are required; when given,
        ``"verb"`` must be that verb's ``infinitive`` and ``"id"`` the rebuilt activity's
        id. ``"target"``, ``"foreign_id"``, ``"to"``, ``"extra_context"`` and
        ``"id_types"`` may be left out (or null). A time without an offset is taken as
        UTC. Other keys are ignored, so a view may carry display fields of its own.

        Args:
            data: The view.
            verbs: Registry the verb id is looked up in.

        Returns:
            The activity, built (and checked) by the constructor, with its ``to``.

        Raises:
            ValidationError: naming the bad field (``"time"``, ``"verb"``, ``"to.0"``,
                ``"id_types.actor"``...), or ``"id"`` when it is not the id of the rest.
            UnknownVerbError: no verb is registered under ``"verb_id"``.
        """
        data = checked_view(data, "activity")
        ids = IdReader(data)
        actor = ids.read("actor", required(data, "actor"))
        obj = ids.read("object", required(data, "object"))
        target = data.get("target")
        if target is not None:
            target = ids.read("target", target)
        verb = read_verb(data, verbs)
        time = parse_time(required(data, "time"), "time")
        targets = _read_targets(data.get("to"), ids)
        ids.check_all_read()
        activity = cls(
            actor,
            verb,
            obj,
            target,
            time,
            data.get("extra_context"),
            foreign_id=data.get("foreign_id"),
            verbs=verbs,
        )
        if targets:
            activity.to = targets
        check_view_id(data, activity.serialization_id)
        return activity

    def check_adds_to(self, stored: Activity) -> None:
        """Check that adding this activity may proceed where ``stored`` is stored under
        its id: both must have the same content, the fields the id comes from and
        ``extra_context`` (``to`` targets aside, which adds join).

        Raises:
            ActivityConflictError: naming ``activity``: another activity is stored
                under this id (other content, or another actor).
        """
        if self._id_fields() == stored._id_fields() and self.extra_context == stored.extra_context:
            return
        raise ActivityConflictError(
            "activity",
            f"another activity is stored under id {stored.serialization_id} (stored: "
            f"{stored!r} {stored.extra_context!r}; added: {self!r} {self.extra_context!r}): "
            "an add never replaces a stored activity, update it instead",
        )

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
