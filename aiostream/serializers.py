"""Compact, versioned JSON formats for activities and groups. Never pickle.

Stored forms (compact JSON arrays, first element the format version):

* activity: ``[1, actor_id, verb_id, object_id, target_id, time_us]`` plus
  ``extra_context`` as a seventh element when it is not empty;
* group: ``[1, group, created_us, updated_us, seen_us, read_us, minimized, [activity...]]``
  (times in microseconds since the epoch, ``null`` when unset; activities embedded
  without their version element).

``extra_context`` holds JSON values plus datetimes, dates, Decimals and UUIDs, which are
written as one-key tagged objects (``{"$dt": "..."}`` …). A dict of the user's own that
has a key starting with ``$`` is written as ``{"$map": [[key, value], ...]}`` so it can
never be mistaken for a tag. Anything else (sets, tuples, bytes, NaN, non-str keys, objects) is a
:class:`~aiostream.exceptions.SerializationError` naming the path of the bad value,
raised before anything is written. JSON escapes every character, so no value can break
the format the way ``;`` and ``,`` broke Stream Framework's.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, TypeVar

from aiostream.activity import Activity, AggregatedActivity
from aiostream.exceptions import AiostreamError, SerializationError
from aiostream.ids import datetime_to_us, us_to_datetime
from aiostream.verbs import VerbRegistry, default_registry

__all__ = [
    "FORMAT_VERSION",
    "ActivitySerializer",
    "AggregatedActivitySerializer",
    "encode_value",
]

FORMAT_VERSION = 1

A = TypeVar("A", bound=Activity)
G = TypeVar("G", bound=AggregatedActivity)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode_value(value: Any, path: str) -> Any:
    """Turn an ``extra_context`` value into plain JSON data (tagging the rich types).

    Raises:
        SerializationError: the value (at ``path``) cannot be stored exactly.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(path, f"float {value!r} has no JSON form")
        return value
    if isinstance(value, dt.datetime):
        # isoformat() drops ``fold`` (which of two repeated wall-clock times is meant).
        return {"$dt1" if value.fold else "$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SerializationError(path, f"Decimal {value!r} is not finite")
        return {"$dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, list):
        return [encode_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path}[{key!r}]", f"dict keys must be str, got {type(key).__name__}"
                )
            out[key] = encode_value(item, f"{path}[{key!r}]")
        if any(k.startswith("$") for k in out):
            # Pairs, not a dict: a tag is then always a one-key dict made by this encoder.
            return {"$map": [[k, v] for k, v in out.items()]}
        return out
    raise SerializationError(
        path,
        f"cannot store a {type(value).__name__}; use str, int, float, bool, None, list, dict, "
        "datetime, date, Decimal or UUID",
    )


_TAGS: dict[str, Callable[[Any], Any]] = {
    "$dt": dt.datetime.fromisoformat,
    "$dt1": lambda text: dt.datetime.fromisoformat(text).replace(fold=1),
    "$date": dt.date.fromisoformat,
    "$dec": Decimal,
    "$uuid": uuid.UUID,
    "$map": dict,
}


def _untag(data: dict[str, Any]) -> Any:
    """``json.loads`` object hook: turn tagged objects back into rich values (bottom-up)."""
    if len(data) == 1:
        ((key, inner),) = data.items()
        convert = _TAGS.get(key)
        if convert is not None:
            return convert(inner)
    return data


_decode = json.JSONDecoder(object_hook=_untag).decode


def _opt_us(value: dt.datetime | None) -> int | None:
    return None if value is None else datetime_to_us(value)


def _opt_dt(value: int | None) -> dt.datetime | None:
    return None if value is None else us_to_datetime(value)


def _parse(payload: str | bytes, what: str) -> list[Any]:
    try:
        data = _decode(payload.decode() if isinstance(payload, bytes) else payload)
    except ValueError as exc:
        raise SerializationError(what, f"stored payload is not JSON: {payload[:60]!r}") from exc
    if not isinstance(data, list) or not data or data[0] != FORMAT_VERSION:
        raise SerializationError(what, f"unknown stored format: {payload[:60]!r}")
    return data


class ActivitySerializer(Generic[A]):
    """Turns activities of ``activity_class`` into stored strings and back.

    Args:
        activity_class: Class built by :meth:`loads` (a subclass of Activity).
        verbs: Registry used to resolve verb ids when reading.
    """

    def __init__(self, activity_class: type[A], verbs: VerbRegistry = default_registry) -> None:
        self.activity_class = activity_class
        self.verbs = verbs

    def check(self, activity: object, field: str = "activity") -> A:
        """Return ``activity`` if it is an ``activity_class``, else raise a ValidationError."""
        if not isinstance(activity, self.activity_class):
            raise SerializationError(
                field,
                f"expected {self.activity_class.__name__}, got {type(activity).__name__}",
            )
        return activity

    def to_data(self, activity: A) -> list[Any]:
        """The activity as a JSON-ready list, without the version element."""
        row: list[Any] = [
            activity.actor_id,
            activity.verb.id,
            activity.object_id,
            activity.target_id,
            datetime_to_us(activity.time),
        ]
        if activity.extra_context:
            row.append(encode_value(activity.extra_context, "extra_context"))
        return row

    def from_data(self, row: list[Any]) -> A:
        """Inverse of :meth:`to_data`."""
        actor, verb_id, obj, target, time_us, *rest = row
        return self.activity_class.from_storage(
            actor,
            self.verbs.get(verb_id),
            obj,
            target,
            us_to_datetime(time_us),
            rest[0] if rest else {},
        )

    def dumps(self, activity: A) -> str:
        """Serialize one activity.

        Raises:
            SerializationError: wrong class, or ``extra_context`` holds an unstorable value.
        """
        self.check(activity)
        return _dumps([FORMAT_VERSION, *self.to_data(activity)])

    def loads(self, payload: str | bytes) -> A:
        """Deserialize one activity.

        Raises:
            SerializationError: the payload is not in a known format.
            UnknownVerbError: its verb is not registered.
        """
        data = _parse(payload, "activity")
        try:
            return self.from_data(data[1:])
        except AiostreamError:
            raise
        except (ValueError, TypeError) as exc:
            raise SerializationError("activity", f"malformed payload {payload[:60]!r}") from exc


class AggregatedActivitySerializer(Generic[G, A]):
    """Turns groups into stored strings (activities embedded) and back.

    Args:
        aggregated_activity_class: Class built by :meth:`loads`.
        activity_serializer: Serializer of the embedded activities.
    """

    def __init__(
        self, aggregated_activity_class: type[G], activity_serializer: ActivitySerializer[A]
    ) -> None:
        self.aggregated_activity_class = aggregated_activity_class
        self.activity_serializer = activity_serializer

    def check(self, aggregated: object, field: str = "aggregated") -> G:
        """Return ``aggregated`` if it is of the right class and not empty."""
        if not isinstance(aggregated, self.aggregated_activity_class):
            raise SerializationError(
                field,
                f"expected {self.aggregated_activity_class.__name__}, "
                f"got {type(aggregated).__name__}",
            )
        if aggregated.dehydrated or not aggregated.activities:
            raise SerializationError(field, "must hold hydrated activities")
        return aggregated

    def dumps(self, aggregated: G) -> str:
        """Serialize one group (its activities embedded)."""
        self.check(aggregated)
        to_data = self.activity_serializer.to_data
        return _dumps(
            [
                FORMAT_VERSION,
                aggregated.group,
                _opt_us(aggregated.created_at),
                _opt_us(aggregated.updated_at),
                _opt_us(aggregated.seen_at),
                _opt_us(aggregated.read_at),
                aggregated.minimized_activities,
                [to_data(self.activity_serializer.check(a)) for a in aggregated.activities],
            ]
        )

    def loads(self, payload: str | bytes) -> G:
        """Deserialize one group."""
        data = _parse(payload, "aggregated")
        try:
            _, group, created, updated, seen, read, minimized, rows = data
            aggregated = self.aggregated_activity_class(group)
            aggregated.activities = [self.activity_serializer.from_data(r) for r in rows]
            aggregated.created_at = _opt_dt(created)
            aggregated.updated_at = _opt_dt(updated)
            aggregated.seen_at = _opt_dt(seen)
            aggregated.read_at = _opt_dt(read)
            aggregated.minimized_activities = minimized
        except AiostreamError:
            raise
        except (ValueError, TypeError) as exc:
            raise SerializationError("aggregated", f"malformed payload {payload[:60]!r}") from exc
        return aggregated
