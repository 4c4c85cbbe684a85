"""The worker side of arq fanout: the job functions and :func:`worker_settings`.

:mod:`aiostream.tasks` is the public module; this one holds what runs in a worker:
the try counting, the failed-job records, the hooks chained with the user's, and the
log lines.

A worker enters a storage registry of its own (:class:`~aiostream.storage.registry.Storages`)
and never imports :mod:`aiostream.connection`, which imports :mod:`aiostream.tasks`
(and so this module): the connection is the top of the package, the worker below it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import json
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from arq.utils import to_seconds
from arq.worker import Function, JobExecutionFailed, func
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from aiostream._jobs import (
    DEFAULT_QUEUE,
    FailedJob,
    Queues,
    follow_arguments,
    is_transient,
    json_deserializer,
    json_serializer,
    queue_redis_url,
)
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import FanoutChunk, FollowChunk, Job
from aiostream.manager import Manager
from aiostream.settings import Settings
from aiostream.storage.registry import Storages

logger = logging.getLogger("aiostream.tasks")

Hook = Callable[[dict[str, Any]], Awaitable[Any]]


ManagerFactory = (
    Callable[[], Manager | Awaitable[Manager]]
    | Callable[[dict[str, Any]], Manager | Awaitable[Manager]]
)
"""Returns a Manager the worker runs jobs with: a Manager subclass itself, or a
function of no argument or of the worker's arq ``ctx`` (which may be ``async``)."""


class WorkerSettings:
    """What :func:`worker_settings` returns: an arq settings class (``arq module.Name``).

    The attributes are arq ``Worker`` arguments; aiostream sets these and passes any
    other you give it.
    """

    functions: ClassVar[list[Function]]
    queue_name: ClassVar[str]
    redis_settings: ClassVar[RedisSettings]
    on_startup: ClassVar[Hook]
    on_shutdown: ClassVar[Hook]
    job_serializer: ClassVar[Callable[[Any], bytes]]
    job_deserializer: ClassVar[Callable[[bytes], Any]]
    job_timeout: ClassVar[float]
    keep_result: ClassVar[int]
    max_jobs: ClassVar[int]
    poll_delay: ClassVar[float]


def served_names(manager: Manager) -> list[str]:
    """The Manager names whose jobs ``manager`` runs: its class's, then those of its
    Manager bases, so that a worker may run a subclass of the web process's Manager
    (one that adds instrumentation, say)."""
    names = [
        cls.name
        for cls in type(manager).__mro__
        if isinstance(cls, type) and issubclass(cls, Manager) and cls is not Manager
    ]
    return list(dict.fromkeys(names))


def _routes(managers: Sequence[Manager]) -> dict[str, Manager]:
    """Which of the worker's Managers runs the jobs of each name: the Manager of that
    name, else the first one given derived from the Manager of that name.

    Raises:
        ConfigurationError: two of them have the same name.
    """
    routes: dict[str, Manager] = {}
    for manager in managers:
        name = type(manager).name
        if name in routes:
            raise ConfigurationError(
                f"the worker's Managers {type(routes[name]).__qualname__} and "
                f"{type(manager).__qualname__} are both named {name!r}: jobs could not "
                "tell them apart; give one a `name` class attribute of its own"
            )
        routes[name] = manager
    for manager in managers:
        for name in served_names(manager)[1:]:
            routes.setdefault(name, manager)
    return routes


@dataclass
class _WorkerState:
    manager: Manager  # the first one given: jobs that name none (older versions') run on it
    queues: Queues
    queue: str  # the one this worker takes jobs from, so the failed jobs' queue
    max_tries: int
    retry_delay: float
    max_retry_delay: float
    job_timeout: float
    managers: list[Manager] = field(default_factory=list)  # all of them, in order given
    routes: dict[str, Manager] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "retried": 0, "failed": 0})

    def backoff(self, attempt: int) -> float:
        """Seconds before try ``attempt + 1``: doubling from ``retry_delay``, capped."""
        return float(min(self.retry_delay * 2 ** (attempt - 1), self.max_retry_delay))

    def manager_for(self, job: Job) -> Manager:
        """The Manager that runs ``job``: the one it names, or the first for a job of an
        older version, which names none.

        Raises:
            ConfigurationError: the job names a Manager this worker does not run (a
                final error: the job is recorded, to be requeued once the workers run it).
        """
        if job.manager is None:
            return self.manager
        manager = self.routes.get(job.manager)
        if manager is None:
            runs = [type(m).name for m in self.managers]
            raise ConfigurationError(
                f"the job is for the Manager {job.manager!r}, which the workers of "
                f"{self.queue} do not run (they run {', '.join(map(repr, runs))}): build "
                f"them with worker_settings({', '.join([*runs, job.manager])}, ...), "
                "restart them, then requeue the failed jobs"
            )
        return manager


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
    job_id = str(ctx.get("job_id", ""))
    if attempt > state.max_tries:
        # Every try so far ended without a word from us: its worker was killed or
        # stopped mid-job. arq would drop the job here; we record it instead.
        error = JobExecutionFailed(
            f"max {state.max_tries} tries exceeded; the last one never finished "
            "(its worker was killed or stopped)"
        )
        await _record_failure(ctx, state, function, args, error, attempt - 1, "tries exhausted")
        raise error
    manager = state.manager
    try:
        manager = state.manager_for(job)
        with anyio.move_on_after(state.job_timeout) as deadline:
            await manager.run(job)
    except Exception as exc:
        transient = is_transient(exc)
        if transient and attempt < state.max_tries:
            _retrying(state, manager, function, job_id, attempt, exc)
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
            _retrying(state, manager, function, job_id, attempt, timeout)
            raise Retry(defer=state.backoff(attempt)) from timeout
        await _record_failure(ctx, state, function, args, timeout, attempt, "timeout")
        raise timeout
    if attempt > 1:  # an earlier try may have left a record ("cancelled")
        await _uncancellable(ctx["redis"].hdel(state.queues.failed, job_id))
    state.counts["done"] += 1
    return len(job.user_ids) if isinstance(job, FanoutChunk) else len(job.target_ids)


def _retrying(
    state: _WorkerState,
    manager: Manager,
    function: str,
    job_id: str,
    attempt: int,
    exc: BaseException,
) -> None:
    state.counts["retried"] += 1
    manager.metrics.on_job_retry(function, attempt, exc)
    # The error's type and message name the server and the operation, never the
    # activities the job carries.
    logger.warning(
        "job %s (%s) try %d of %d failed with %s: %s; retrying in %.1f s",
        job_id,
        function,
        attempt,
        state.max_tries,
        type(exc).__name__,
        exc,
        state.backoff(attempt),
    )


async def _record_failure(
    ctx: dict[str, Any],
    state: _WorkerState,
    function: str,
    args: list[Any],
    exc: BaseException,
    tries: int,
    reason: str,
) -> None:
    state.counts["failed"] += 1
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
    # Only the error's type at WARNING: a message about bad data may quote it. The
    # record (``ArqDispatcher.failed_jobs()``) keeps the whole error.
    level = logging.INFO if reason == "cancelled" else logging.WARNING
    logger.log(
        level,
        "job %s (%s) on %s failed (%s) after %d tries: %s",
        failed.job_id,
        function,
        state.queue,
        reason,
        tries,
        failed.error_type,
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
    version: int | None = None,
    manager: str | None = None,
) -> int:
    """Copy the targets' recent activities (at most ``activity_copy_limit`` each; None:
    the manager's ``follow_activity_limit``) into ``user_id``'s feeds, leaving out the
    targets a request newer than ``version`` is about, with the worker's Manager named
    ``manager`` (None: its first); returns len(targets)."""
    job = FollowChunk("follow", user_id, tuple(target_ids), activity_copy_limit, version, manager)
    return await _run(ctx, "follow_many", job, list(follow_arguments(job)))


async def unfollow_many(
    ctx: dict[str, Any],
    user_id: Any,
    target_ids: list[Any],
    version: int | None = None,
    manager: str | None = None,
) -> int:
    """Take the targets' activities out of ``user_id``'s feeds, leaving out the targets
    a request newer than ``version`` is about, with the worker's Manager named
    ``manager`` (None: its first); returns len(targets)."""
    job = FollowChunk("unfollow", user_id, tuple(target_ids), version=version, manager=manager)
    return await _run(ctx, "unfollow_many", job, list(follow_arguments(job)))


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


class _ClaimPipeline(Pipeline):
    """The transactions of a worker's queue pool: a claim whose connection drops after
    its ``WATCH`` is lost as a race would lose it, instead of ending the worker.

    arq claims a job with ``WATCH`` of its in-progress key, two reads (``EXISTS``,
    ``ZSCORE``), then ``MULTI`` / ``PSETEX`` / ``EXEC``, and takes a ``WatchError`` from
    ``EXEC`` for a claim another worker won: the job stays queued and is read again.
    redis-py raises the same ``WatchError`` from a read after ``WATCH`` when the
    connection drops (the watch went with it), where arq does not expect one: the worker
    exited. Here such a claim reads on with the retries of every queue command
    (reconnecting for ``queue_outage``), and its ``EXEC`` is refused with a
    ``WatchError`` without being sent, so arq gives the claim up and reads the queue
    again. Only the reads of a claim (a ``WATCH`` of in-progress keys) are helped: a
    genuine ``WatchError`` (a watched key changed) comes from ``EXEC`` as before, and
    other transactions (``enqueue_job``'s) fail as redis-py makes them.
    """

    _claim = False  # the transaction WATCHes in-progress keys: one of arq's claims
    _watch_lost = False  # ... and its connection dropped after the WATCH

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        if self._watch_lost:
            return await self._read_on(*args, **options)
        if args[0] == "WATCH":
            self._claim = len(args) > 1 and all(_is_in_progress_key(key) for key in args[1:])
        claim = self._claim and self.watching
        try:
            return await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except WatchError:
            # Before EXEC only a dropped connection raises it (redis-py has reset the
            # pipeline: nothing is watched any more).
            if not claim:
                raise
        logger.info(
            "the connection to the queue Redis dropped while claiming a job: "
            "the claim is given up once the server answers, the job stays queued"
        )
        self._claim = self._watch_lost = True
        self.watching = True  # arq's next read is sent at once, not queued for EXEC
        return await self._read_on(*args, **options)

    async def _read_on(self, *args: Any, **options: Any) -> Any:
        """Send a command of a claim whose watch is lost, retried (and reconnected) as
        any queue command outside a transaction is."""
        if self.connection is None:
            self.connection = await self.connection_pool.get_connection()
        conn = self.connection

        async def drop(error: Exception) -> None:
            await conn.disconnect()
            if conn.retry_on_error is None or not isinstance(error, tuple(conn.retry_on_error)):
                raise error

        return await conn.retry.call_with_retry(
            lambda: self._send_command_parse_response(  # type: ignore[no-untyped-call]
                conn, args[0], *args, **options
            ),
            drop,
        )

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self._watch_lost:
            await self.reset()
            raise WatchError("the claim's WATCH was lost with its connection")
        return await super().execute(raise_on_error)

    async def reset(self) -> None:
        await super().reset()  # type: ignore[no-untyped-call]
        self._claim = self._watch_lost = False


def _is_in_progress_key(key: object) -> bool:
    text = key.decode() if isinstance(key, bytes) else str(key)
    return text.startswith(in_progress_key_prefix)


def _claims_ride_out_outages(pool: ArqRedis) -> None:
    """Make the worker's queue pool build its transactions as :class:`_ClaimPipeline`
    (only this pool: arq offers no other hook)."""

    def pipeline(transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _ClaimPipeline(
            pool.connection_pool, pool.response_callbacks, transaction, shard_hint
        )

    pool.pipeline = pipeline  # type: ignore[method-assign]


_JOB_LINE = "→"  # arq's "job started" line: '%6.2fs → %s(%s)%s' with the job's arguments


class _RedactJobArguments(logging.Filter):
    """Drops the arguments (users' activities) from arq's "job started" lines of
    aiostream's functions; arq prints them at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            _JOB_LINE in str(record.msg)
            and isinstance(args, tuple)
            and len(args) == 4
            and str(args[1]).rpartition(":")[2] in _FUNCTION_NAMES
        ):
            record.args = (args[0], args[1], "…", args[3])
        return True


_FUNCTION_NAMES = frozenset(f.__name__ for f in FUNCTIONS)
_redact = _RedactJobArguments()


def _log_beside_arq() -> None:
    """Send aiostream's records where arq's go when the application configured no
    logging of its own: ``python -m arq`` sets up arq's loggers only, and aiostream's
    worker lines (its queue, its storages, its retries) would be lost."""
    ours, arq = logging.getLogger("aiostream"), logging.getLogger("arq")
    if ours.hasHandlers() or not arq.handlers:
        return
    for handler in arq.handlers:
        ours.addHandler(handler)
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)


async def _make_manager(make_manager: ManagerFactory, ctx: dict[str, Any]) -> Manager:
    if isinstance(make_manager, type):
        made: Any = make_manager()
    else:
        try:
            parameters = list(inspect.signature(make_manager).parameters.values())
        except (TypeError, ValueError):  # a builtin or C callable: call it as it is
            parameters = []
        positional = [
            p
            for p in parameters
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        made = make_manager(ctx) if positional else make_manager()  # type: ignore[call-arg]
    if inspect.isawaitable(made):
        made = await made
    if not isinstance(made, Manager):
        raise ConfigurationError(
            f"the worker's manager factory returned {type(made).__name__}, not a Manager"
        )
    return made


def _storages_in_use(managers: Sequence[Manager], storages: Storages) -> list[str]:
    """The storages the managers' feeds resolve (described, without passwords); opening
    them here makes a server nothing configures fail the start-up, not the first job."""
    names: dict[tuple[str, str], str] = {}
    for manager in managers:
        for feed_class in [*manager.feed_classes.values(), manager.user_feed_class]:
            if feed_class is None:
                continue
            key = (feed_class.storage_backend, feed_class.storage_server)
            if key not in names:
                names[key] = repr(storages.get(*key))
    return list(names.values())


def served_record(managers: Sequence[Manager]) -> dict[str, Any]:
    """What a worker records of its Managers for its queue (in the ``Queues.managers``
    hash, read by :class:`~aiostream.tasks.ArqDispatcher` before it enqueues):
    ``managers``, their names; ``serves``, every name whose jobs they run."""
    serves = [name for m in managers for name in served_names(m)]
    return {
        "managers": [type(m).name for m in managers],
        "serves": list(dict.fromkeys(serves)),
        "at": time.time(),
    }


async def _record_managers(
    pool: ArqRedis, queues: Queues, queue: str, record: dict[str, Any]
) -> None:
    """Record the Managers this worker runs for its queue (the last worker to start
    wins: every worker of a queue takes any of its jobs, so they must all run the same
    Managers), saying so when the record changes."""
    before = await pool.hget(queues.managers, queue)  # type: ignore[misc]
    previous = json.loads(before)["managers"] if before else None
    if previous is not None and previous != record["managers"]:
        logger.info(
            "the Managers of queue %s change from %s to %s (a deployment, or workers of "
            "one queue built differently: every worker of a queue must run the same)",
            queue,
            ", ".join(previous),
            ", ".join(record["managers"]),
        )
    await pool.hset(queues.managers, queue, json.dumps(record))  # type: ignore[misc]


# Consecutive empty reads of an idle worker's queue after which the wait stops doubling.
_IDLE_STEPS = 30


def _quiet_when_idle(pool: ArqRedis, queue: str, poll_delay: float, idle_delay: float) -> None:
    """Space an idle worker's queue reads out, from ``poll_delay`` doubling up to
    ``idle_delay``, back to ``poll_delay`` as soon as a read finds a job.

    arq reads the queue every ``poll_delay`` whether or not it holds anything, and has
    no blocking read: at 10 ms an idle worker made about 90 reads a second (6% of a
    core). The wait is added after an empty read of this worker's queue by its own pool
    (arq offers no other hook, and runs its workers itself: no subclass can take its
    place), so a busy worker, whose reads find jobs, reads as often as before.
    """
    read = pool.zrangebyscore
    empty = 0

    async def zrangebyscore(name: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal empty
        found = await read(name, *args, **kwargs)
        if name != queue:
            return found
        if found:
            empty = 0
        else:
            empty = min(empty + 1, _IDLE_STEPS)
            if empty > 1:  # the first empty read waits poll_delay, as arq's loop does
                await asyncio.sleep(min(poll_delay * 2 ** (empty - 1), idle_delay))
        return found

    pool.zrangebyscore = zrangebyscore  # type: ignore[method-assign]


def _routes_of_classes(classes: Sequence[type]) -> None:
    """Refuse, when the settings are built, Manager classes of the same name (a factory's
    Manager is known only at start-up, where :func:`_routes` checks it)."""
    seen: dict[str, type] = {}
    for cls in classes:
        name = getattr(cls, "name", None)
        if not isinstance(name, str):
            continue  # not a Manager: _make_manager says so at start-up
        if name in seen:
            raise ConfigurationError(
                f"the worker's Managers {seen[name].__qualname__} and {cls.__qualname__} "
                f"are both named {name!r}: jobs could not tell them apart; give one a "
                "`name` class attribute of its own"
            )
        seen[name] = cls


def _user_functions(functions: Sequence[Any]) -> list[Any]:
    ours = _FUNCTION_NAMES
    taken = []
    for function in functions:
        name = func(function).name  # arq's name for it (a coroutine's __qualname__)
        if name in ours:
            taken.append(name)
    if taken:
        raise ConfigurationError(
            f"functions {taken!r} have the names of aiostream's own jobs; rename them"
        )
    return list(functions)


def worker_settings(
    *make_managers: ManagerFactory,
    queue: str = DEFAULT_QUEUE,
    settings: Settings | None = None,
    queues: Queues | None = None,
    max_tries: int = 5,
    retry_delay: float = 0.5,
    max_retry_delay: float = 30.0,
    job_timeout: float | dt.timedelta = 300,
    queue_outage: float = 60.0,
    poll_delay: float | dt.timedelta = 0.01,
    idle_poll_delay: float | dt.timedelta = 0.5,
    functions: Sequence[Any] = (),
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    **worker_options: Any,
) -> type[WorkerSettings]:
    """A settings class for ``arq module.ClassName`` that runs aiostream's jobs from ``queue``.

    A worker runs the jobs of every Manager given: each job carries the
    :attr:`~aiostream.manager.Manager.name` of the Manager that enqueued it, and runs with
    the worker's Manager of that name (or one derived from it); a job without a name (of
    an older version) runs with the first. Give every worker of a queue all the Managers
    that enqueue there (``worker_settings(PinManager, NotificationManager)``): a job of
    another Manager fails at once, recorded with reason ``"error"``, and the dispatcher
    refuses to enqueue it once a worker of its queue has started (see
    :class:`~aiostream.tasks.ArqDispatcher`).

    At start-up the worker enters a :class:`~aiostream.storage.registry.Storages`
    registry built from ``settings``, in which its feeds find their storages, builds its
    Managers, records their names for its queue in the queue Redis (the
    ``Queues.managers`` hash, which the dispatcher reads), and logs (at INFO, on the
    ``aiostream.tasks`` logger) its queue, its Managers and the storages their feeds use
    (opening them, so that one nothing configures fails the start-up); then your
    ``on_startup`` runs. At shutdown your ``on_shutdown`` runs first, then the storages
    close.

    Your own jobs run beside aiostream's: pass them as ``functions`` (coroutines or
    ``arq.func(...)``); ``ctx["aiostream"].manager`` is the worker's first Manager,
    ``ctx["aiostream"].managers`` all of them, and ``ctx["aiostream_storages"]`` its
    :class:`~aiostream.storage.registry.Storages`.

    Args:
        make_managers: Each returns a Manager: a Manager subclass itself, or a function
            of no argument or of the worker's arq ``ctx`` (``async`` works too). The
            first runs the jobs that name no Manager.
        queue: The queue this worker takes jobs from.
        settings: Storage settings; the arq Redis is ``settings.arq_redis_url`` (else
            ``settings.redis_url``). None: the environment, each server only where its
            variable is set: the queue Redis ``STREAM_ARQ_REDIS_URL`` or
            ``STREAM_REDIS_URL`` (read when this is called), the storages
            ``STREAM_REDIS_URL``, ``STREAM_CASSANDRA_HOSTS``, ... (read at start-up).
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
        poll_delay: Seconds between a busy worker's reads of its queue (arq's default,
            0.5 s, paced a busy worker: at 10 ms one worker moved 1.6-2.3x the feed
            writes per second, ``benchmarks/arq_bench.py``).
        idle_poll_delay: The longest wait between an idle worker's reads: after an
            empty read the wait doubles from ``poll_delay`` up to this, and drops back
            at the first read that finds a job. So an idle worker reads about twice a
            second (at 10 ms throughout, 90 times, 6% of a core), and a job enqueued
            while it is idle waits up to this long to start. Equal to ``poll_delay``:
            a fixed pace.
        functions: Your jobs, run by the same workers (their names must differ from
            aiostream's).
        on_startup: Your start-up hook, run after aiostream's.
        on_shutdown: Your shutdown hook, run before aiostream's.
        worker_options: More ``arq.Worker`` options (``max_jobs`` 32, ``on_job_start``,
            ``cron_jobs``, ...); a ``redis_settings`` given here replaces the retrying
            ones.

    Raises:
        ConfigurationError: no Manager, two Manager classes of the same name, a bad
            limit or delay, a function named like one of aiostream's, or no settings
            and no queue Redis variable set.

    Example::

        WorkerSettings = worker_settings(
            PinManager, NotificationManager, functions=[send_digest]
        )
    """
    if not make_managers:
        raise ConfigurationError(
            "worker_settings() needs the Managers whose jobs the worker runs: "
            "worker_settings(PinManager, NotificationManager, ...)"
        )
    classes = [m for m in make_managers if isinstance(m, type)]
    _routes_of_classes(classes)
    if max_tries < 1:
        raise ConfigurationError(f"max_tries must be at least 1, got {max_tries!r}")
    timeout = to_seconds(job_timeout)
    if timeout is None or timeout <= 0:
        raise ConfigurationError(f"job_timeout must be positive, got {job_timeout!r}")
    poll = to_seconds(poll_delay)
    idle = to_seconds(idle_poll_delay)
    if poll is None or poll <= 0 or idle is None or idle < poll:
        raise ConfigurationError(
            f"poll_delay must be positive and idle_poll_delay at least poll_delay, got "
            f"poll_delay={poll_delay!r}, idle_poll_delay={idle_poll_delay!r}"
        )
    queues = queues or Queues()
    user_functions = _user_functions(functions)
    # Read now: arq takes the queue Redis from the class. No Settings.from_env() for
    # what the environment leaves unset: its defaults name a server on 127.0.0.1.
    queue_url = queue_redis_url(settings, "worker_settings()")

    async def startup(ctx: dict[str, Any]) -> None:
        pool = ctx.get("redis")
        if isinstance(pool, ArqRedis):  # the worker's queue pool
            _claims_ride_out_outages(pool)
            if idle > poll:
                _quiet_when_idle(pool, queue, poll, idle)
        # The worker's storages: feeds resolve theirs here (the jobs, started by the
        # worker's main task, inherit the registry), and shutdown closes them.
        storages = await Storages(settings).__aenter__()
        ctx["aiostream_storages"] = storages
        try:
            managers = [await _make_manager(make, ctx) for make in make_managers]
            routes = _routes(managers)
            in_use = _storages_in_use(managers, storages)
            if isinstance(pool, ArqRedis):
                await _record_managers(pool, queues, queue, served_record(managers))
        except BaseException:
            # arq runs no shutdown hook after a failed start-up.
            await ctx.pop("aiostream_storages").__aexit__(None, None, None)
            raise
        ctx["aiostream"] = _WorkerState(
            managers[0],
            queues,
            queue,
            max_tries,
            retry_delay,
            max_retry_delay,
            timeout,
            managers=managers,
            routes=routes,
        )
        logging.getLogger("arq.worker").addFilter(_redact)
        _log_beside_arq()
        logger.info(
            "aiostream worker started: queue %s, managers %s, storages %s",
            queue,
            ", ".join(type(m).name for m in managers),
            ", ".join(in_use),
        )
        if on_startup is not None:
            await on_startup(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        try:
            if on_shutdown is not None:
                await on_shutdown(ctx)
        finally:
            storages = ctx.pop("aiostream_storages", None)
            if storages is not None:
                await storages.__aexit__(None, None, None)
            state = ctx.get("aiostream")
            if state is not None:
                counts = state.counts
                logger.info(
                    "aiostream worker stopped: queue %s, jobs done %d, retried %d, failed %d",
                    queue,
                    counts["done"],
                    counts["retried"],
                    counts["failed"],
                )

    redis_settings = dataclasses.replace(
        RedisSettings.from_dsn(queue_url),
        conn_retries=math.ceil(queue_outage),
        conn_retry_delay=1,
        retry=_queue_retry(queue_outage),
        # OSError: redis-py 5 retries a refused connection only if told to.
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
    )
    options: dict[str, Any] = {
        # _run enforces max_tries (arq would drop a job past its limit unrecorded) and
        # job_timeout (so that it knows a timeout from a cancellation).
        "functions": [
            *(func(f, keep_result=0, max_tries=sys.maxsize) for f in FUNCTIONS),
            *user_functions,
        ],
        "job_timeout": timeout + _ARQ_TIMEOUT_GRACE,
        "queue_name": queue,
        "redis_settings": redis_settings,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "keep_result": 0,
        "max_jobs": 32,
        # arq's default (0.5 s) paces a busy worker's queue reads; at 10 ms one worker
        # moved 1.6-2.3x the feed writes per second (benchmarks/arq_bench.py, chunks of
        # 100). An idle worker backs off to idle_poll_delay (_quiet_when_idle).
        "poll_delay": poll,
        **worker_options,
    }
    return type("WorkerSettings", (WorkerSettings,), options)
