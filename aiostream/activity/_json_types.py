"""The types of the JSON views: what ``to_dict()`` returns, as TypedDicts.

They are typing only (at run time each view is a plain dict, the same as before they
existed): a type checker then knows every key of a view, and a web framework that reads
return types (FastAPI's ``response_model=``, pydantic's ``TypeAdapter``) documents and
checks the real schema instead of "an object". They come from ``typing_extensions``
because pydantic refuses ``typing.TypedDict`` before Python 3.12, and without postponed
annotations, so that ``NotRequired`` keys are known at run time too.

A subclass whose ``to_dict()`` adds keys declares them in a TypedDict subclass, and
builds its view from the parent's::

    class PinDict(ActivityDict):
        title: str

    class PinActivity(Activity):
        def to_dict(self) -> PinDict:
            return {**super().to_dict(), "title": self.extra_context["title"]}

A view that only adds display fields for one response needs no class of its own:
``{**activity.to_dict(), "text": ...}`` is a ``dict[str, object]``, which a handler can
return as it is.
"""

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

IdType = Literal["int", "uuid"]
"""What ``"id_types"`` says a str id is: a wide int or a UUID."""

IdTypes = dict[str, IdType]
"""A view's ``"id_types"``: the key of each id written as a str that is not one
(``"actor"``, ``"to.0"``, ``"actor_ids.3"``) and what it is."""


class ActivityDict(TypedDict):
    """What :class:`~aiostream.activity.Activity`'s
    :meth:`~aiostream.activity.Activity.to_dict` returns: one activity as JSON-ready data
    (see there for each key). ``"id_types"`` is there only when some id
    is written as a str that is not one."""

    id: str
    actor: int | str
    verb: str
    verb_id: int
    object: int | str
    target: int | str | None
    time: str
    foreign_id: str | None
    to: list[list[int | str]]
    """``[feed name, user id]`` pairs."""
    extra_context: dict[str, Any]
    id_types: NotRequired[IdTypes]


class AggregatedActivityDict(TypedDict):
    """What :class:`~aiostream.activity.AggregatedActivity`'s
    :meth:`~aiostream.activity.AggregatedActivity.to_dict` returns: one group as
    JSON-ready data (see there for each key). ``"activities"`` holds each activity's
    :class:`ActivityDict`; ``"id_types"`` is there only when some actor id is written as
    a str that is not one."""

    id: str
    group: str
    verb: str
    verb_id: int
    activity_count: int
    actor_count: int
    actor_ids: list[int | str]
    created_at: str | None
    updated_at: str | None
    seen_at: str | None
    read_at: str | None
    minimized_activities: int
    activities: list[ActivityDict]
    id_types: NotRequired[IdTypes]


class NotificationActivityDict(AggregatedActivityDict):
    """What :class:`~aiostream.activity.NotificationActivity`'s
    :meth:`~aiostream.activity.NotificationActivity.to_dict` returns: an
    :class:`AggregatedActivityDict` plus the feed's markers."""

    is_seen: bool
    is_read: bool
