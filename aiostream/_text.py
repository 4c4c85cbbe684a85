"""Values that reach storage as text: strings must be encodable as UTF-8, and ints must
be writable in decimal.

A Python str can hold a lone surrogate (``"\\ud800"``, e.g. from a bad ``\\ud800`` JSON
escape or ``bytes.decode(errors="surrogateescape")``): it is not a character, UTF-8 cannot
encode it, and no server (Redis, Cassandra) can store it. aiostream refuses such strings
wherever they would be stored (``extra_context``, feed user ids, group names), on every
backend alike, before anything is written.

Python refuses to write an int of more than ``sys.get_int_max_str_digits()`` digits (4,300
by default) as text, and so cannot store it as JSON or in a key: such ints are refused
the same way.
"""

from __future__ import annotations

import re
import sys

MAX_NESTING = 100
"""How deep lists and dicts may nest in ``extra_context`` (``extra_context`` itself not
counted): ``{"a": [[1]]}`` nests 2 deep. Deeper is a SerializationError; the limit keeps
writing and reading far from Python's recursion limit (JSON nests deeper still: a dict
with ``$`` keys takes 3 levels)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """None when UTF-8 can encode ``text``; else what is wrong with it (an error message
    saying where its first surrogate is)."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"holds a lone surrogate ({found.group()!r} at index {found.start()}), "
        "which UTF-8 cannot encode and no storage can hold"
    )


# Ints this wide (about 600 digits) may be past sys.get_int_max_str_digits() (640 at the
# least, 4,300 by default); narrower ones never are, and skip the conversion.
_CHECKED_INT_BITS = 2_000


def unwritable_int(value: int) -> str | None:
    """None when Python can write ``value`` in decimal; else why not (an error message)."""
    if value.bit_length() <= _CHECKED_INT_BITS:
        return None
    try:
        str(value)
    except ValueError:
        return (
            f"an int of {value.bit_length()} bits has more digits than Python writes as text "
            f"(sys.get_int_max_str_digits() is {sys.get_int_max_str_digits()})"
        )
    return None
