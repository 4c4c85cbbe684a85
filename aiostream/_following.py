"""Following: what :class:`~aiostream.manager.Manager` does when a user follows or
unfollows others.

A follow copies the targets' recent activities into the user's feeds; an unfollow takes
their activities out (or, with ``keep_history``, leaves the feeds as they are). Both are
jobs of the manager's dispatcher, chunked by target, checked whole before the first is
handed over, and run under a lease per user so that every feed of the user ends as the
last operation left it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiostream._concurrency import chunked, run_each
from aiostream.activity import Activity
from aiostream.exceptions import ValidationError
from aiostream.fanout import FollowChunk, FollowOperation
from aiostream.feeds.base import plain_user_id

if TYPE_CHECKING:
    from aiostream.manager import Manager


def follow_chunks(
    manager: Manager,
    operation: FollowOperation,
    user_id: Any,
    target_ids: Iterable[Any],
    *,
    activity_copy_limit: int | None = None,
    keep_history: bool = False,
    field: str = "",
) -> list[FollowChunk]:
    """The chunks of a follow or unfollow, everything checked (``field``: the argument
    name of a lone target; else targets are ``target_ids[i]``); none for an unfollow
    that keeps history.

    Raises:
        ValidationError: a bad user id, a user following themself (naming the target),
            a limit that is not None or an int of at least 0, a ``keep_history`` that
            is not a bool.
    """
    user_id = plain_user_id(user_id)
    if isinstance(target_ids, str | bytes):
        raise ValidationError("target_ids", "expected a collection of user ids, got a str")
    limit = activity_copy_limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError(
            "activity_copy_limit", f"expected None or an int of at least 0, got {limit!r}"
        )
    if not isinstance(keep_history, bool):
        raise ValidationError("keep_history", f"expected a bool, got {type(keep_history).__name__}")
    own = str(user_id)  # the feed's name, as check_user_id gives it
    targets = []
    for index, target in enumerate(target_ids):
        where = field or f"target_ids[{index}]"
        plain = plain_user_id(target, where)
        if operation == "follow" and str(plain) == own:
            raise ValidationError(where, f"user {user_id!r} cannot follow themself")
        targets.append(plain)
    if keep_history:
        return []
    return [
        FollowChunk(operation, user_id, chunk, limit)
        for chunk in chunked(targets, manager.fanout_chunk_size)
    ]


async def apply_follow(manager: Manager, job: FollowChunk) -> None:
    """The work of one follow or unfollow chunk (its lease held by the caller)."""
    if job.operation == "unfollow":
        feeds = manager.get_feeds(job.user_id).values()
        await run_each(feeds, lambda feed: feed.remove_actors(job.target_ids))
        return
    limit = job.activity_copy_limit
    limit = manager.follow_activity_limit if limit is None else limit
    if limit == 0:
        return
    activities: list[Activity] = []
    for target in job.target_ids:
        activities.extend(await manager.get_user_feed(target)[:limit])
    if not activities:
        return
    names = manager.feed_classes if manager.follow_feeds is None else manager.follow_feeds

    async def copy_into(name: str) -> None:
        feed_class = manager.feed_classes[name]
        await feed_class.fanout_add(
            [job.user_id],
            activities,
            storage=manager.storage_for(feed_class),
            metrics=manager._feed_metrics,
        )

    await run_each(names, copy_into)
