"""The JSON view of activities and groups: what ``to_dict`` writes and ``from_dict`` reads.

Three rules, shared by :class:`~aiostream.activity.Activity` and the groups:

* **Ids.** A str id is a JSON string; an int id with ``abs(n) <= 2**53`` is a JSON
  number (a browser reads it exactly); a wider int and a UUID are strings, and the
  view's ``"id_types"`` names them (``{"actor": "int", "to.0": "uuid"}``), so that
  ``7``, ``"7"`` and a UUID read back as the types they were. ``"id_types"`` is there
  only when some id needs it.
* **Times** are ISO 8601 in UTC with a trailing ``Z``, microseconds only when not zero
  (``"2024-05-01T12:00:00Z"``, ``"2024-05-01T12:00:00.250000Z"``).
* **extra_context** is plain JSON: JSON values as they are, a datetime in ISO 8601 (``Z``
  when it is aware and in UTC), a date as an ISO date, a Decimal and a UUID as their
  ``str()``; ints wider than ``2**53`` stay ints (they are data, not ids). It is a view:
  read back, those rich values are strings.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn

from aiostream._text import MAX_NESTING, unwritable_int
from aiostream.activity._json_types import IdTypes
from aiostream.exceptions import SerializationError, ValidationError
from aiostream.ids import ItemId, check_time, to_utc
from aiostream.verbs import Verb, VerbRegistry

# The widest ints a JavaScript number (an IEEE double) holds exactly.
MAX_EXACT_INT = 2**53
ID_TYPES = ("int", "uuid")
_INT_TEXT = re.compile(r"-?[0-9]+")
_ZERO = dt.timedelta(0)


def encode_id(value: ItemId, key: str, id_types: IdTypes) -> int | str:
    """``value`` as the view writes it, naming it in ``id_types`` under ``key`` when it
    is written as a str but is not one (a wide int, a UUID)."""
    if isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID):
        id_types[key] = "uuid"
        return str(value)
    if -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
        return value
    id_types[key] = "int"
    return str(value)


class IdReader:
    """Reads the ids of a view back by its ``"id_types"``.

    Args:
        data: The view (its ``"id_types"``, if any, is checked here).

    Raises:
        ValidationError: naming ``id_types`` (not a dict) or ``id_types.<key>`` (a type
            other than ``"int"`` and ``"uuid"``).
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        types = data.get("id_types")
        if types is None:
            types = {}
        elif not isinstance(types, Mapping):
            raise ValidationError(
                "id_types", f"expected a dict of id types, got {type(types).__name__}"
            )
        for key, kind in types.items():
            if kind not in ID_TYPES:
                raise ValidationError(f"id_types.{key}", f"expected 'int' or 'uuid', got {kind!r}")
        self._types: Mapping[str, str] = types
        self._read: set[str] = set()

    def read(self, key: str, value: object) -> ItemId:
        """The id written under ``key``.

        Raises:
            ValidationError: naming ``key``: not a str or an int, or not the text of the
                type ``"id_types"`` names.
        """
        kind = self._types.get(key)
        if kind is None:
            if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                return value
            raise ValidationError(
                key,
                "expected an id: a str, or an int (written as a str, and named in id_types, "
                f"when it is wider than 2**53 or a UUID), got {type(value).__name__}",
            )
        self._read.add(key)
        if not isinstance(value, str):
            raise ValidationError(
                key, f"id_types names it {kind!r}: expected a str, got {type(value).__name__}"
            )
        if kind == "int":
            if _INT_TEXT.fullmatch(value) is None:
                raise ValidationError(key, f"id_types names it 'int', got {value[:40]!r}")
            try:
                return int(value)
            except ValueError:  # more digits than Python reads (sys.get_int_max_str_digits)
                raise ValidationError(key, "an int with more digits than Python reads") from None
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValidationError(key, f"id_types names it 'uuid', got {value[:40]!r}") from None

    def check_all_read(self) -> None:
        """Raise unless every entry of ``"id_types"`` named an id that was read.

        Raises:
            ValidationError: naming ``id_types.<key>`` (a key no id of the view has).
        """
        for key in self._types:
            if key not in self._read:
                raise ValidationError(f"id_types.{key}", "names no id of this view")


def format_time(value: dt.datetime) -> str:
    """``value`` in UTC, ISO 8601 with a trailing ``Z`` (microseconds only when not 0)."""
    return to_utc(value).replace(tzinfo=None).isoformat() + "Z"


def format_optional_time(value: dt.datetime | None) -> str | None:
    """:func:`format_time`, None for None."""
    return None if value is None else format_time(value)


def parse_time(value: object, field: str) -> dt.datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without an offset is taken as
    UTC, as everywhere in aiostream).

    Raises:
        ValidationError: naming ``field``: not a str, not ISO 8601, or outside the times
            ids can encode (1970 to 2112).
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"expected an ISO 8601 time, got {type(value).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"expected an ISO 8601 time, got {value[:40]!r}") from None
    return check_time(parsed, field)


def parse_optional_time(data: Mapping[str, Any], field: str) -> dt.datetime | None:
    """:func:`parse_time` of ``data[field]``; None when it is missing or null."""
    value = data.get(field)
    return None if value is None else parse_time(value, field)


def required(data: Mapping[str, Any], field: str) -> Any:
    """``data[field]``, which must be there and not null.

    Raises:
        ValidationError: naming ``field``.
    """
    value = data.get(field)
    if value is None:
        raise ValidationError(field, "is required")
    return value


def checked_view(data: object, what: str) -> Mapping[str, Any]:
    """``data`` if it is a dict (a view), else a ValidationError naming ``what``."""
    if not isinstance(data, Mapping):
        raise ValidationError(what, f"expected a dict, got {type(data).__name__}")
    return data


def read_count(data: Mapping[str, Any], field: str, default: int) -> int:
    """``data[field]`` as a count: an int ``>= 0`` (``default`` when missing).

    Raises:
        ValidationError: naming ``field``.
    """
    value = data.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(field, f"expected an int >= 0, got {value!r}")
    return value


def read_verb(data: Mapping[str, Any], verbs: VerbRegistry) -> type[Verb]:
    """The verb of a view: ``"verb_id"`` names it; ``"verb"``, when given, must be its
    ``infinitive``.

    Raises:
        ValidationError: naming ``verb_id`` (missing, not an int) or ``verb`` (another
            verb's name).
        UnknownVerbError: no verb is registered under ``verb_id``.
    """
    verb_id = required(data, "verb_id")
    if isinstance(verb_id, bool) or not isinstance(verb_id, int):
        raise ValidationError("verb_id", f"expected an int, got {type(verb_id).__name__}")
    verb = verbs.get(verb_id)
    check_verb_name(data, verb)
    return verb


def check_verb_name(data: Mapping[str, Any], verb: type[Verb]) -> None:
    """Raise unless ``data["verb"]`` is missing, null or ``verb``'s name.

    Raises:
        ValidationError: naming ``verb``.
    """
    name = data.get("verb")
    if name is not None and name != verb.infinitive:
        raise ValidationError(
            "verb", f"verb id {verb.id} is {verb.infinitive!r}, the view says {name!r}"
        )


def check_same(data: Mapping[str, Any], field: str, actual: object) -> None:
    """Raise unless ``data[field]`` is missing, null or equal to ``actual`` (and of its
    type): for what a view repeats but ``from_dict`` recomputes (ids, counts).

    Raises:
        ValidationError: naming ``field``.
    """
    given = data.get(field)
    if given is not None and (type(given) is not type(actual) or given != actual):
        raise ValidationError(field, f"is {given!r}, but the rest of the view makes it {actual!r}")


def check_same_ids(
    data: Mapping[str, Any], field: str, actual: Sequence[ItemId], ids: IdReader
) -> None:
    """Raise unless ``data[field]`` is missing or the ids ``actual`` (of the same types,
    read by ``ids`` under ``field.<i>``).

    Raises:
        ValidationError: naming ``field`` (or ``field.<i>``, an id that cannot be read).
    """
    given = data.get(field)
    if given is None:
        return
    if not isinstance(given, list | tuple):
        raise ValidationError(field, f"expected a list of ids, got {given!r}")
    read = [ids.read(f"{field}.{i}", value) for i, value in enumerate(given)]
    if [(type(i), i) for i in read] != [(type(i), i) for i in actual]:
        raise ValidationError(
            field, f"are {read!r}, but the rest of the view makes them {actual!r}"
        )


def check_view_id(data: Mapping[str, Any], actual: int) -> None:
    """Raise unless ``data["id"]`` is missing, null or ``str(actual)``.

    Raises:
        ValidationError: naming ``id``.
    """
    check_same(data, "id", str(actual))


def reraise_nested(error: ValidationError, prefix: str) -> NoReturn:
    """Raise ``error`` again as a ValidationError naming ``prefix.<its field>`` (for a
    view nested in another)."""
    message = str(error).removeprefix(f"{error.field}: ")
    raise ValidationError(f"{prefix}.{error.field}", message) from error


def json_context(extra_context: Mapping[str, Any]) -> dict[str, Any]:
    """``extra_context`` as plain JSON (see the module's rules).

    Raises:
        SerializationError: naming the path of a value with no JSON form (a set, bytes,
            NaN, a dict key that is not a str, lists and dicts nested deeper than
            :data:`~aiostream.serializers.MAX_NESTING`, any other object).
    """
    return {
        key: _json_value(value, f"extra_context[{key!r}]", 1, MAX_NESTING)
        for key, value in _checked_items(extra_context, "extra_context")
    }


def _checked_items(value: Mapping[Any, Any], path: str) -> list[tuple[str, Any]]:
    for key in value:
        if not isinstance(key, str):
            raise SerializationError(
                f"{path}[{key!r}]", f"dict keys must be str, got {type(key).__name__}"
            )
    return list(value.items())


def _json_value(value: Any, path: str, depth: int, limit: int) -> Any:
    if value is None or isinstance(value, str | bool):
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
        if value.utcoffset() == _ZERO:
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | dict) and depth > limit:
        raise SerializationError(path, f"lists and dicts nest deeper than {limit} levels")
    if isinstance(value, list):
        return [_json_value(v, f"{path}[{i}]", depth + 1, limit) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            key: _json_value(item, f"{path}[{key!r}]", depth + 1, limit)
            for key, item in _checked_items(value, path)
        }
    raise SerializationError(
        path,
        f"has no JSON form: a {type(value).__name__}; use str, int, float, bool, None, list, "
        "dict, datetime, date, Decimal or UUID",
    )
