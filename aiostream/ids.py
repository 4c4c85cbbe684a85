"""Activity ids: unique, exactly ordered, and safe in every backend.

An id is a non-negative integer below ``16**26`` made of two halves::

    id = (microseconds since the epoch) << 52 | 52-bit digest of what makes the activity unique

The time half makes ids sort by time; the digest half (a BLAKE2b digest of actor, verb,
object and target) makes two activities in the same microsecond differ, so two actors
acting on the same object at once never collide (Stream Framework's ids left the actor
out). The same activity always gets the same id, which is what makes fanout retries
idempotent.

Backends that need a string use :func:`id_to_key`: 26 lower-case hex digits, fixed width,
so byte order equals numeric order (:func:`checked_key` when the id comes from a caller
and must be checked first, :func:`valid_keys` to drop what cannot be an id). Redis sorted
sets order members with equal scores by bytes, which gives exact ordering and exact range
filters without squeezing a 100-bit id into a 53-bit double score.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from typing import TypeGuard

from aiostream._text import lone_surrogate, unwritable_int
from aiostream.exceptions import ValidationError

__all__ = [
    "EPOCH",
    "ID_KEY_WIDTH",
    "ItemId",
    "MAX_ID",
    "MAX_TIME",
    "MICROSECOND",
    "MIN_TIME",
    "check_time",
    "check_user_id",
    "checked_key",
    "clamp_id",
    "datetime_to_us",
    "foreign_activity_id",
    "format_key",
    "id_text",
    "id_to_key",
    "id_to_time",
    "is_id",
    "key_to_id",
    "make_id",
    "parse_id",
    "plain_user_id",
    "to_utc",
    "us_to_datetime",
    "valid_keys",
]

TIME_BITS = 52
DIGEST_BITS = 52
ID_KEY_WIDTH = (TIME_BITS + DIGEST_BITS) // 4
MAX_ID = (1 << (TIME_BITS + DIGEST_BITS)) - 1
MAX_TIME_US = (1 << TIME_BITS) - 1
_KEY_FORMAT = f"0{ID_KEY_WIDTH}x"

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""Where the microseconds of stored times count from."""
MICROSECOND = dt.timedelta(microseconds=1)
"""One microsecond: ``EPOCH + MICROSECOND * n`` is exact, and costs half of
``EPOCH + timedelta(microseconds=n)`` (the timedelta constructor is the slow part)."""

MIN_TIME = EPOCH
"""The earliest time an id can encode: 1970-01-01 00:00 UTC."""
MAX_TIME = EPOCH + MICROSECOND * MAX_TIME_US
"""The latest time an id can encode: 2112-09-17 23:53:47.370495 UTC."""


def to_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime.

    The rule: a naive datetime is taken to be UTC already (as ``datetime.utcnow()``
    and Stream Framework produce); an aware one is converted to UTC. ``fold`` is 0 in
    the result: UTC has no repeated hour, and a time read back always has fold 0.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.UTC, fold=0)
    utc = value.astimezone(dt.UTC)
    return utc.replace(fold=0) if utc.fold else utc


def check_time(value: dt.datetime, field: str = "time") -> dt.datetime:
    """``value`` as an aware UTC datetime (see :func:`to_utc`), if ids can encode it.

    Raises:
        ValidationError: naming ``field``, when ``value`` is before :data:`MIN_TIME` or
            after :data:`MAX_TIME` (or so far out that it has no UTC datetime at all, as
            ``datetime(1, 1, 1, tzinfo=+01:00)``).
    """
    try:
        utc = to_utc(value)
    except OverflowError:  # its UTC time is before year 1 or after year 9999
        raise _out_of_range(value, field) from None
    if not MIN_TIME <= utc <= MAX_TIME:
        raise _out_of_range(value, field)
    return utc


def _out_of_range(value: dt.datetime, field: str) -> ValidationError:
    return ValidationError(
        field,
        f"{value.isoformat()} is outside {MIN_TIME.isoformat()} .. {MAX_TIME.isoformat()}, "
        "the times activity ids can encode (1970 to 2112)",
    )


def datetime_to_us(value: dt.datetime) -> int:
    """Microseconds since 1970-01-01 UTC, exactly (no float rounding)."""
    delta = to_utc(value) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> dt.datetime:
    """Inverse of :func:`datetime_to_us`: an aware UTC datetime."""
    return EPOCH + MICROSECOND * us


ItemId = int | str | uuid.UUID
"""An actor, object or target id: an int, a str or a UUID (``7``, ``"7"`` and a UUID are
different ids)."""


def id_text(value: ItemId | None) -> str:
    """An actor / object / target id as text that tells the types apart, for digests and
    group keys: an int in decimal (as always), a str JSON-quoted, a UUID as ``u`` and its
    32 hex digits, None as ``None``. No two ids share a text."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, uuid.UUID):
        return "u" + value.hex
    return f"{value}"  # what ids made of ints always hashed


def make_id(time: dt.datetime, discriminator: str) -> int:
    """Build an id from a time and a string that tells apart things of the same instant.

    Raises:
        ValidationError: ``time`` is before 1970 or after 2112 (see :func:`check_time`).
    """
    try:
        us = datetime_to_us(time)
    except OverflowError:
        raise _out_of_range(time, "time") from None
    if not 0 <= us <= MAX_TIME_US:
        raise _out_of_range(time, "time")
    digest = hashlib.blake2b(discriminator.encode(), digest_size=7).digest()
    return (us << DIGEST_BITS) | (int.from_bytes(digest, "big") >> (56 - DIGEST_BITS))


def foreign_activity_id(foreign_id: str, time: dt.datetime) -> int:
    """The id of the activity with this foreign id and time (see
    :class:`~aiostream.activity.Activity`'s ``foreign_id``): the two are its identity.

    Raises:
        ValidationError: ``time`` is before 1970 or after 2112.
    """
    return make_id(time, "f|" + json.dumps(foreign_id, ensure_ascii=False))


def id_to_time(activity_id: int) -> dt.datetime:
    """The time half of an id made by :func:`make_id`."""
    return us_to_datetime(activity_id >> DIGEST_BITS)


def id_to_key(activity_id: int) -> str:
    """Fixed-width hex form of an id; byte order equals numeric order."""
    return format(activity_id, _KEY_FORMAT)


def is_id(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int an id can be (``0..MAX_ID``, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def checked_key(activity_id: int, field: str = "activity_id") -> str:
    """:func:`id_to_key` of an id that is checked first (any other int would not sort).

    Raises:
        ValidationError: naming ``field``, when ``activity_id`` is not an int in
            ``0..MAX_ID``.
    """
    if not is_id(activity_id):
        raise ValidationError(field, f"expected an int in 0..2**104-1, got {activity_id!r}")
    return format(activity_id, _KEY_FORMAT)


_DECIMAL_ID = re.compile(r"(?:0|[1-9][0-9]{0,31})")  # MAX_ID has 32 decimal digits


def parse_id(
    value: object, field: str = "activity_id", *, error: type[ValidationError] = ValidationError
) -> int:
    """An activity id given as an int or as the decimal str that ``to_dict()`` sends out.

    ``to_dict()`` writes ids as decimal strings (they are far beyond what a JavaScript
    number holds exactly), so a client sends those strings back: every call that takes
    an id reads them with this one function, which takes exactly what ``str(id)`` gives
    and nothing that merely looks like a number.

    Raises:
        ValidationError: (``error``, a subclass, where the caller raises a narrower one)
            naming ``field``, for anything else: a bool, a float, an int or
            a number outside ``0..MAX_ID``, or a str with a sign, spaces, a leading zero,
            an exponent or another base (``"-1"``, ``" 12"``, ``"1e5"``, ``"0x10"``).
    """
    if is_id(value):
        return value
    if isinstance(value, str) and _DECIMAL_ID.fullmatch(value) is not None:
        parsed = int(value)
        if parsed <= MAX_ID:
            return parsed
    shown = repr(value) if isinstance(value, int | str) else type(value).__name__
    expected = "expected an activity id (an int in 0..2**104-1 or its decimal str)"
    raise error(field, f"{expected}, got {shown[:60]}")


def valid_keys(ids: Iterable[object]) -> list[str]:
    """:func:`id_to_key` of each of ``ids`` that can be an id (the others cannot be
    stored, so a lookup leaves them out)."""
    return [format(i, _KEY_FORMAT) for i in ids if is_id(i)]


def key_to_id(key: str | bytes) -> int:
    """Inverse of :func:`id_to_key`."""
    return int(key, 16)


def clamp_id(value: int) -> int:
    """Clamp a filter bound into the range ids can take (so any int is a valid bound)."""
    return min(max(value, 0), MAX_ID)


# -- user ids and the feed keys they make ----------------------------------------------------

_UNSAFE_KEY_CHARS = re.compile(r"[%:{}\s\x00-\x1f\x7f]")
_SMALL_INT = 1 << 63  # far below the width past which an int cannot be written as text


def check_user_id(user_id: object, field: str = "user_id") -> str:
    """The text of a feed owner's id, which must be an int, a non-empty str or a UUID.

    A feed is named by this text: ``7`` and ``"7"`` are one feed, as are a UUID and its
    ``str()`` (actor ids keep the types apart: see :class:`~aiostream.activity.Activity`).

    Raises:
        ValidationError: naming ``field``, for any other value (``None``, a bool, ``""``),
            a str holding a lone surrogate or an int too wide to write in decimal (see
            :mod:`aiostream._text`).
    """
    if type(user_id) is int and -_SMALL_INT < user_id < _SMALL_INT:
        return str(user_id)  # the usual id: nothing else to check (fanout calls this a lot)
    if isinstance(user_id, uuid.UUID):
        return str(user_id)
    if isinstance(user_id, bool) or not isinstance(user_id, int | str):
        raise ValidationError(
            field, f"expected an int, a str or a UUID, got {type(user_id).__name__}"
        )
    problem = lone_surrogate(user_id) if isinstance(user_id, str) else unwritable_int(user_id)
    if problem is not None:
        raise ValidationError(field, problem)
    text = str(user_id)
    if not text:
        raise ValidationError(field, "must not be empty")
    return text


def plain_user_id(user_id: object, field: str = "user_id") -> int | str:
    """A checked feed owner's id (:func:`check_user_id`) as jobs carry it: an int or a
    str as given, a UUID as its ``str()`` (the same feed, and JSON can hold it)."""
    text = check_user_id(user_id, field)
    return text if isinstance(user_id, uuid.UUID) else user_id  # type: ignore[return-value]


def format_key(key_format: str, user_id: object) -> str:
    """Render a feed key, escaping the user id so it cannot reach another feed's keys.

    ``%``, ``:``, ``{``, ``}``, whitespace and control characters in the id become
    ``%XX``; so does nothing else, and ints render as themselves.

    Raises:
        ValidationError: ``user_id`` is not an int, a str or a UUID (or is empty / a bool).
    """
    text = check_user_id(user_id)
    if isinstance(user_id, int):  # digits and "-": nothing to escape
        return key_format % {"user_id": text}
    safe = _UNSAFE_KEY_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)
    return key_format % {"user_id": safe}
