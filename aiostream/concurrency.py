"""Running the parts of one fanout or follow concurrently, with aiostream's own errors.

An anyio task group raises its tasks' errors as an ``ExceptionGroup``, which no caller
(nor arq's retry check) expects from a storage call. :func:`run_each` raises the error
itself when one part failed and a :class:`~aiostream.exceptions.FanoutError` holding
each error when several did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TypeVar

import anyio

from aiostream.exceptions import FanoutError

__all__ = ["run_each"]

T = TypeVar("T")


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
    failures: list[tuple[T, BaseException]] = []
    limiter: AbstractAsyncContextManager[object] = (
        nullcontext() if limit is None else anyio.CapacityLimiter(limit)
    )

    async def one(item: T, scope: anyio.CancelScope) -> None:
        async with limiter:
            try:
                await call(item)
            except Exception as exc:
                failures.append((item, exc))
                scope.cancel()  # before the limiter lets a waiting call start

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item, tg.cancel_scope)
    if len(failures) == 1:
        raise failures[0][1]
    if failures:
        raise FanoutError(failures)
