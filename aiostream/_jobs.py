"""What both sides of arq fanout share, without importing arq: the queue names and
routing, where the queue Redis is, which errors are retried, the JSON job format and the
record of a failed job.
:mod:`aiostream.tasks` is the public module (the dispatcher and the worker functions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from aiostream.exceptions import (
    ConfigurationError,
    ConflictError,
    FanoutError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from aiostream.fanout import FanoutPriority, FollowChunk, Job
from aiostream.settings import Settings

HIGH_QUEUE = "aiostream:high"
LOW_QUEUE = "aiostream:low"
DEFAULT_QUEUE = "aiostream:default"

QUEUE_VARIABLES = ("STREAM_ARQ_REDIS_URL", "STREAM_REDIS_URL")


def queue_redis_url(settings: Settings | None, needed_by: str) -> str:
    """The URL of the queue Redis: ``settings.arq_redis_url or settings.redis_url``, or,
    with no settings, the first of :data:`QUEUE_VARIABLES` that is set.

    Raises:
        ConfigurationError: no settings and neither variable set (``Settings``'
            default, 127.0.0.1, is nobody's choice here), naming ``needed_by``.
    """
    if settings is not None:
        return settings.arq_redis_url or settings.redis_url
    for variable in QUEUE_VARIABLES:
        url = os.environ.get(variable)
        if url:
            return url
    raise ConfigurationError(
        f"{needed_by} needs the queue Redis: pass settings=Settings(redis_url=...) "
        f"(or arq_redis_url=...), or set {' or '.join(QUEUE_VARIABLES)}"
    )


# Errors a later try can get past; anything else (bad payload, unknown feed) fails at once.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    StorageUnavailableError,
    StorageTimeoutError,
    ConflictError,
)


def is_transient(error: BaseException) -> bool:
    """Whether a later try can get past ``error``: one of :data:`TRANSIENT_ERRORS`, or a
    :class:`FanoutError` (a fanout whose parts failed at once) holding only such errors."""
    if isinstance(error, FanoutError):
        return bool(error.failures) and all(is_transient(e) for e in error.errors)
    return isinstance(error, TRANSIENT_ERRORS)


def json_serializer(data: Any) -> bytes:
    """arq job serializer: compact JSON (exceptions in results become their repr)."""
    return json.dumps(data, separators=(",", ":"), default=repr).encode()


def json_deserializer(raw: bytes) -> Any:
    """arq job deserializer, the inverse of :func:`json_serializer`."""
    return json.loads(raw)


def follow_arguments(job: FollowChunk) -> tuple[Any, ...]:
    """The positional arguments of ``follow_many`` / ``unfollow_many`` for ``job``: the
    user, the targets, then (a follow) the activity copy limit, the version and the
    Manager's name; what a job does not use is left off the end, so jobs without them
    stay as they were."""
    extra: list[Any] = []
    if job.operation == "follow":
        extra.append(job.activity_copy_limit)
    extra += [job.version, job.manager]
    while extra and extra[-1] is None:
        extra.pop()
    return (job.user_id, list(job.target_ids), *extra)


@dataclass(frozen=True, kw_only=True)
class Queues:
    """Where aiostream's jobs go.

    Attributes:
        high: Queue of fanout chunks for ``FanoutPriority.HIGH`` followers.
        low: Queue of fanout chunks for ``FanoutPriority.LOW`` followers.
        default: Queue of other priorities' chunks and of follow / unfollow jobs.
        failed: Redis hash of jobs that failed for good, by job id.
        managers: Redis hash of the Managers each queue's workers run, by queue (each
            worker records its own at start-up; the dispatcher reads it).
    """

    high: str = HIGH_QUEUE
    low: str = LOW_QUEUE
    default: str = DEFAULT_QUEUE
    failed: str = "aiostream:failed"
    managers: str = "aiostream:managers"

    def route(self, job: Job) -> tuple[str, str, tuple[Any, ...]]:
        """``(function name, queue, arguments)`` a job is enqueued with."""
        if isinstance(job, FollowChunk):
            return f"{job.operation}_many", self.default, follow_arguments(job)
        if job.priority == FanoutPriority.HIGH:
            return "fanout_operation_high", self.high, (job.to_dict(),)
        if job.priority == FanoutPriority.LOW:
            return "fanout_operation_low", self.low, (job.to_dict(),)
        return "fanout_operation", self.default, (job.to_dict(),)


@dataclass(frozen=True, kw_only=True)
class FailedJob:
    """A job that ended without its effect, as recorded by the worker.

    Attributes:
        job_id: The job's (deterministic) id.
        function: The arq function name.
        queue: The queue it ran from.
        args: Its plain-data arguments.
        error: ``repr`` of the last exception.
        error_type: The exception's class name.
        tries: How many times it ran.
        failed_at: Unix time of the last failure.
        reason: What ended it: ``"error"`` (an error a retry cannot get past),
            ``"tries exhausted"`` (a transient error on its last try, or ``max_tries``
            runs that never finished, their worker killed or stopped), ``"timeout"``
            (its last try outlasted ``job_timeout``) or ``"cancelled"`` (stopped by its worker
            or aborted; a job arq runs again loses this record when it succeeds).
    """

    job_id: str
    function: str
    queue: str
    args: list[Any]
    error: str
    error_type: str
    tries: int
    failed_at: float
    reason: str = "error"

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> FailedJob:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(raw))
