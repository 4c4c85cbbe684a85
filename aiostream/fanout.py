"""Fanout work as plain data, and the dispatchers that carry it out.

The Manager cuts its work into jobs: :class:`FanoutChunk` (an operation, a feed by its
name in ``Manager.feed_classes``, a chunk of follower ids and the serialized activities)
and :class:`FollowChunk` (a user and a chunk of users they follow or unfollow). Nothing
in a job is a Python object that needs pickle, so the same job can run in-process
(:class:`InProcessDispatcher`, the default) or travel to workers
(:class:`aiostream.tasks.ArqDispatcher`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, overload

from aiostream._concurrency import run_bounded
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError, FanoutError, ValidationError

if TYPE_CHECKING:
    from aiostream.serializers import ActivitySerializer

__all__ = [
    "Dispatcher",
    "FanoutChunk",
    "FanoutPriority",
    "FollowChunk",
    "InProcessDispatcher",
    "Job",
    "StoredActivities",
    "join_chunks",
]


class FanoutPriority(enum.StrEnum):
    """Follower groups; each priority can be carried by its own queue and workers."""

    HIGH = "HIGH"
    LOW = "LOW"


Operation = Literal["add", "remove", "update"]
FollowOperation = Literal["follow", "unfollow"]


# Fields added after jobs were first enqueued: left out of a job's data while unset, so
# the jobs (and their ids) of everything that does not use them stay as they were.
_OMITTED_WHEN_NONE = frozenset({"producer", "version", "manager"})


class _PlainJob:
    """Shared by the job types: JSON-ready data and a deterministic id."""

    __slots__ = ()

    operation: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists)."""
        # Shallow on purpose: dataclasses.asdict deep-copies every follower id, which
        # made enqueueing a 100,000-follower fanout take seconds.
        values = ((f.name, getattr(self, f.name)) for f in fields(self))  # type: ignore[arg-type]
        return {
            name: list(v) if isinstance(v, tuple) else v
            for name, v in values
            if v is not None or name not in _OMITTED_WHEN_NONE
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; fields a job of an earlier version lacks take their
        defaults.

        Raises:
            ValidationError: a required field is missing.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                value = data[f.name]
                values[f.name] = tuple(value) if str(f.type).startswith("tuple") else value
            elif f.default is MISSING:
                raise ValidationError(f.name, f"missing from the {cls.__name__} job")
        return cls(**values)

    @property
    def job_id(self) -> str:
        """Deterministic id: the same work always gets the same id, so enqueueing it
        twice while the first is still waiting runs it once."""
        digest = hashlib.blake2b(
            json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode(),
            digest_size=16,
        ).hexdigest()
        return f"aiostream:{self.operation}:{digest}"


@dataclass(frozen=True, slots=True)
class FanoutChunk(_PlainJob):
    """One unit of fanout work: apply ``operation`` of ``activities`` to the ``feed``
    of every user in ``user_ids``.

    Attributes:
        operation: ``"add"``, ``"remove"`` or ``"update"`` (replace the copies of
            activities the feeds hold; add them nowhere).
        feed: Name of the feed class in the manager's ``feed_classes``.
        user_ids: Follower ids of this chunk.
        activities: Serialized activities (the feed class's activity format).
        priority: The follower group's priority (``"HIGH"``, ``"LOW"``, …) or None.
        trim: Whether writes may trim the feeds.
        activity_ids: The activities' ids, in order (empty in jobs of older versions):
            with them a flat feed's fanout writes the payloads as they are, decoding
            nothing.
        producer: The user whose activities these are, when a materialization policy
            needs it to choose which followers are written (see
            :mod:`aiostream.materialize`); None otherwise.
        manager: The :attr:`~aiostream.manager.Manager.name` of the Manager that cut
            it, so that a worker running several Managers runs it with the right one
            (``feed`` is a name in that Manager's ``feed_classes``); None in jobs of
            older versions, which a worker runs with its first Manager.
    """

    operation: Operation
    feed: str
    user_ids: tuple[int | str, ...]
    activities: tuple[str, ...]
    priority: str | None = None
    trim: bool = True
    activity_ids: tuple[int, ...] = ()
    producer: int | str | None = None
    manager: str | None = None

    @property
    def work(self) -> tuple[Any, ...]:
        """What the chunk does, whoever it does it for (chunks with the same work may
        be joined: :func:`join_chunks`)."""
        return (
            self.operation,
            self.feed,
            self.activities,
            self.activity_ids,
            self.priority,
            self.trim,
            self.producer,
            self.manager,
        )

    def stored_activities(self, serializer: ActivitySerializer[Any]) -> StoredActivities:
        """The chunk's activities, decoded by ``serializer`` only when looked at."""
        entries = None
        if len(self.activity_ids) == len(self.activities):
            entries = list(zip(self.activity_ids, self.activities, strict=True))
        return StoredActivities(self.activities, serializer, entries)


def join_chunks(jobs: Sequence[Job], size: int) -> list[Job]:
    """``jobs`` with consecutive fanout chunks of the same work (operation, feed,
    activities, priority, trim, Manager) joined, as long as a joined chunk holds at most ``size``
    followers; a bigger chunk stays as it is, follow jobs pass through. Fewer, bigger
    jobs: each costs a worker a fixed overhead (see :class:`~aiostream.tasks.ArqDispatcher`).
    """
    joined: list[Job] = []
    for job in jobs:
        last = joined[-1] if joined else None
        if (
            isinstance(job, FanoutChunk)
            and isinstance(last, FanoutChunk)
            and last.work == job.work
            and len(last.user_ids) + len(job.user_ids) <= size
        ):
            joined[-1] = replace(last, user_ids=last.user_ids + job.user_ids)
        else:
            joined.append(job)
    return joined


class StoredActivities(Sequence[Activity]):
    """Activities in their stored form, decoded when first looked at.

    A fanout chunk carries its activities serialized; a flat feed's fanout writes
    :attr:`entries` as they are, and only the feed kinds that look at the activities
    (aggregated feeds group them) decode them, once.

    Args:
        payloads: The stored activities.
        serializer: Decodes them.
        entries: ``(id, payload)`` of each, when known without decoding.
    """

    __slots__ = ("_decoded", "_payloads", "_serializer", "entries")

    def __init__(
        self,
        payloads: Sequence[str],
        serializer: ActivitySerializer[Any],
        entries: list[tuple[int, str]] | None = None,
    ) -> None:
        self._payloads = payloads
        self._serializer = serializer
        self._decoded: list[Activity] | None = None
        self.entries = entries

    def _activities(self) -> list[Activity]:
        if self._decoded is None:
            self._decoded = [self._serializer.loads(p) for p in self._payloads]
        return self._decoded

    def __len__(self) -> int:
        return len(self._payloads)

    @overload
    def __getitem__(self, index: int) -> Activity: ...

    @overload
    def __getitem__(self, index: slice) -> list[Activity]: ...

    def __getitem__(self, index: int | slice) -> Activity | list[Activity]:
        return self._activities()[index]

    def __iter__(self) -> Iterator[Activity]:
        return iter(self._activities())


@dataclass(frozen=True, slots=True)
class FollowChunk(_PlainJob):
    """Follow (copy recent activities in) or unfollow (take their activities out):
    ``user_id``'s feeds and the users in ``target_ids``.

    Attributes:
        operation: ``"follow"`` or ``"unfollow"``.
        user_id: The user whose feeds change.
        target_ids: The users followed or unfollowed (one chunk of them).
        activity_copy_limit: Activities a follow copies from each target (None: the
            manager's ``follow_activity_limit``).
        version: The request's version, recorded for each (user, target) pair when the
            Manager accepted it: the job does nothing for a pair whose newest request
            is a later one (see :mod:`aiostream.manager._following`). None in jobs of older
            versions, which run as they are.
        manager: The name of the Manager that made it, as in :class:`FanoutChunk`.
    """

    operation: FollowOperation
    user_id: int | str
    target_ids: tuple[int | str, ...]
    activity_copy_limit: int | None = None
    version: int | None = None
    manager: str | None = None


Job = FanoutChunk | FollowChunk
JobRunner = Callable[[Job], Awaitable[None]]


class Dispatcher(Protocol):
    """Carries out the manager's jobs (now, in this process, or later, in workers)."""

    async def dispatch(self, jobs: Sequence[Job], run: JobRunner) -> None:
        """Make sure every job gets ``run``; raise if any could not be handed over."""


class InProcessDispatcher:
    """Runs jobs concurrently in this process, at most ``max_concurrency`` at a time.

    Every job runs even when some fail; the failures are then raised together as a
    :class:`~aiostream.exceptions.FanoutError` (each failed job is in it, so nothing
    is reported written that was not).
    """

    def __init__(self, max_concurrency: int = 8) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError(f"max_concurrency must be an int, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency

    async def dispatch(self, jobs: Sequence[Job], run: JobRunner) -> None:
        """Run every job; raise :class:`FanoutError` listing those that failed."""
        failures = await run_bounded(jobs, run, limit=self.max_concurrency, on_failure="finish")
        if failures:
            raise FanoutError(failures)
