"""Filling extra columns for a custom activity model.

Stream Framework let users subclass its cqlengine model to add columns ("Use a custom
activity model"). Here the payload stays the source of truth and extra columns are a
denormalized copy for your own CQL (secondary indexes, analytics, ``cqlsh``): declare
them with ``extra_columns={"category": "text"}`` (``create_schema`` adds them), and fill
them with a ``column_values`` hook, usually built by :func:`activity_columns`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiostream.activity import Activity
from aiostream.serializers import ActivitySerializer
from aiostream.verbs import VerbRegistry, default_registry

A = TypeVar("A", bound=Activity)


def activity_columns(
    columns: Callable[[A], Mapping[str, Any]],
    activity_class: type[A] = Activity,  # type: ignore[assignment]
    verbs: VerbRegistry = default_registry,
) -> Callable[[int, str], Mapping[str, Any]]:
    """Build a ``column_values`` hook from a function of the activity.

    The hook runs once per activity written (not once per feed), before anything is
    sent, so an exception in it writes nothing. Columns it leaves out are not written.

    Args:
        columns: ``activity -> {column: value}``.
        activity_class: Class the payloads are read back as.
        verbs: Verb registry used to read payloads.

    Example::

        storage = CassandraStorage(
            keyspace="feeds",
            extra_columns={"category": "text"},
            column_values=activity_columns(
                lambda a: {"category": a.extra_context.get("category")}
            ),
        )
    """
    serializer = ActivitySerializer(activity_class, verbs)

    def values(activity_id: int, payload: str) -> Mapping[str, Any]:
        return columns(serializer.loads(payload))

    return values
