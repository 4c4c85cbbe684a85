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

``to_dict()`` gives the JSON view of an activity or a group (ids beyond ``2**53`` and
UUIDs as strings, named in ``"id_types"``; times in ISO 8601 UTC) and ``from_dict()``
rebuilds it::

    >>> data = a.to_dict()
    >>> data["actor"], data["verb"], data["time"], data["id"] == str(a.serialization_id)
    (13, 'love', '2024-05-01T12:00:00Z', True)
    >>> Activity.from_dict(data).serialization_id == a.serialization_id
    True

The views are typed: :class:`ActivityDict`, :class:`AggregatedActivityDict` and
:class:`NotificationActivityDict` are the TypedDicts ``to_dict()`` returns (plain dicts
at run time), so a type checker knows their keys and FastAPI's ``response_model=``
documents their schema.
"""

from aiostream.activity._group import (
    MAX_AGGREGATED_ACTIVITIES_LENGTH,
    AggregatedActivity,
    NotificationActivity,
    group_key,
)
from aiostream.activity._json_types import (
    ActivityDict,
    AggregatedActivityDict,
    IdType,
    NotificationActivityDict,
)
from aiostream.activity._single import Activity, DehydratedActivity, utcnow

__all__ = [
    "Activity",
    "ActivityDict",
    "AggregatedActivity",
    "AggregatedActivityDict",
    "DehydratedActivity",
    "IdType",
    "MAX_AGGREGATED_ACTIVITIES_LENGTH",
    "NotificationActivity",
    "NotificationActivityDict",
    "group_key",
    "utcnow",
]
