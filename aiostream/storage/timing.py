"""Storage timing: a storage wrapped so that each call reports its duration and its
failures to a metrics sink (:meth:`~aiostream.metrics.Metrics.on_storage_operation`,
:meth:`~aiostream.metrics.Metrics.on_error`).

It stands in the storage layer, over :mod:`aiostream.metrics`: a feed or a Manager wraps
the storage it is bound to with the sink it reports to (:func:`timed_storage`), and a
sink that discards storage timings costs no wrapper at all.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiostream.metrics import Metrics, noop_metrics
from aiostream.storage.base import Capability, FeedStorage

__all__ = ["TimedStorage", "timed_storage"]


class TimedStorage:
    """Forwards every call to ``storage``, reporting each coroutine method's duration
    to ``metrics.on_storage_operation`` and its failures to ``metrics.on_error``.

    Build it with :func:`timed_storage`, which skips the wrapper when the sink would
    discard what it reports.
    """

    __slots__ = ("_metrics", "_storage")

    def __init__(self, storage: FeedStorage, metrics: Metrics) -> None:
        self._storage = storage
        self._metrics = metrics

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The wrapped storage's declared capabilities: the wrapper forwards every method
        the storage has and no other, so it can do exactly what the storage can. Stated
        here rather than left to ``__getattr__`` so it reads as part of the contract."""
        declared: frozenset[Capability] = getattr(self._storage, "capabilities", frozenset())
        return declared

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        if name.startswith("_") or name in UNTIMED or not inspect.iscoroutinefunction(attr):
            return attr
        return self._timed(name, attr)

    def _timed(self, name: str, method: Callable[..., Awaitable[Any]]) -> Any:
        metrics = self._metrics

        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except Exception as exc:
                metrics.on_error(f"storage.{name}", exc)
                raise
            finally:
                metrics.on_storage_operation(name, time.perf_counter() - started)

        return call

    def __repr__(self) -> str:
        return f"<TimedStorage {self._storage!r}>"


def _reports_storage(metrics: Metrics) -> bool:
    # A sink that keeps the protocol's no-op for both storage hooks would discard
    # everything the wrapper measures: skip the wrapper and its cost.
    cls = type(metrics)
    return (
        getattr(cls, "on_storage_operation", None) is not Metrics.on_storage_operation
        or getattr(cls, "on_error", None) is not Metrics.on_error
    )


# Not storage operations: whether anyone subscribes (a flag, read at most once a
# second) is asked before every write's update.
UNTIMED = frozenset({"listening"})


def timed_storage(storage: FeedStorage, metrics: Metrics) -> FeedStorage:
    """``storage`` itself when ``metrics`` discards storage timings and errors (the
    no-op default), else a :class:`TimedStorage` reporting to ``metrics``."""
    if metrics is noop_metrics or not _reports_storage(metrics):
        return storage
    return cast("FeedStorage", TimedStorage(storage, metrics))
