"""Running the parts of one operation concurrently, and retrying a compare-and-set.

:func:`run_bounded` is the one bounded task runner: dispatchers run their jobs with it,
feeds their followers' writes, the Cassandra storage its trims and group rewrites. What
a failure does to the other parts is the caller's choice (``on_failure``):

* ``"finish"``: every part runs; the failures are reported once all are done (a
  dispatcher names each job that failed, so nothing is reported written that was not).
* ``"stop"``: no part starts after the first failure; those already running finish.
* ``"cancel"``: no part starts after the first failure, and those running are cancelled
  (a retry redoes the whole operation, which is idempotent).

An anyio task group raises its tasks' errors as an ``ExceptionGroup``, which no caller
(nor arq's retry check) expects from a storage call: :func:`run_bounded` returns the
failures instead, and :func:`run_each` raises the error itself when one part failed
and a :class:`~aiostream.exceptions.FanoutError` holding each error when several did.

:class:`RetryPolicy` is how many times a compare-and-set is tried, and how long to wait
between two tries.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio

from aiostream.exceptions import FanoutError

T = TypeVar("T")
OnFailure = Literal["finish", "stop", "cancel"]


async def run_bounded(
    items: Iterable[T],
    call: Callable[[T], Awaitable[object]],
    *,
    limit: int | None = None,
    on_failure: OnFailure,
) -> list[tuple[T, Exception]]:
    """Await ``call(item)`` for every item concurrently, at most ``limit`` at once.

    The first ``limit`` calls start together; each of the ``limit`` tasks then takes the
    next item when its call is done, so 100,000 items cost ``limit`` tasks, not 100,000.
    A single item is awaited in the calling task.

    Args:
        items: The parts.
        call: What to do with each.
        limit: Calls at once (None: all of them).
        on_failure: ``"finish"``, ``"stop"`` or ``"cancel"`` (see the module).

    Returns:
        ``(item, error)`` of every call that raised, in the order they failed.

    Raises:
        ValueError: ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    todo = items if isinstance(items, Sequence) else list(items)
    failures: list[tuple[T, Exception]] = []
    if len(todo) <= 1:
        for item in todo:
            try:
                await call(item)
            except Exception as exc:
                failures.append((item, exc))
        return failures
    pending = iter(todo)
    stopped = False

    async def worker(first: T, scope: anyio.CancelScope) -> None:
        nonlocal stopped
        for item in itertools.chain((first,), pending):
            try:
                await call(item)
            except Exception as exc:
                failures.append((item, exc))
                if on_failure != "finish":
                    stopped = True
                    if on_failure == "cancel":
                        scope.cancel()
                    return
            if stopped:
                return

    workers = len(todo) if limit is None else min(limit, len(todo))
    async with anyio.create_task_group() as tg:
        for first in itertools.islice(pending, workers):
            tg.start_soon(worker, first, tg.cancel_scope)
    return failures


async def run_each(
    items: Iterable[T], call: Callable[[T], Awaitable[object]], *, limit: int | None = None
) -> None:
    """Await ``call(item)`` for every item concurrently, at most ``limit`` at once.

    The first failure cancels the calls still running or waiting (a retry redoes the
    whole operation, which is idempotent); calls that failed at the same moment are
    kept too.

    Raises:
        Exception: the error of the one call that failed, unchanged (its ``__cause__``,
            e.g. the driver's error, included).
        FanoutError: several calls failed; ``failures`` holds ``(item, error)`` for each.
    """
    failures = await run_bounded(items, call, limit=limit, on_failure="cancel")
    if len(failures) == 1:
        raise failures[0][1]
    if failures:
        raise FanoutError(failures)


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """The results of ``calls``, awaited concurrently, in order (failures as in
    :func:`run_each`: the first cancels the others)."""
    results: list[Any] = [None] * len(calls)

    async def run(index: int) -> None:
        results[index] = await calls[index]

    await run_each(range(len(calls)), run)
    return results


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Tries of an optimistic write (read, compute, compare-and-set), and the pause
    between two: random, growing with each lost race up to a ceiling, so that writers
    contending for one feed spread out instead of colliding again.

    One policy covers one operation: a layer that retries hands its storage single
    attempts (or its whole budget), so that tries are never multiplied.

    Args:
        attempts: Tries in all (at least one is made).
        step: Ceiling of the first pause, in seconds; each lost race adds one more.
        max_steps: Lost races after which the ceiling stops growing.

    Example::

        policy = RetryPolicy(attempts=50)
        for attempt in policy.attempts_range():
            if await try_once():
                break
            await policy.backoff(attempt)
    """

    attempts: int
    step: float = 0.001
    max_steps: int = 20

    def attempts_range(self) -> range:
        """The attempt numbers, from 0."""
        return range(max(self.attempts, 1))

    def is_last(self, attempt: int) -> bool:
        """Whether ``attempt`` (from 0) was the last try."""
        return attempt + 1 >= self.attempts

    async def backoff(self, attempt: int) -> None:
        """Wait after the lost attempt ``attempt`` (from 0)."""
        await anyio.sleep(random.uniform(0, self.step * min(attempt + 1, self.max_steps)))


def chunked(items: Iterable[Any], size: int) -> Iterable[tuple[Any, ...]]:
    """Split ``items`` into tuples of at most ``size``."""
    iterator = iter(items)
    while chunk := tuple(itertools.islice(iterator, size)):
        yield chunk
