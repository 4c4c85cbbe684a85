"""Updates: a published activity's new version replaces it everywhere it is shown
(see :meth:`~aiostream.manager.Manager.update_user_activities` and
:meth:`~aiostream.manager.Manager.partial_update_activity`)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from aiostream.activity import Activity
from aiostream.exceptions import ValidationError
from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import BaseFeed
from aiostream.manager._core import ManagerCore
from aiostream.manager._partial import apply_changes, checked_changes
from aiostream.storage.base import Capability, has


async def update_activities(
    manager: ManagerCore,
    activities: Iterable[Activity],
    originals: Mapping[int, Activity] | None = None,
) -> None:
    """The work of :meth:`~aiostream.manager.Manager.update_user_activities`
    (``originals``: the stored versions, by id, when the caller has read them already)."""
    activities = list(activities)
    if not activities:
        return
    user_class = manager.user_feed_class
    entries = user_class.serialize_activities(activities)
    if originals is None:
        user_storage = manager.io_for(user_class)
        stored = await user_storage.load_activities([i for i, _ in entries])
        serializer = user_class.get_activity_serializer()
        originals = {i: serializer.loads(payload) for i, payload in stored.items()}
    by_actor: dict[Any, list[Activity]] = {}
    for index, ((activity_id, _), activity) in enumerate(zip(entries, activities, strict=True)):
        field = "activity" if len(activities) == 1 else f"activities[{index}]"
        original = originals.get(activity_id)
        if original is None:
            raise ValidationError(
                field,
                f"no stored activity has id {activity_id}: it was never published, or "
                "its actor, verb, object, target or time changed (they make the id; an "
                "update changes extra_context only)",
            )
        check_groups(manager, activity, original)
        activity.to = original.to  # the targets it was published to stay its own
        by_actor.setdefault(activity.actor_id, []).append(activity)
    chunks = [
        chunk
        for actor, updated in by_actor.items()
        for chunk in [
            *await manager.fanout_chunks(actor, "update", updated, trim=False),
            *(c for a in updated for c in manager.target_chunks("update", [a], a.to)),
        ]
    ]
    if any(a.to for a in activities):  # stored with the targets each keeps
        entries = user_class.serialize_activities(activities)
    for storage in manager.storages(user_class, *manager.feed_classes.values()):
        await storage.store_activities(entries)
    for actor, updated in by_actor.items():
        await user_class.fanout_update(
            [actor],
            updated,
            storage=manager.storage_for(user_class),
            metrics=manager.feed_metrics,
        )
    # Flat feeds read the activity storage: only feeds holding copies need a job, and
    # flat feeds only while someone may be subscribed to them (to be told).
    needed = {
        name
        for name, feed_class in manager.feed_classes.items()
        if feed_class.keeps_copies or await _listening(manager, feed_class)
    }
    await manager.dispatch([chunk for chunk in chunks if chunk.feed in needed])


def check_groups(manager: ManagerCore, activity: Activity, original: Activity) -> None:
    """Refuse an update that moves ``activity`` to another group of an aggregated feed
    (the feeds find the copy to replace by its group)."""
    for name, feed in manager.get_feeds(activity.actor_id).items():
        if not isinstance(feed, AggregatedFeed):
            continue
        aggregator = feed.get_aggregator()
        before, after = aggregator.group_of(original), aggregator.group_of(activity)
        if before != after:
            raise ValidationError(
                "extra_context",
                f"the update moves the activity from group {before!r} to {after!r} of "
                f"feed {name!r}; remove the activity and publish the new one instead",
            )


async def partial_update(
    manager: ManagerCore,
    activity_id: int | str | None,
    foreign_id: str | None,
    time: dt.datetime | None,
    set_: object,
    unset: object,
) -> Activity:
    """The work of :meth:`~aiostream.manager.Manager.partial_update_activity`: the paths
    checked first, then the stored activity looked up, changed and updated."""
    sets, unsets = checked_changes(set_, unset)
    if isinstance(activity_id, Activity):  # (an id is looked up: the stored version counts)
        raise ValidationError("activity_id", "expected an int id, got an Activity")
    original = await manager.named_activity(activity_id, foreign_id, time)
    changed = copy.copy(original)
    changed.extra_context = apply_changes(original.extra_context, sets, unsets)
    await update_activities(manager, [changed], {original.serialization_id: original})
    return changed


async def _listening(manager: ManagerCore, feed_class: type[BaseFeed[Any]]) -> bool:
    """Whether anyone may be subscribed to feeds of ``feed_class`` (never, on a storage
    that carries no updates)."""
    if not has(manager.storage_for(feed_class), Capability.UPDATES):
        return False
    return await manager.io_for(feed_class).listening()
