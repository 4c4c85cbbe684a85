"""Named feeds an activity goes to besides its followers' ("CC" style): the ``to``
targets of :meth:`~aiostream.manager.Manager.add_user_activity` and the feeds of
:meth:`~aiostream.manager.Manager.add_to_feeds`, checked whole before anything is
written, and cut into fanout chunks like followers are."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiostream._concurrency import chunked
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError, ValidationError
from aiostream.fanout import FanoutChunk, Operation
from aiostream.feeds.base import BaseFeed
from aiostream.ids import plain_user_id

Target = tuple[str, int | str]
"""A feed: its name in the manager's ``feed_classes`` and its user id."""

MAX_TO_TARGETS = 100
"""``to`` targets an activity may have, as GetStream allows."""
MAX_FEEDS = 5000
"""Feeds one ``add_to_feeds`` call may name."""


def checked_targets(
    targets: object, feed_classes: Mapping[str, type[BaseFeed]], *, limit: int, field: str
) -> list[Target]:
    """``targets`` as ``(feed name, user id)`` pairs, each once, in order (a UUID user
    id as its str, the same feed).

    Raises:
        ValidationError: naming ``field`` (not a list, or more than ``limit``
            targets) or ``field[i]`` (not a pair, an unknown feed name, a bad user id).
    """
    if isinstance(targets, str | bytes | Mapping) or not isinstance(targets, Iterable):
        raise ValidationError(field, f"expected a list of (feed, user id) pairs, got {targets!r}")
    found: dict[Target, None] = {}
    for index, target in enumerate(targets):
        where = f"{field}[{index}]"
        if not isinstance(target, tuple | list) or len(target) != 2:
            raise ValidationError(where, f"expected a (feed name, user id) pair, got {target!r}")
        name, user_id = target
        if not isinstance(name, str) or name not in feed_classes:
            raise ValidationError(
                where, f"no feed named {name!r}; feed_classes has {sorted(feed_classes)}"
            )
        found[name, plain_user_id(user_id, where)] = None
    if len(found) > limit:
        raise ValidationError(field, f"at most {limit} feeds, got {len(found)}")
    return list(found)


def target_chunks(
    feed_classes: Mapping[str, type[BaseFeed]],
    targets: Sequence[Target],
    operation: Operation,
    activities: Sequence[Activity],
    *,
    size: int,
    trim: bool = True,
) -> list[FanoutChunk]:
    """Fanout chunks writing ``activities`` into the ``targets`` feeds: per feed name,
    ``size`` users a chunk (no priority: they are not followers).

    Raises:
        ConfigurationError: a target names a feed ``feed_classes`` lacks (a stored
            activity's ``to`` written through another Manager), before anything is
            written, rather than leave that feed holding it.
    """
    by_name: dict[str, list[Any]] = {}
    for name, user_id in targets:
        by_name.setdefault(name, []).append(user_id)
    unknown = sorted(name for name in by_name if name not in feed_classes)
    if unknown:
        raise ConfigurationError(
            f"the activity goes to feeds named {unknown!r} (its `to`), which "
            f"feed_classes lacks (it has {sorted(feed_classes)}); use a Manager that "
            "has them"
        )
    chunks = []
    for name, user_ids in by_name.items():
        entries = feed_classes[name].serialize_activities(activities)
        payloads = tuple(p for _, p in entries)
        activity_ids = tuple(i for i, _ in entries)
        for users in chunked(user_ids, size):
            chunks.append(FanoutChunk(operation, name, users, payloads, None, trim, activity_ids))
    return chunks
