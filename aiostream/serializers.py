"""Compact, versioned JSON formats for activities and groups. Never pickle.

Stored forms (compact JSON arrays, first element the format version):

* activity: ``[1, actor_id, verb_id, object_id, target_id, time_us]`` plus
  ``extra_context`` as a seventh element when it is not empty;
* group: ``[2, group, created_us, updated_us, seen_us, read_us, minimized, [activity...]]``
  (times in microseconds since the epoch, ``null`` when unset; activities embedded
  without their version element, oldest first), with separators and the activities'
  ids that let a server merge into it without parsing JSON: :mod:`aiostream.group_format`
  owns that format. Version 1 (the same array, plain JSON, without the ids) is still
  read.

``extra_context`` holds JSON values plus datetimes, dates, Decimals and UUIDs, which are
written as one-key tagged objects (``{"$dt": "..."}`` …). A dict of the user's own that
has a key starting with ``$`` is written as ``{"$map": [[key, value], ...]}`` so it can
never be mistaken for a tag. Its lists and dicts nest at most :data:`MAX_NESTING` deep.
Anything else (sets, tuples, bytes, NaN, non-str keys, objects, strings holding a lone
surrogate, deeper nesting) is a :class:`~aiostream.exceptions.SerializationError` naming
the path of the bad value, raised before anything is written. JSON escapes every
character, so no value can break the format the way ``;`` and ``,`` broke Stream
Framework's.

Integers of any size round-trip exactly: orjson, when installed, reads only text without
a run of 19 digits (it reads wider integers as floats); the standard library reads the
rest.
"""

from __future__ import annotations

import datetime as dt
import json
import json.scanner
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeVar, cast

from aiostream._group_rows import GroupRows
from aiostream._text import MAX_NESTING, lone_surrogate, unwritable_int
from aiostream.activity import Activity, AggregatedActivity
from aiostream.exceptions import AiostreamError, SerializationError
from aiostream.group_format import (
    GROUP_FORMAT_VERSION,
    GROUP_OPENING,
    Capabilities,
    DeclaresCapabilities,
    MergeParts,
    group_header,
    ids_match,
    join_group,
    split_group,
    split_ids,
    to_json,
)
from aiostream.ids import (
    EPOCH,
    MICROSECOND,
    datetime_to_us,
    id_to_key,
    us_to_datetime,
)
from aiostream.verbs import VerbRegistry, default_registry


def _find_compiled_loads() -> Callable[[bytes], Any] | None:
    """orjson's ``loads`` (the ``speedups`` extra, also in ``redis`` and ``cassandra``),
    or None when it is not installed."""
    try:
        from orjson import loads
    except ImportError:
        return None
    return loads


_compiled_loads = _find_compiled_loads()

__all__ = [
    "ActivitySerializer",
    "AggregatedActivitySerializer",
    "FORMAT_VERSION",
    "GROUP_FORMAT_VERSION",
    "MAX_ACTIVITY_BYTES",
    "MAX_NESTING",
    "MergeParts",
    "encode_value",
    "group_header",
]

FORMAT_VERSION = 1
"""Version of the stored activity format."""
MAX_ACTIVITY_BYTES = 1024 * 1024 + 64 * 1024
"""The most an activity may take stored (its payload, UTF-8), on every backend: larger is
a SerializationError naming ``extra_context`` before anything is written. A megabyte of
``extra_context`` fits; Cassandra refuses a write over 16 MiB, and a feed keeps
references and small data, not files."""

A = TypeVar("A", bound=Activity)
G = TypeVar("G", bound=AggregatedActivity)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

# What the stock merge rule depends on, for server_mergeable (see inherit_declared): the
# pieces of a stored group (merge_parts, from check and to_data) and the stored group
# a storage merges into (dumps writes it, loads reads back what the storage wrote).
_ACTIVITY_MERGE_RULE = ("check", "to_data")
_GROUP_MERGE_RULE = ("check", "dumps", "merge_parts", "loads", "_build")


def encode_value(value: Any, path: str, depth: int = 0) -> Any:
    """Turn an ``extra_context`` value into plain JSON data (tagging the rich types).

    ``depth`` is how deep ``value`` is nested in ``extra_context`` (the lists and dicts
    holding it); lists and dicts may nest :data:`MAX_NESTING` deep.

    Raises:
        SerializationError: the value (at ``path``) cannot be stored exactly.
    """
    if isinstance(value, str):
        if not value.isascii():
            problem = lone_surrogate(value)
            if problem is not None:
                raise SerializationError(path, problem)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        problem = unwritable_int(value)
        if problem is not None:
            raise SerializationError(path, problem)
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
    if isinstance(value, list | dict) and depth > MAX_NESTING:
        raise SerializationError(path, f"lists and dicts nest deeper than {MAX_NESTING} levels")
    if isinstance(value, list):
        return [encode_value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path}[{key!r}]", f"dict keys must be str, got {type(key).__name__}"
                )
            if not key.isascii():
                problem = lone_surrogate(key)
                if problem is not None:
                    raise SerializationError(f"{path}[{key!r}]", f"the key {problem}")
            out[key] = encode_value(item, f"{path}[{key!r}]", depth + 1)
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


_tagged = json.JSONDecoder(object_hook=_untag)
_plain = json.JSONDecoder()
# The (C) scanners json.loads drives: called directly, they skip its Python wrapper and
# its two whitespace regexes (a third of the cost of decoding a small group). typeshed
# wants make_scanner's own type as its argument, hence the ignores.
_Scanner = Callable[[str, int], tuple[Any, int]]
_scan_tagged: _Scanner = json.scanner.make_scanner(_tagged)  # type: ignore[arg-type]
_scan_plain: _Scanner = json.scanner.make_scanner(_plain)  # type: ignore[arg-type]

# The encoder writes compact JSON, and every tag it writes, and nothing else, opens with
# these three characters (a user's own dict with a "$" key is wrapped in a "$map" tag; a
# '"' inside a string is escaped). Text without them has no tag to undo, so it skips the
# per-object hook.
_TAG_OPENING = '{"$'

# orjson reads integers from -2**63 to 2**64 - 1 exactly and wider ones as floats. Every
# int outside that range has 19 digits or more, so only text without a run of 19 digits
# goes to orjson (a run inside a string just takes the standard library's path).
# bytes.translate marks the digits and `in` finds a run: 8 µs for a page of 25 groups
# (orjson decodes it in 13 µs), where a regular expression takes 120 µs.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_WIDE_INT = b"0" * 19


def _decode(text: str) -> Any:
    """``json.loads(text)`` (raises ValueError) for text written by this module."""
    tagged = _TAG_OPENING in text
    if not tagged and _compiled_loads is not None:
        # (surrogatepass: a str holding a lone surrogate, which orjson refuses, still encodes)
        data = text.encode("utf-8", "surrogatepass")
        if _WIDE_INT not in data.translate(_DIGITS):
            try:
                # A page of 25 groups decodes in 40% of the stdlib's time.
                return _compiled_loads(data)
            except ValueError:
                pass  # not JSON, nested too deep for orjson…: the stdlib decides
    try:
        try:
            value, end = (_scan_tagged if tagged else _scan_plain)(text, 0)
        except StopIteration:  # no value at 0 (leading whitespace, or not JSON at all)
            return (_tagged if tagged else _plain).decode(text)
    except RecursionError as exc:  # nested deeper than this module writes (MAX_NESTING)
        raise ValueError("JSON nested too deeply to read") from exc
    if end != len(text) and text[end:].strip():
        raise ValueError(f"extra data after the JSON value, at {end}: {text[end : end + 20]!r}")
    return value


def _parse(payload: str | bytes, what: str) -> list[Any]:
    try:
        data: list[Any] = _decode(payload.decode() if isinstance(payload, bytes) else payload)
    except ValueError as exc:
        raise SerializationError(what, f"stored payload is not JSON: {payload[:60]!r}") from exc
    _check_version(data, what, payload)
    return data


def _check_version(
    data: Any, what: str, payload: str | bytes | None = None, version: int = FORMAT_VERSION
) -> None:
    if not isinstance(data, list) or not data or data[0] != version:
        shown = payload if payload is not None else _dumps_any(data)
        raise SerializationError(what, f"unknown stored format: {shown[:60]!r}")


def _dumps_any(data: Any) -> str:
    try:
        return json.dumps(data)
    except (TypeError, ValueError):
        return repr(data)


T = TypeVar("T")


def _page_or_each(
    payloads: Sequence[str | bytes],
    page: Callable[[Sequence[str | bytes]], list[T] | None],
    each: Callable[[str | bytes], T],
) -> list[T]:
    """``page(payloads)``, one decode for a whole page, when there are several and it
    reads them all; else ``each`` of them one by one, which names a bad payload in its
    error (another format, or a bad payload somewhere, make ``page`` give up)."""
    if len(payloads) > 1:
        try:
            decoded = page(payloads)
        except (AiostreamError, ValueError, TypeError):
            decoded = None
        if decoded is not None:
            return decoded
    return [each(p) for p in payloads]


class ActivitySerializer(DeclaresCapabilities, Generic[A]):
    """Turns activities of ``activity_class`` into stored strings and back.

    Args:
        activity_class: Class built by :meth:`loads` (a subclass of Activity).
        verbs: Registry used to resolve verb ids when reading.

    Class attributes:
        server_mergeable: Whether a storage may merge activities in the form
            :meth:`to_data` gives them into stored groups itself (see
            :class:`AggregatedActivitySerializer`). True here; a subclass that overrides
            :meth:`check` or :meth:`to_data` gets False unless it sets it in its own body.
    """

    server_mergeable: ClassVar[bool] = True
    capability_rules: ClassVar[Capabilities] = {"server_mergeable": _ACTIVITY_MERGE_RULE}

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
        """The activity as a JSON-ready list, without the version element: actor, verb,
        object, target, time, then ``extra_context`` if it is not empty or more follows,
        then, when it has a foreign id or ``to`` targets, ``{"f": foreign id, "to":
        [[feed, user id], ...]}`` (each key only when set)."""
        actor, obj, target = activity.actor_id, activity.object_id, activity.target_id
        row: list[Any] = [
            actor if type(actor) is int else _id_data(actor),
            activity.verb.id,
            obj if type(obj) is int else _id_data(obj),
            target if target is None or type(target) is int else _id_data(target),
            datetime_to_us(activity.time),
        ]
        more: dict[str, Any] = {}
        if activity.foreign_id is not None:
            more["f"] = activity.foreign_id
        if activity.to:
            more["to"] = [list(target) for target in activity.to]
        if activity.extra_context or more:
            row.append(encode_value(activity.extra_context, "extra_context"))
        if more:
            row.append(more)
        return row

    def from_data(self, row: list[Any]) -> A:
        """Inverse of :meth:`to_data`."""
        actor, verb_id, obj, target, time_us, *rest = row
        fields = (actor, self.verbs.get(verb_id), obj, target, us_to_datetime(time_us))
        if len(rest) < 2:
            return self.activity_class.from_storage(*fields, rest[0] if rest else {})
        foreign_id, targets = _more_of(rest[1])
        activity = (
            self.activity_class.from_storage(*fields, rest[0])
            if foreign_id is None
            else self.activity_class.from_storage(*fields, rest[0], foreign_id=foreign_id)
        )
        if targets:
            activity.to = targets
        return activity

    def from_rows(self, rows: list[Any], *, versioned: bool = False) -> list[A]:
        """:meth:`from_data` of many rows (with their version element when ``versioned``).

        The read path of every feed: when ``activity_class`` says so
        (:attr:`~aiostream.activity.Activity.inline_from_storage`, True unless it
        overrides :meth:`~aiostream.activity.Activity.from_storage`), activities are
        built inline, as the stock ``from_storage`` builds them, which halves the cost
        per activity; else its ``from_storage`` is called.

        Raises:
            SerializationError: a versioned row of an unknown format.
            ValueError, TypeError: a malformed row.
        """
        cls = self.activity_class
        if not cls.inline_from_storage:
            if versioned:
                for row in rows:
                    _check_version(row, "activity")
                return [self.from_data(row[1:]) for row in rows]
            return [self.from_data(row) for row in rows]
        new = cls.__new__
        get_verb = self.verbs.get
        verbs: dict[Any, Any] = {}
        epoch, microsecond = EPOCH, MICROSECOND
        activities: list[A] = []
        append = activities.append
        skip = 1 if versioned else 0
        full = 6 + skip  # with extra_context
        for row in rows:
            if versioned and (type(row) is not list or not row or row[0] != FORMAT_VERSION):
                _check_version(row, "activity")
            size = len(row)
            more = None
            if size == full + 1:  # with a foreign id or targets too
                more = _more_of(row[-1])
                row = row[:-1]
                size -= 1
            if size == full:
                if skip:
                    _, actor, verb_id, obj, target, time_us, extra = row
                else:
                    actor, verb_id, obj, target, time_us, extra = row
            elif size == full - 1:
                if skip:
                    _, actor, verb_id, obj, target, time_us = row
                else:
                    actor, verb_id, obj, target, time_us = row
                extra = {}
            else:
                raise ValueError(f"an activity has {full - 1} to {full + 1} fields, got {len(row)}")
            verb = verbs.get(verb_id)
            if verb is None:
                verb = verbs[verb_id] = get_verb(verb_id)
            activity = new(cls)
            # What from_storage sets, in the order __init__ sets it. Stored one by one
            # (not as an assigned __dict__) the values stay inline in the object: one
            # object fewer per activity for the garbage collector to track, whose passes
            # are a good part of the cost of reading a page of groups.
            activity.actor_id = actor
            activity.object_id = obj
            activity.target_id = target
            activity.verb = verb
            activity.time = epoch + microsecond * time_us
            activity.extra_context = extra
            activity.dehydrated = False
            if more is not None:
                foreign_id, targets = more
                if foreign_id is not None:
                    activity.foreign_id = foreign_id
                if targets:
                    activity.to = targets
            append(activity)
        return activities

    def dumps(self, activity: A) -> str:
        """Serialize one activity.

        Raises:
            SerializationError: wrong class, ``extra_context`` holds an unstorable value,
                or the activity takes more than :data:`MAX_ACTIVITY_BYTES` stored.
        """
        self.check(activity)
        payload = _dumps([FORMAT_VERSION, *self.to_data(activity)])
        # (a char is at most 4 UTF-8 bytes: most payloads need no encoding to tell)
        if len(payload) * 4 > MAX_ACTIVITY_BYTES and len(payload.encode()) > MAX_ACTIVITY_BYTES:
            raise SerializationError(
                "extra_context",
                f"the activity takes {len(payload.encode()):,} bytes stored, more than "
                f"the {MAX_ACTIVITY_BYTES:,} every backend takes (MAX_ACTIVITY_BYTES)",
            )
        return payload

    def admit(
        self, entries: Sequence[tuple[int, str]], stored: Mapping[int, str | bytes]
    ) -> list[tuple[int, str]]:
        """The ``(id, payload)`` entries an add may write, given the payloads ``stored``
        under their ids: an add never changes a stored activity.

        An entry whose id is not stored is written as it is. One stored with the same
        content (see :meth:`Activity.check_adds_to`) keeps the stored payload, its ``to``
        targets joined with the new ones.

        Raises:
            ActivityConflictError: naming ``activity``: another activity is stored under
                one of the ids (other content, or another actor).
        """
        admitted = []
        for activity_id, payload in entries:
            old = stored.get(activity_id)
            if old is None or old == payload:
                admitted.append((activity_id, payload))
                continue
            new_activity, old_activity = self.loads(payload), self.loads(old)
            new_activity.check_adds_to(old_activity)
            targets = tuple(dict.fromkeys([*old_activity.to, *new_activity.to]))
            if targets != tuple(old_activity.to):
                old_activity.to = targets
                admitted.append((activity_id, self.dumps(old_activity)))
            else:
                admitted.append((activity_id, old if isinstance(old, str) else old.decode()))
        return admitted

    def loads(self, payload: str | bytes) -> A:
        """Deserialize one activity.

        Raises:
            SerializationError: the payload is not in a known format.
            UnknownVerbError: its verb is not registered.
        """
        data = _parse(payload, "activity")
        try:
            return self.from_rows([data], versioned=True)[0]
        except AiostreamError:
            raise
        except (ValueError, TypeError) as exc:
            raise SerializationError("activity", f"malformed payload {payload[:60]!r}") from exc

    def loads_many(self, payloads: Sequence[str | bytes]) -> list[A]:
        """:meth:`loads` of each payload of a page, in order, raising what it raises; the
        page is decoded as one JSON array (half the cost of decoding them one by one)."""
        return _page_or_each(payloads, self._loads_page, self.loads)

    def _loads_page(self, payloads: Sequence[str | bytes]) -> list[A] | None:
        # (a bytes payload makes join raise TypeError)
        rows = _decode("[" + ",".join(payloads) + "]")  # type: ignore[arg-type]
        return self.from_rows(rows, versioned=True) if len(rows) == len(payloads) else None

    def loads_entries(self, entries: Sequence[tuple[int, str]]) -> list[A]:
        """:meth:`loads_many` of ``(id, payload)`` entries as a storage returns them; each
        activity keeps the id it came with (:meth:`~aiostream.activity.Activity.keep_id`)
        instead of computing it again."""
        activities = self.loads_many([payload for _, payload in entries])
        for activity, (activity_id, _) in zip(activities, entries, strict=True):
            activity.keep_id(activity_id)
        return activities


class AggregatedActivitySerializer(DeclaresCapabilities, Generic[G, A]):
    """Turns groups into stored strings (activities embedded) and back.

    Args:
        aggregated_activity_class: Class built by :meth:`loads`.
        activity_serializer: Serializer of the embedded activities.

    Class attributes:
        server_mergeable: Whether groups in the stored form of this serializer may be
            merged into by a storage itself (:mod:`aiostream.group_format`), which an
            aggregated feed allows only when its aggregator, group class and both
            serializers all declare it. True here; a subclass that overrides
            :meth:`check`, :meth:`dumps`, :meth:`merge_parts` or :meth:`loads` gets False
            unless it sets it in its own body.
    """

    server_mergeable: ClassVar[bool] = True
    capability_rules: ClassVar[Capabilities] = {"server_mergeable": _GROUP_MERGE_RULE}

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
        return self.merge_parts(aggregated).payload

    def merge_parts(self, aggregated: G) -> MergeParts:
        """The stored form of a group, and the pieces it is made of (what a storage needs
        to merge the group's activities into a stored one: see ``merge_groups`` of
        :class:`~aiostream.storage.base.GroupMergeStorage`).

        Raises:
            SerializationError: wrong class, empty or dehydrated group, or an activity
                that cannot be stored.
        """
        self.check(aggregated)
        check, to_data = self.activity_serializer.check, self.activity_serializer.to_data
        items: list[tuple[int, int, str]] = []
        rows: list[str] = []
        ids: list[str] = []
        for activity in aggregated.activities:
            row = to_data(check(activity))
            if activity.to:
                row = _without_targets(row)
            text = _dumps(row)
            activity_id = activity.serialization_id
            items.append((activity_id, row[4], text))
            rows.append(text)
            ids.append(id_to_key(activity_id))
        header = group_header(aggregated.group)
        numbers = (
            f"{_json_us(aggregated.created_at)},{_json_us(aggregated.updated_at)},"
            f"{_json_us(aggregated.seen_at)},{_json_us(aggregated.read_at)},"
            f"{int(aggregated.minimized_activities)}"
        )
        payload = join_group(header, numbers, rows, ids, aggregated.minimized_keys)
        return MergeParts(header, payload, items)

    def loads(self, payload: str | bytes) -> G:
        """Deserialize one group (either stored format).

        Raises:
            SerializationError: the payload is not in a known format.
            UnknownVerbError: a verb is not registered.
        """
        text = payload.decode() if isinstance(payload, bytes) else payload
        if text.startswith(GROUP_OPENING):
            body, tail = split_group(text)
            ids, let_go = split_ids(tail)
            try:
                data = _decode(to_json(body))
            except ValueError as exc:
                raise SerializationError(
                    "aggregated", f"stored payload is not JSON: {text[:60]!r}"
                ) from exc
            _check_version(data, "aggregated", text, GROUP_FORMAT_VERSION)
            if not ids_match(data, ids, let_go):
                raise SerializationError("aggregated", f"malformed payload {text[:60]!r}")
        else:
            data, ids, let_go = _parse(text, "aggregated"), None, ""
        return self._build(data, text, ids, let_go)

    def loads_many(self, payloads: Sequence[str | bytes]) -> list[G]:
        """:meth:`loads` of each group of a page, in order, raising what it raises; groups
        in the current format are decoded as one JSON array, their activities built in
        one go."""
        return _page_or_each(payloads, self._loads_page, self.loads)

    def _loads_page(self, payloads: Sequence[str | bytes]) -> list[G] | None:
        bodies: list[str] = []
        ids: list[str | None] = []
        for payload in payloads:
            if not isinstance(payload, str) or not payload.startswith(GROUP_OPENING):
                raise ValueError("not the current format")
            body, tail = split_group(payload)
            bodies.append(body)
            ids.append(tail)
        page = _decode("[" + to_json(",".join(bodies)) + "]")
        if len(page) != len(payloads):
            return None
        groups: list[G] = []
        for data, tail, payload in zip(page, ids, payloads, strict=True):
            held, let_go = split_ids(tail)
            if not ids_match(data, held, let_go):
                raise ValueError("malformed")
            groups.append(self._build(data, payload, held, let_go))
        return groups

    def _build(self, data: list[Any], payload: str | bytes, ids: str | None, let_go: str) -> G:
        """The group of a decoded payload; its activities are built when first touched
        (see :mod:`aiostream._group_rows`) when the payload has their ids and the
        activity class is built the stock way, else at once."""
        try:
            _, group, created, updated, seen, read, minimized, rows = data
            aggregated = self.aggregated_activity_class(group)
            activities = self.activity_serializer
            if ids is not None and rows and activities.activity_class.inline_from_storage:
                aggregated.defer_activities(
                    GroupRows(rows, ids, activities.from_rows, activities.verbs)
                )
            else:
                aggregated.activities = cast("list[Activity]", activities.from_rows(rows))
            epoch, microsecond = EPOCH, MICROSECOND
            aggregated.created_at = None if created is None else epoch + microsecond * created
            aggregated.updated_at = None if updated is None else epoch + microsecond * updated
            aggregated.seen_at = None if seen is None else epoch + microsecond * seen
            aggregated.read_at = None if read is None else epoch + microsecond * read
            aggregated.minimized_activities = minimized
            aggregated.minimized_keys = let_go
        except AiostreamError:
            raise
        except (ValueError, TypeError) as exc:
            raise SerializationError("aggregated", f"malformed payload {payload[:60]!r}") from exc
        return aggregated


def _more_of(more: Any) -> tuple[str | None, tuple[tuple[str, int | str], ...]]:
    """The foreign id and ``to`` targets of a stored activity's last element (see
    :meth:`ActivitySerializer.to_data`).

    Raises:
        ValueError: it is not what ``to_data`` writes there.
    """
    if type(more) is not dict:
        raise ValueError(f"not an activity's foreign id and targets: {more!r}")
    return more.get("f"), tuple((name, user) for name, user in more.get("to", ()))


def _without_targets(row: list[Any]) -> list[Any]:
    """A stored activity row without its ``to`` targets: the copies groups embed leave
    them out (only the stored activity, which removals and updates read, needs them)."""
    more = row[-1]
    if len(row) != 7 or type(more) is not dict or "to" not in more:
        return row
    rest = {k: v for k, v in more.items() if k != "to"}
    return [*row[:-1], rest] if rest else row[:-1]


def _id_data(value: Any) -> Any:
    """An actor / object / target id other than an int as JSON data: a str as it is,
    a UUID tagged (``{"$uuid": ...}``, read back as a UUID)."""
    return {"$uuid": str(value)} if isinstance(value, uuid.UUID) else value


def _json_us(value: dt.datetime | None) -> str:
    return "null" if value is None else str(datetime_to_us(value))
