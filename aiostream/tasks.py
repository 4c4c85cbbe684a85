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

In a worker module, build the worker settings from every Manager the application
enqueues jobs with (the classes, or functions that return them), one class per queue
you want to run workers for::

    # myapp/workers.py
    from aiostream.tasks import HIGH_QUEUE, LOW_QUEUE, worker_settings
    from myapp.feeds import NotificationManager, PinManager

    MANAGERS = (PinManager, NotificationManager)
    HighWorker = worker_settings(*MANAGERS, queue=HIGH_QUEUE)
    LowWorker = worker_settings(*MANAGERS, queue=LOW_QUEUE)
    WorkerSettings = worker_settings(*MANAGERS)        # the default queue

and run ``arq myapp.workers.HighWorker`` (and so on), as many processes as you like.
Each job names the Manager that enqueued it and runs with the worker's Manager of that
name; a worker records the Managers it runs in the queue Redis, and the dispatcher
refuses (:class:`~aiostream.exceptions.ConfigurationError`) a job that the workers of
its queue do not run, instead of enqueueing a job bound to fail.

Delivery is at least once and exactly once in effect:

* a job's id is derived from its content, so enqueueing the same work twice while it
  waits runs it once; results are not kept, so the same work enqueued later (say, an
  activity added again after a removal) runs again;
* every job is idempotent (activity ids are deterministic, feeds de-duplicate by id), so
  a job that runs twice (a retry, a worker killed mid-job) leaves every feed as if it
  had run once;
* follow and unfollow jobs carry the version of their request (so each request is a
  job of its own): one that runs after a newer request of the same (user, target) pair
  leaves that pair alone, so a retried follow never undoes a later unfollow;
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
  they ride out its restart (a job claim the restart cut off included: it is given up
  and the job claimed again).

Payloads are plain JSON (``FanoutChunk.to_dict()``; user ids, target ids, the copy
limit, the version and the Manager's name for follow jobs), never pickle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from aiostream.exceptions import requires_extra

with requires_extra("aiostream.tasks", "arq", "redis,arq"):
    from arq import create_pool
    from arq.connections import ArqRedis, RedisSettings
    from arq.constants import job_key_prefix, result_key_prefix
    from arq.jobs import serialize_job
    from arq.utils import timestamp_ms

    from aiostream._arq_worker import (
        ManagerFactory,
        WorkerSettings,
        fanout_operation,
        fanout_operation_high,
        fanout_operation_low,
        follow_many,
        unfollow_many,
        worker_settings,
    )
    from aiostream.storage.redis._connection import translate_error

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
from aiostream.exceptions import ConfigurationError, FanoutError
from aiostream.fanout import Job, join_chunks

__all__ = [
    "ArqDispatcher",
    "DEFAULT_QUEUE",
    "FailedJob",
    "HIGH_QUEUE",
    "LOW_QUEUE",
    "ManagerFactory",
    "Queues",
    "WorkerSettings",
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

logger = logging.getLogger("aiostream.tasks")

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

# KEYS: the queue, the job key, the result key, the failed jobs' hash; ARGV: enqueue
# time, expiry in ms, job id, serialized job. Enqueues like _ENQUEUE and removes the
# failed record in the same step, so a record goes only with its job back in the queue.
_REQUEUE = """
if redis.call('EXISTS', KEYS[2], KEYS[3]) == 0 then
    redis.call('PSETEX', KEYS[2], ARGV[2], ARGV[4])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
    redis.call('HDEL', KEYS[4], ARGV[3])
    return 1
end
return 0
"""

_PROBE = {"aiostream": [1, "probe"]}

# Seconds the dispatcher trusts what it read of the Managers the workers run; a job of a
# Manager not in it is checked against a fresh read before it is refused.
_SERVED_TTL = 30.0


def _check_json_pool(pool: ArqRedis) -> None:
    """Refuse a pool that would write jobs aiostream's workers cannot read (arq's
    default serializer is pickle)."""
    serializer = getattr(pool, "job_serializer", None)
    deserializer = getattr(pool, "job_deserializer", None)
    hint = (
        "create the pool with job_serializer=aiostream.tasks.json_serializer and "
        "job_deserializer=aiostream.tasks.json_deserializer, or use ArqDispatcher.connect()"
    )
    if serializer is None or deserializer is None:
        raise ConfigurationError(f"the arq pool serializes jobs with pickle; {hint}")
    try:
        written = serializer(_PROBE)
        readable = json.loads(written) == _PROBE and deserializer(written) == _PROBE
    except Exception:
        readable = False
    if not readable:
        raise ConfigurationError(f"the arq pool's job serializer does not write JSON; {hint}")


@contextlib.contextmanager
def _queue_errors(server: str, operation: str) -> Iterator[None]:
    """Raise redis-py's errors as aiostream's, naming the queue Redis."""
    try:
        yield
    except Exception as exc:
        error = translate_error(exc, server, operation=operation)
        if error is None:
            raise
        raise error from exc


def _describe(redis_settings: RedisSettings) -> str:
    if redis_settings.unix_socket_path:
        return f"unix://{redis_settings.unix_socket_path}"
    return f"{redis_settings.host}:{redis_settings.port}/{redis_settings.database}"


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
        _check_json_pool(pool)
        self._own_pool = own_pool
        self._script = pool.register_script(_ENQUEUE)
        self._requeue = pool.register_script(_REQUEUE)
        # queue -> (read at, what its workers recorded, None: no worker has started yet)
        self._served: dict[str, tuple[float, dict[str, Any] | None]] = {}

    @classmethod
    async def connect(
        cls,
        redis: str | RedisSettings,
        *,
        queues: Queues | None = None,
        connect_retries: int = 0,
        **options: Any,
    ) -> ArqDispatcher:
        """A dispatcher with its own JSON pool to the queue Redis (closed by :meth:`aclose`).

        Args:
            redis: A URL (``redis://host:6379/0``) or arq ``RedisSettings``.
            queues: Queue names; workers must use the same.
            connect_retries: More tries of the first connection, a second apart (none
                by default, so that a down server is reported at once).
            options: The constructor's (``job_size``, ``batch_size``, ...).

        Raises:
            StorageUnavailableError: the Redis is down or refused the connection (the
                message names it).
            StorageTimeoutError: it did not answer in time.
        """
        redis_settings = (
            redis if isinstance(redis, RedisSettings) else RedisSettings.from_dsn(redis)
        )
        redis_settings = dataclasses.replace(
            redis_settings, conn_retries=connect_retries, conn_retry_delay=1
        )
        with _queue_errors(_describe(redis_settings), "connect"):
            pool = await create_pool(
                redis_settings,
                job_serializer=json_serializer,
                job_deserializer=json_deserializer,
            )
        return cls(pool, queues=queues, own_pool=True, **options)

    async def ping(self) -> None:
        """Check that the queue Redis answers (a readiness probe).

        Raises:
            StorageUnavailableError: it is down or refused the connection.
            StorageTimeoutError: it did not answer in time.
        """
        with _queue_errors(self._server(), "ping"):
            await self.pool.ping()

    def _server(self) -> str:
        kwargs = self.pool.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"

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

        First, a job naming its Manager is checked against the Managers the workers of
        its queue run, as the last of them to start recorded them (read at most every
        30 s once recorded, and again before a refusal): a job they would fail is
        refused here, where the caller sees it, rather than in a worker's log. A queue
        no worker has started on yet takes any job (its workers may come later).

        Raises:
            ConfigurationError: the workers of a job's queue do not run its Manager (the
                message names both); nothing was enqueued.
            FanoutError: some batches could not be enqueued (the others were).
        """
        if self.job_size is not None:
            jobs = join_chunks(jobs, self.job_size)
        routed = [(job, self.queues.route(job)) for job in jobs]
        await self._check_served({(job.manager, queue) for job, (_, queue, _) in routed})
        by_queue: dict[str, list[tuple[str, bytes]]] = {}
        enqueued_at = timestamp_ms()
        ids: dict[str, Job] = {}
        for job, (function, queue, args) in routed:
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

    async def _check_served(self, wanted: set[tuple[str | None, str]]) -> None:
        """Raise ConfigurationError for a Manager whose jobs go to a queue whose workers
        do not run it (``wanted``: ``(manager name, queue)`` pairs)."""
        named = {(manager, queue) for manager, queue in wanted if manager is not None}
        if not named:
            return
        missing = await self._unserved(named, fresh=False)
        if missing:  # perhaps workers that run it have started since the last read
            missing = await self._unserved({(m, q) for m, q, _ in missing}, fresh=True)
        if not missing:
            return
        manager, queue, record = missing[0]
        runs = record["managers"]
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.get("at", 0)))
        raise ConfigurationError(
            f"the Manager {manager!r} enqueues jobs on {queue}, whose workers run "
            f"{', '.join(map(repr, runs))} (as the last of them to start recorded, at "
            f"{started} UTC), not {manager!r}: they would fail its jobs. Build those "
            f"workers with worker_settings({', '.join([*runs, manager])}, ...) and restart "
            "them; nothing was enqueued"
        )

    async def _unserved(
        self, named: set[tuple[str, str]], *, fresh: bool
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The ``named`` pairs whose queue's workers recorded Managers without it."""
        queues = sorted({queue for _, queue in named})
        now = time.monotonic()
        stale = [
            q
            for q in queues
            if fresh
            or self._served.get(q, (0, None))[1] is None  # until a worker records one
            or now - self._served[q][0] >= _SERVED_TTL
        ]
        if stale:
            try:
                raw = await self.pool.hmget(self.queues.managers, stale)  # type: ignore[misc]
            except Exception:  # the enqueue that follows says what is wrong with the Redis
                logger.debug("could not read the Managers the workers run", exc_info=True)
                return []
            for queue, value in zip(stale, raw, strict=True):
                self._served[queue] = (now, json.loads(value) if value else None)
        missing = []
        for manager, queue in sorted(named):
            record = self._served[queue][1]
            if record is not None and manager not in record.get("serves", ()):
                missing.append((manager, queue, record))
        return missing

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

    async def drain(self, max_wait: float = 30.0, *, poll_interval: float = 0.05) -> None:
        """Wait until this dispatcher's queues hold no job of aiostream's, for integration
        tests that run real workers: after ``await dispatcher.drain()`` every fanout
        enqueued before it has run (or failed for good, see :meth:`failed_jobs`).

        arq keeps a job in its queue's sorted set until the job is done (a retry waits
        there too), so an empty set is a finished fanout; members are job ids, and only
        aiostream's (``aiostream:...``) are waited for, so other jobs of a shared queue
        do not hold a test up. Polled every ``poll_interval`` seconds.

        Raises:
            TimeoutError: jobs were still queued after ``max_wait`` seconds (the message
                names the queues and their counts: are workers running on them?).
            StorageUnavailableError: the queue Redis is down.
        """
        import anyio

        queues = list(dict.fromkeys((self.queues.high, self.queues.low, self.queues.default)))
        deadline = anyio.current_time() + max_wait
        while True:
            left: dict[str, int] = {}
            with _queue_errors(self._server(), "drain"):
                for queue in queues:
                    count = 0
                    async for _ in self.pool.zscan_iter(queue, match="aiostream:*", count=500):
                        count += 1
                    if count:
                        left[queue] = count
            if not left:
                return
            if anyio.current_time() >= deadline:
                raise TimeoutError(
                    f"aiostream jobs still queued after {max_wait}s: {left} (are workers "
                    "running on these queues?)"
                )
            await anyio.sleep(poll_interval)

    async def failed_jobs(self) -> list[FailedJob]:
        """Jobs that failed for good, oldest first."""
        raw: list[bytes] = await self.pool.hvals(self.queues.failed)  # type: ignore[misc]
        return sorted((FailedJob.from_json(r) for r in raw), key=lambda f: f.failed_at)

    async def requeue_failed(self, job_ids: Sequence[str] | None = None) -> int:
        """Put failed jobs (all, or those in ``job_ids``) back on their queues.

        Each job is enqueued and its record removed in one atomic step, so a record
        never goes without its job. A job already waiting (or running) under the same
        id is left alone, and its record kept.

        Returns:
            How many were enqueued again.
        """
        requeued = 0
        for failed in await self.failed_jobs():
            if job_ids is not None and failed.job_id not in job_ids:
                continue
            data = serialize_job(
                failed.function,
                tuple(failed.args),
                {},
                None,
                timestamp_ms(),
                serializer=json_serializer,
            )
            keys = [
                failed.queue,
                job_key_prefix + failed.job_id,
                result_key_prefix + failed.job_id,
                self.queues.failed,
            ]
            argv: list[Any] = [timestamp_ms(), self.pool.expires_extra_ms, failed.job_id, data]
            with _queue_errors(self._server(), "requeue_failed"):
                done = await self._requeue(keys=keys, args=argv, client=self.pool)
            if done:
                requeued += 1
                logger.info(
                    "job %s (%s) requeued on %s", failed.job_id, failed.function, failed.queue
                )
        return requeued
