"""JSON rendering of activities, aggregated groups and notifications.

Each item is aiostream's JSON view of it (:meth:`~aiostream.activity.Activity.to_dict`,
:meth:`~aiostream.activity.AggregatedActivity.to_dict`: ids of activities and groups as
strings, since they are far beyond what a JavaScript number holds exactly and are what
cursors are made of; times in ISO 8601 UTC) plus display fields the page shows: ``text``,
and ``actor_name``, ``board`` and ``title`` on activities, ``actors`` on groups. The
display fields are ignored by ``from_dict``, so a client in Python can rebuild what it
reads (``Activity.from_dict(item)``).
"""

from __future__ import annotations

from typing import Any

from aiostream import Activity, AggregatedActivity, Follow, NotificationActivity
from aiostream.ids import ItemId
from examples.pinterest_demo import name, people

__all__ = ["activity_json", "group_json", "notification_json", "user_json"]


def user_json(user_id: ItemId) -> dict[str, Any]:
    """``{"id": 1, "name": "bob"}``."""
    return {"id": user_id, "name": name(user_id)}


def _pin_text(activity: Activity) -> str:
    title = activity.extra_context.get("title") or f"pin #{activity.object_id}"
    board = activity.extra_context.get("board", "?")
    return f"{name(activity.actor_id)} pinned “{title}” to {board}"


def _display(activity: Activity) -> dict[str, Any]:
    """What the page shows of an activity, besides its JSON view."""
    text = (
        f"{name(activity.actor_id)} started following you"
        if activity.verb is Follow
        else _pin_text(activity)
    )
    return {
        "actor_name": name(activity.actor_id),
        "board": activity.extra_context.get("board"),
        "title": activity.extra_context.get("title"),
        "text": text,
    }


def activity_json(activity: Activity) -> dict[str, Any]:
    """One activity (a pin, or a follow inside notifications): its ``to_dict()`` and
    ``actor_name``, ``board``, ``title`` and ``text``."""
    return {**activity.to_dict(), **_display(activity)}


def group_json(group: AggregatedActivity) -> dict[str, Any]:
    """One group of an aggregated feed: its ``to_dict()`` (its activities oldest first,
    each with the display fields of :func:`activity_json`), ``actors`` (newest first,
    with their names) and ``text``."""
    data: dict[str, Any] = dict(group.to_dict())
    for view, activity in zip(data["activities"], group.activities, strict=True):
        view.update(_display(activity))
    actors = list(reversed(group.actor_ids))
    count = group.activity_count
    noun = "pin" if count == 1 else "pins"
    data["actors"] = [user_json(a) for a in actors]
    data["text"] = f"{people(actors, group.actor_count)} {group.verb.past_tense} {count} {noun}"
    return data


def notification_json(group: NotificationActivity) -> dict[str, Any]:
    """One group of a notification feed: :func:`group_json`, whose ``is_seen`` and
    ``is_read`` are the feed's markers, with a notification's ``text``."""
    data = group_json(group)
    who = people(list(reversed(group.actor_ids)), group.actor_count)
    if group.verb is Follow:
        data["text"] = f"{who} started following you"
    elif group.activity_count == 1:
        data["text"] = _pin_text(group.last_activity)
    else:
        data["text"] = f"{who} pinned {group.activity_count} new pins"
    return data
