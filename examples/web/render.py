"""JSON rendering of activities, aggregated groups and notifications.

Ids of activities and groups are rendered as strings: they are 128-bit-sized integers
(see :mod:`aiostream.ids`), far beyond what a JavaScript number holds exactly, and they
are what cursors are made of.
"""

from __future__ import annotations

from typing import Any

from aiostream import Activity, AggregatedActivity, Follow
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


def activity_json(activity: Activity) -> dict[str, Any]:
    """One activity: a pin (or a follow, inside notifications)."""
    text = (
        f"{name(activity.actor_id)} started following you"
        if activity.verb is Follow
        else _pin_text(activity)
    )
    return {
        "id": str(activity.serialization_id),
        "actor": user_json(activity.actor_id),
        "verb": activity.verb.infinitive,
        "object_id": activity.object_id,
        "time": activity.time.isoformat(),
        "board": activity.extra_context.get("board"),
        "title": activity.extra_context.get("title"),
        "text": text,
    }


def _iso(group: AggregatedActivity, field: str) -> str | None:
    value = getattr(group, field)
    return None if value is None else str(value.isoformat())


def group_json(group: AggregatedActivity) -> dict[str, Any]:
    """One group of an aggregated feed, its activities newest first."""
    actors = list(reversed(group.actor_ids))
    count = group.activity_count
    noun = "pin" if count == 1 else "pins"
    return {
        "id": str(group.serialization_id),
        "group": group.group,
        "verb": group.verb.infinitive,
        "actors": [user_json(a) for a in actors],
        "actor_count": group.actor_count,
        "activity_count": count,
        "created_at": _iso(group, "created_at"),
        "updated_at": _iso(group, "updated_at"),
        "activities": [activity_json(a) for a in group.last_activities],
        "text": f"{people(actors, group.actor_count)} {group.verb.past_tense} {count} {noun}",
    }


def notification_json(group: AggregatedActivity) -> dict[str, Any]:
    """One group of a notification feed, with its seen / read state."""
    data = group_json(group)
    actors = list(reversed(group.actor_ids))
    who = people(actors, group.actor_count)
    if group.verb is Follow:
        data["text"] = f"{who} started following you"
    elif group.activity_count == 1:
        data["text"] = _pin_text(group.last_activity)
    else:
        data["text"] = f"{who} pinned {group.activity_count} new pins"
    data["seen"] = group.is_seen()
    data["read"] = group.is_read()
    return data
