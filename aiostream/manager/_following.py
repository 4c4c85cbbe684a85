"""Following: what :class:`~aiostream.manager.Manager` does when a user follows or
unfollows others.

A follow copies the targets' recent activities into the user's feeds; an unfollow takes
their activities out (or, with ``keep_history``, leaves the feeds as they are). Both are
jobs of the manager's dispatcher, chunked by target, checked whole before the first is
handed over, and run under a lease per user so that every feed of the user ends as the
last operation left it.

Every request is versioned, so that a job delivered late (retried after its worker was
killed, delivered twice, overtaken by a newer request) cannot undo a newer one. When the
Manager accepts a request it gives it a version, greater than any recorded for its
pairs, and records it as the newest of each (user, target) pair, in the user feed's
storage: a set of maxima (:meth:`~aiostream.storage.base.StateStorage.raise_maxima`)
per user, ``follow.versions:<user>``, by target. The jobs carry the version; under the
user's lease a job leaves out the targets whose newest request is a later one (and does
nothing when none is left). So whatever the order, retries and duplicates of the jobs,
every feed ends as the newest request of each pair left it. An unfollow that keeps
history records its version too (and has no job): a follow retried after it copies
nothing. Jobs without a version (enqueued before versions existed) run as they are.

A version is the time in microseconds, raised past the newest recorded for the pairs
and the last this process gave: later than every request the storage knew of when it
was accepted, whatever the clocks of the processes say.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from aiostream._concurrency import chunked, run_each
from aiostream.activity import Activity
from aiostream.exceptions import ValidationError
from aiostream.fanout import FollowChunk, FollowOperation
from aiostream.ids import format_key, plain_user_id
from aiostream.manager._core import ManagerCore
from aiostream.manager._materialized import Materializer
from aiostream.storage.base import MAX_MAXIMUM, FeedStorage

logger = logging.getLogger("aiostream.manager")

# The set of maxima of a user's requests: per target, the version of the newest.
VERSIONS = "follow.versions:%(user_id)s"


def versions_name(user_id: object) -> str:
    """The set of maxima holding the versions of ``user_id``'s newest requests."""
    return format_key(VERSIONS, user_id)


_clock_lock = threading.Lock()
_last_version = 0


def next_version(newest: int = 0) -> int:
    """A version later than ``newest`` and than every one this process gave: the time in
    microseconds, or one more than the larger of those two when the clock is behind."""
    global _last_version
    with _clock_lock:
        _last_version = max(time.time_ns() // 1000, newest + 1, _last_version + 1)
        return _last_version


def _states(manager: ManagerCore) -> FeedStorage:
    """Where the versions live: the user feed's storage, beside the follow lease."""
    return manager.io_for(manager.user_feed_class)


async def follow_jobs(
    manager: ManagerCore,
    materializer: Materializer | None,
    operation: FollowOperation,
    user_id: Any,
    target_ids: Iterable[Any],
    *,
    activity_copy_limit: int | None = None,
    keep_history: bool = False,
    field: str = "",
) -> list[FollowChunk]:
    """The jobs of a follow or unfollow request (see :func:`follow_chunks`), everything
    checked, then the request's version recorded as the newest of each pair (an unfollow
    that keeps history too, though it has no job) and given to the jobs."""
    chunks = follow_chunks(
        manager,
        operation,
        user_id,
        target_ids,
        activity_copy_limit=activity_copy_limit,
        keep_history=keep_history,
        field=field,
    )
    if not chunks:
        return []
    targets = [target for chunk in chunks for target in chunk.target_ids]
    version = await record_request(manager, chunks[0].user_id, targets)
    if keep_history:
        if materializer is not None:
            await materializer.note_unfollow(chunks[0].user_id, targets, version, keep_history=True)
        return []
    return [replace(chunk, version=version) for chunk in chunks]


async def record_request(manager: ManagerCore, user_id: Any, target_ids: Sequence[Any]) -> int:
    """Give a request of ``user_id`` about ``target_ids`` its version, record it as the
    newest of each pair and return it: two round trips (a read of the pairs' newest
    versions, then a raise of each to the new one, which a concurrent request with a
    later version is never lowered by)."""
    storage = _states(manager)
    name = versions_name(user_id)
    members = list(dict.fromkeys(str(target) for target in target_ids))
    recorded = await storage.load_maxima(name, members)
    version = next_version(max(recorded.values(), default=0))
    await storage.raise_maxima(name, dict.fromkeys(members, version))
    return version


async def newest_part(manager: ManagerCore, job: FollowChunk) -> FollowChunk | None:
    """``job`` without the targets whose newest request is later than the job's (run
    under the user's lease); None when it is left with none. A job without a version is
    returned as it is.

    Raises:
        ValidationError: a version that is not an int in ``[0, 2**53)``.
    """
    version = job.version
    if version is None:
        return job
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < MAX_MAXIMUM:
        raise ValidationError("version", f"expected an int in [0, 2**53), got {version!r}")
    members = [str(target) for target in job.target_ids]
    recorded = await _states(manager).load_maxima(versions_name(job.user_id), members)
    current = tuple(
        target
        for target, member in zip(job.target_ids, members, strict=True)
        if recorded.get(member, 0) <= version
    )
    if len(current) < len(job.target_ids):
        logger.debug(
            "%s of user %s: %d of %d targets left out, a newer request came for them",
            job.operation,
            job.user_id,
            len(job.target_ids) - len(current),
            len(job.target_ids),
        )
    if not current:
        return None
    return job if len(current) == len(job.target_ids) else replace(job, target_ids=current)


def follow_chunks(
    manager: ManagerCore,
    operation: FollowOperation,
    user_id: Any,
    target_ids: Iterable[Any],
    *,
    activity_copy_limit: int | None = None,
    keep_history: bool = False,
    field: str = "",
) -> list[FollowChunk]:
    """The chunks of a follow or unfollow, everything checked (``field``: the argument
    name of a lone target; else targets are ``target_ids[i]``), without a version (an
    unfollow that keeps history has chunks too: :func:`follow_jobs` drops them).

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
    return [
        FollowChunk(operation, user_id, chunk, limit)
        for chunk in chunked(targets, manager.fanout_chunk_size)
    ]


async def apply_follow(
    manager: ManagerCore, materializer: Materializer | None, job: FollowChunk
) -> None:
    """The work of one follow or unfollow chunk (its lease held by the caller), with
    the Manager's materialization policy at work when it has one."""
    # (a job enqueued before versions existed: the state is recorded as of now)
    version = next_version() if job.version is None else job.version
    if job.operation == "unfollow":
        if materializer is not None:
            await materializer.note_unfollow(
                job.user_id, job.target_ids, version, keep_history=False
            )
        feeds = manager.get_feeds(job.user_id).values()
        await run_each(feeds, lambda feed: feed.remove_actors(job.target_ids))
        return
    limit = job.activity_copy_limit
    limit = manager.follow_activity_limit if limit is None else limit
    names = manager.feed_classes if manager.follow_feeds is None else manager.follow_feeds
    if materializer is not None:
        await materializer.note_follow(job.user_id, job.target_ids, version)
    await copy_recent(manager, job.user_id, job.target_ids, limit, names)


async def copy_recent(
    manager: ManagerCore, user_id: Any, target_ids: Sequence[Any], limit: int, names: Iterable[str]
) -> None:
    """Copy the ``limit`` newest activities of each of ``target_ids``' own feeds into the
    feeds ``names`` of ``user_id``."""
    if limit == 0:
        return
    activities: list[Activity] = []
    for target in target_ids:
        activities.extend(await manager.get_user_feed(target)[:limit])
    if not activities:
        return

    async def copy_into(name: str) -> None:
        feed_class = manager.feed_classes[name]
        await feed_class.fanout_add(
            [user_id],
            activities,
            storage=manager.storage_for(feed_class),
            metrics=manager.feed_metrics,
        )

    await run_each(names, copy_into)
