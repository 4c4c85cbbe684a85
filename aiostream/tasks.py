"""Fanout as arq jobs: the dispatcher that enqueues them and the functions workers run.

Install with ``pip install "aiostream-feeds[redis,arq]"`` (arq needs redis-py 5).
``import aiostream`` never imports this module (nor arq).

In the web process, give the Manager an :class:`ArqDispatcher`; ``add_user_activity``,
``remove_user_activity``, ``follow_*``, ``unfollow_*`` and ``batch_import`` then store
the activity in the user's own feed and enqueue the fanout as jobs (the Manager's chunks
of ``fanout_chunk_size`` followers, joined into jobs of up to ``job_size``), on one queue
per priority::

    dispatcher = await ArqDispatcher.connect("redis://queue:6379/0")
    manager = PinManager(dispatcher=dispatcher)
    await manager.add_user_activity(pin.user_id, activity)
    ...
    await dispatcher.aclose()

In a worker module, build the worker settings from a function that returns the
Manager, one class per queue you want to run workers for::

    # myapp/workers.py
    from aiostream.tasks import HIGH_QUEUE, LOW_QUEUE, worker_settings
    from myapp.feeds import PinManager

    HighWorker = worker_settings(PinManager, queue=HIGH_QUEUE)
    LowWorker = worker_settings(PinManager, queue=LOW_QUEUE)
    WorkerSettings = worker_settings(PinManager)        # the default queue

and run ``arq myapp.workers.HighWorker`` (and so on), as many processes as you like.

Delivery is at least once and exactly once in effect:

* a job's id is derived from its content, so enqueueing the same work twice while it
  waits runs it once; results are not kept, so the same work enqueued later (say, an
  activity added again after a removal) runs again;
* every job is idempotent (activity ids are deterministic, feeds de-duplicate by id), so
  a job that runs twice (a retry, a worker killed mid-job) leaves every feed as if it
  had run once;
* storage errors (:class:`~aiostream.exceptions.StorageUnavailableError`,
  :class:`~aiostream.exceptions.StorageTimeoutError`,
  :class:`~aiostream.exceptions.ConflictError`, or a
  :class:`~aiostream.exceptions.FanoutError` holding only those) are retried with
  exponential backoff up to ``max_tries``;
* a job ends with its effect or with a record in a Redis hash
  (:meth:`ArqDispatcher.failed_jobs`), whatever ended it: another error, its tries used
  up (by errors, or by runs that never finished because their worker was killed),
  ``job_timeout``, or a cancellation (the record of a job that arq runs again, as after
  a worker stopped, is removed when a later try succeeds). From there a job can be put
  back on its queue (:meth:`ArqDispatcher.requeue_failed`);
* workers retry their commands to the queue Redis for ``queue_outage`` seconds, so
  they ride out its restart.

Payloads are plain JSON (``FanoutChunk.to_dict()``; user ids and target ids for follow
jobs), never pickle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio

from aiostream.exceptions import requires_extra

with requires_extra("aiostream.tasks", "arq", "redis,arq"):
    from arq import Retry, create_pool
    from arq.connections import ArqRedis, RedisSettings
    from arq.constants import job_key_prefix, result_key_prefix
    from arq.jobs import serialize_job
    from arq.utils import timestamp_ms, to_seconds
    from arq.worker import JobExecutionFailed, func
    from redis.asyncio.retry import Retry as RedisRetry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

from aiostream._concurrency import run_bounded
from aiostream._jobs import (
    DEFAULT_QUEUE,
    HIGH_QUEUE,
    LOW_QUEUE,
    FailedJob,
    Queues,
    is_transient,
    json_deserializer,
    json_serializer,
)
from aiostream.exceptions import (
    ConfigurationError,
    FanoutError,
)
from aiostream.fanout import FanoutChunk, FollowChunk, Job, join_chunks
from aiostream.manager import Manager
from aiostream.settings import Settings
from aiostream.storage.registry import Storages

__all__ = [
    "ArqDispatcher",
    "DEFAULT_QUEUE",
    "FailedJob",
    "HIGH_QUEUE",
    "LOW_QUEUE",
    "ManagerFactory",
    "Queues",
    "fanout_operation",
    "fanout_operation_high",
    "fanout_operation_low",
    "follow_many",
    "is_transient",
    "json_deserializer",
    "json_serializer",
    "unfollow_many",
    "worker_settings",
]

# KEYS: the queue, then each job's job key and result key; ARGV: enqueue time (the
# score), expiry in ms, then each job's id and serialized data. The same checks and
# writes as arq's enqueue_job, for a whole batch in one call.
_ENQUEUE = """
local added = 0
for i = 3, #ARGV, 2 do
    local n = i - 1
    if redis.call('EXISTS', KEYS[n], KEYS[n + 1]) == 0 then
        redis.call('PSETEX', KEYS[n], ARGV[2], ARGV[i + 1])
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
        added = added + 1
    end
end
return added
"""


class ArqDispatcher:
    """Hands the Manager's jobs to arq workers through Redis.

    Args:
        pool: An arq pool (``arq.create_pool``) using :func:`json_serializer` /
            :func:`json_deserializer`; left open by :meth:`aclose` unless ``own_pool``.
        queues: Queue names (defaults: ``aiostream:high``, ``aiostream:low``,
            ``aiostream:default``); workers must use the same.
        max_in_flight: Enqueue requests sent concurrently.
        batch_size: Jobs enqueued by one request.
        job_size: Followers per job at most when joining: consecutive fanout chunks of
            the same work are joined into one job while it stays within this many
            followers (a bigger chunk of the Manager's stays as it is; ``None``: one job
            per chunk). A job costs a worker a fixed overhead, so a few big jobs move
            more feed writes per second than many small ones (``benchmarks/arq_bench.py``
            and the README's performance section).
        own_pool: Close ``pool`` in :meth:`aclose`.

    Example::

        async with await ArqDispatcher.connect("redis://localhost:6379/0") as dispatcher:
            manager = PinManager(dispatcher=dispatcher)
            await manager.add_user_activity(1, activity)
    """

    def __init__(
        self,
        pool: ArqRedis,
        *,
        queues: Queues | None = None,
        max_in_flight: int = 8,
        batch_size: int = 200,
        job_size: int | None = 1000,
        own_pool: bool = False,
    ) -> None:
        if max_in_flight < 1 or batch_size < 1 or (job_size is not None and job_size < 1):
            raise ValueError("max_in_flight, batch_size and job_size must be at least 1")
        self.job_size = job_size
        self.pool = pool
        self.queues = queues or Queues()
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self._own_pool = own_pool
        self._script = pool.register_script(_ENQUEUE)

    @classmethod
    async def connect(
        cls, url: str, *, queues: Queues | None = None, **options: Any
    ) -> ArqDispatcher:
        """A dispatcher with its own pool to the Redis at ``url`` (closed by :meth:`aclose`);
        ``options`` are the constructor's (``job_size``, ``batch_size``, ...)."""
        pool = await create_pool(
            RedisSettings.from_dsn(url),
            job_serializer=json_serializer,
            job_deserializer=json_deserializer,
        )
        return cls(pool, queues=queues, own_pool=True, **options)

    async def aclose(self) -> None:
        """Close the pool if this dispatcher opened it."""
        if self._own_pool:
            await self.pool.aclose()

    async def __aenter__(self) -> ArqDispatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def dispatch(self, jobs: Sequence[Job], run: Callable[[Job], Awaitable[None]]) -> None:
        """Enqueue every job (``run`` is the workers' business).

        A job already waiting under the same id is not enqueued twice. Jobs go in
        batches of ``batch_size``, one script call each: per job it does what
        ``ArqRedis.enqueue_job`` does (skip an id that is queued or has a result, else
        store the job and queue it), so workers cannot tell the difference, without
        enqueue_job's three round trips per job.

        Raises:
            FanoutError: some batches could not be enqueued (the others were).
        """
        if self.job_size is not None:
            jobs = join_chunks(jobs, self.job_size)
        by_queue: dict[str, list[tuple[str, bytes]]] = {}
        enqueued_at = timestamp_ms()
        ids: dict[str, Job] = {}
        for job in jobs:
            function, queue, args = self.queues.route(job)
            data = serialize_job(function, args, {}, None, enqueued_at, serializer=json_serializer)
            job_id = job.job_id
            ids[job_id] = job
            by_queue.setdefault(queue, []).append((job_id, data))
        batches = [
            (queue, entries[i : i + self.batch_size])
            for queue, entries in by_queue.items()
            for i in range(0, len(entries), self.batch_size)
        ]
        failures = await run_bounded(
            batches,
            lambda item: self._enqueue_batch(*item, enqueued_at),
            limit=self.max_in_flight,
            on_failure="finish",
        )
        if failures:
            raise FanoutError(
                [(ids[job_id], exc) for (_, batch), exc in failures for job_id, _ in batch]
            )

    async def _enqueue_batch(
        self, queue: str, batch: list[tuple[str, bytes]], enqueued_at: int
    ) -> int:
        keys = [queue]
        argv: list[Any] = [enqueued_at, self.pool.expires_extra_ms]
        for job_id, data in batch:
            keys += [job_key_prefix + job_id, result_key_prefix + job_id]
            argv += [job_id, data]
        added: int = await self._script(keys=keys, args=argv, client=self.pool)
        return added

    async def failed_jobs(self) -> list[FailedJob]:
        """Jobs that failed for good, oldest first."""
        raw: list[bytes] = await self.pool.hvals(self.queues.failed)  # type: ignore[misc]
        return sorted((FailedJob.from_json(r) for r in raw), key=lambda f: f.failed_at)

    async def requeue_failed(self, job_ids: Sequence[str] | None = None) -> int:
        """Put failed jobs (all, or those in ``job_ids``) back on their queues.

        Returns:
            How many were enqueued again.
        """
        requeued = 0
        for failed in await self.failed_jobs():
            if job_ids is not None and failed.job_id not in job_ids:
                continue
            await self.pool.enqueue_job(
                failed.function, *failed.args, _job_id=failed.job_id, _queue_name=failed.queue
            )
            await self.pool.hdel(self.queues.failed, failed.job_id)  # type: ignore[misc]
            requeued += 1
        return requeued


# -- the worker side --------------------------------------------------------------------------


class ManagerFactory(Protocol):
    """Returns the Manager the worker runs jobs with (a Manager subclass works)."""

    def __call__(self) -> Manager: ...


@dataclass(frozen=True)
class _WorkerState:
    manager: Manager
    queues: Queues
    queue: str  # the one this worker takes jobs from, so the failed jobs' queue
    max_tries: int
    retry_delay: float
    max_retry_delay: float
    job_timeout: float

    def backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: doubling from ``retry_delay``, capped."""
        return float(min(self.retry_delay * 2 ** (attempt - 1), self.max_retry_delay))


def _state(ctx: Mapping[str, Any]) -> _WorkerState:
    try:
        state: _WorkerState = ctx["aiostream"]
    except KeyError:
        raise ConfigurationError(
            "the arq worker was not started with aiostream.tasks.worker_settings(...)"
        ) from None
    return state


async def _run(ctx: dict[str, Any], function: str, job: Job, args: list[Any]) -> int:
    state = _state(ctx)
    attempt = int(ctx.get("job_try", 1))
    if attempt > state.max_tries:
        # Every try so far ended without a word from us: its worker was killed or
        # stopped mid-job. arq would drop the job here; we record it instead.
        error = JobExecutionFailed(
            f"max {state.max_tries} tries exceeded; the last one never finished "
            "(its worker was killed or stopped)"
        )
        await _record_failure(ctx, state, function, args, error, attempt - 1, "tries exhausted")
        raise error
    try:
        with anyio.move_on_after(state.job_timeout) as deadline:
            await state.manager.run(job)
    except Exception as exc:
        transient = is_transient(exc)
        if transient and attempt < state.max_tries:
            state.manager.metrics.on_job_retry(function, attempt, exc)
            raise Retry(defer=state.backoff(attempt)) from exc
        reason = "tries exhausted" if transient else "error"
        await _record_failure(ctx, state, function, args, exc, attempt, reason)
        raise
    except asyncio.CancelledError as exc:
        # The worker is stopping, or arq aborted the job: record it before letting the
        # cancellation through (arq runs it again after a stop; then the record goes).
        await _record_failure(ctx, state, function, args, exc, attempt, "cancelled")
        raise
    if deadline.cancelled_caught:
        # Most often a slow or frozen server: as transient as a storage timeout, so it
        # is tried again, and recorded only when its tries are used up.
        timeout = TimeoutError(
            f"{function} did not finish within job_timeout ({state.job_timeout:g} s)"
        )
        if attempt < state.max_tries:
            state.manager.metrics.on_job_retry(function, attempt, timeout)
            raise Retry(defer=state.backoff(attempt)) from timeout
        await _record_failure(ctx, state, function, args, timeout, attempt, "timeout")
        raise timeout
    if attempt > 1:  # an earlier try may have left a record ("cancelled")
        await _uncancellable(ctx["redis"].hdel(state.queues.failed, str(ctx.get("job_id", ""))))
    return len(job.user_ids) if isinstance(job, FanoutChunk) else len(job.target_ids)


async def _record_failure(
    ctx: dict[str, Any],
    state: _WorkerState,
    function: str,
    args: list[Any],
    exc: BaseException,
    tries: int,
    reason: str,
) -> None:
    failed = FailedJob(
        job_id=str(ctx.get("job_id", "")),
        function=function,
        queue=state.queue,
        args=args,
        error=repr(exc),
        error_type=type(exc).__name__,
        tries=tries,
        failed_at=time.time(),
        reason=reason,
    )
    await _uncancellable(ctx["redis"].hset(state.queues.failed, failed.job_id, failed.to_json()))


async def _uncancellable(write: Awaitable[Any]) -> None:
    """Await ``write`` to its end even when this task is cancelled meanwhile (arq cancels
    jobs with plain ``Task.cancel()``, which an anyio shield does not hold off), then let
    the cancellation through."""
    task = asyncio.ensure_future(write)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            cancelled = exc
    task.result()
    if cancelled is not None:
        raise cancelled


async def fanout_operation(ctx: dict[str, Any], chunk: dict[str, Any]) -> int:
    """Apply one fanout chunk (default queue); returns the number of feeds."""
    return await _run(ctx, "fanout_operation", FanoutChunk.from_dict(chunk), [chunk])


async def fanout_operation_high(ctx: dict[str, Any], chunk: dict[str, Any]) -> int:
    """Apply one fanout chunk of HIGH priority followers; returns the number of feeds."""
    return await _run(ctx, "fanout_operation_high", FanoutChunk.from_dict(chunk), [chunk])


async def fanout_operation_low(ctx: dict[str, Any], chunk: dict[str, Any]) -> int:
    """Apply one fanout chunk of LOW priority followers; returns the number of feeds."""
    return await _run(ctx, "fanout_operation_low", FanoutChunk.from_dict(chunk), [chunk])


async def follow_many(
    ctx: dict[str, Any],
    user_id: Any,
    target_ids: list[Any],
    activity_copy_limit: int | None = None,
) -> int:
    """Copy the targets' recent activities (at most ``activity_copy_limit`` each; None:
    the manager's ``follow_activity_limit``) into ``user_id``'s feeds; returns
    len(targets)."""
    job = FollowChunk("follow", user_id, tuple(target_ids), activity_copy_limit)
    arguments: list[Any] = [user_id, target_ids]
    if activity_copy_limit is not None:
        arguments.append(activity_copy_limit)
    return await _run(ctx, "follow_many", job, arguments)


async def unfollow_many(ctx: dict[str, Any], user_id: Any, target_ids: list[Any]) -> int:
    """Take the targets' activities out of ``user_id``'s feeds; returns len(targets)."""
    job = FollowChunk("unfollow", user_id, tuple(target_ids))
    return await _run(ctx, "unfollow_many", job, [user_id, target_ids])


FUNCTIONS = (
    fanout_operation,
    fanout_operation_high,
    fanout_operation_low,
    follow_many,
    unfollow_many,
)


# arq's own timeout, for a job ours did not stop (it only cancels), comes this much later.
_ARQ_TIMEOUT_GRACE = 2.0


def _queue_retry(outage: float) -> RedisRetry:
    """Retries of a queue Redis command: 0.1 s doubling to 1 s, for ``outage`` seconds."""
    backoff = ExponentialBackoff(cap=1.0, base=0.05)
    retries, waited = 0, 0.0
    while waited < outage:
        retries += 1
        waited += backoff.compute(retries)
    return RedisRetry(backoff, retries)


def worker_settings(
    make_manager: ManagerFactory,
    *,
    queue: str = DEFAULT_QUEUE,
    settings: Settings | None = None,
    queues: Queues | None = None,
    max_tries: int = 5,
    retry_delay: float = 0.5,
    max_retry_delay: float = 30.0,
    job_timeout: float | dt.timedelta = 300,
    queue_outage: float = 60.0,
    **worker_options: Any,
) -> type:
    """A settings class for ``arq module.ClassName`` that runs aiostream's jobs from ``queue``.

    At start-up the worker enters a :class:`~aiostream.storage.registry.Storages` built
    from ``settings`` (default: :meth:`Settings.from_env`, read when this is called), in
    which its feeds find their storages, and builds its Manager with ``make_manager()``;
    at shutdown it closes the storages it opened.

    Args:
        make_manager: Returns the Manager (a Manager subclass itself works).
        queue: The queue this worker takes jobs from.
        settings: Storage settings; the arq Redis is ``settings.arq_redis_url``.
        queues: Queue names, the same the dispatcher uses.
        max_tries: Tries per job before it is recorded as failed. A try whose worker
            was killed counts; aiostream counts them itself (arq's own limit is set out
            of reach, so that no job is dropped without a record).
        retry_delay: Seconds before the second try; doubles each time.
        max_retry_delay: Cap of the delay between tries.
        job_timeout: Seconds a try may run (arq's default, 300); one that outlasts it is
            stopped and tried again like a transient error, and recorded with reason
            ``"timeout"`` when it was the last try.
        queue_outage: Seconds the worker retries a failing command to the queue Redis
            (and its first connection) before giving up and exiting, so that it rides
            out a restart of that server.
        worker_options: More ``arq.Worker`` options (``max_jobs`` 32, ``poll_delay``
            0.01 s, ...); a ``redis_settings`` given here replaces the retrying ones.
    """
    if max_tries < 1:
        raise ConfigurationError(f"max_tries must be at least 1, got {max_tries!r}")
    timeout = to_seconds(job_timeout)
    if timeout is None or timeout <= 0:
        raise ConfigurationError(f"job_timeout must be positive, got {job_timeout!r}")
    settings = settings or Settings.from_env()
    queues = queues or Queues()

    async def on_startup(ctx: dict[str, Any]) -> None:
        # The worker's storages: feeds resolve theirs here, and shutdown closes them.
        ctx["aiostream_storages"] = await Storages(settings).__aenter__()
        ctx["aiostream"] = _WorkerState(
            make_manager(), queues, queue, max_tries, retry_delay, max_retry_delay, timeout
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        storages = ctx.get("aiostream_storages")
        if storages is not None:
            await storages.__aexit__(None, None, None)

    redis_settings = dataclasses.replace(
        RedisSettings.from_dsn(settings.arq_redis_url or settings.redis_url),
        conn_retries=math.ceil(queue_outage),
        conn_retry_delay=1,
        retry=_queue_retry(queue_outage),
        # OSError: redis-py 5 retries a refused connection only if told to.
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
    )
    options: dict[str, Any] = {
        # _run enforces max_tries (arq would drop a job past its limit unrecorded) and
        # job_timeout (so that it knows a timeout from a cancellation).
        "functions": [func(f, keep_result=0, max_tries=sys.maxsize) for f in FUNCTIONS],
        "job_timeout": timeout + _ARQ_TIMEOUT_GRACE,
        "queue_name": queue,
        "redis_settings": redis_settings,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "keep_result": 0,
        "max_jobs": 32,
        # arq's default (0.5 s) paces a busy worker's queue reads; at 10 ms one worker
        # moved 1.6-2.3x the feed writes per second (benchmarks/arq_bench.py, chunks of
        # 100), for an idle cost of 100 cheap reads a second.
        "poll_delay": 0.01,
        **worker_options,
    }
    return type("WorkerSettings", (), options)
