"""Metrics hooks. The default does nothing; pass your own object to feeds and managers.

A metrics sink is any object with the methods of :class:`Metrics`; subclass
:class:`NoopMetrics` to override only what you need.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from aiostream.exceptions import ConfigurationError

__all__ = ["Metrics", "NoopMetrics", "load_metrics", "noop_metrics"]


@runtime_checkable
class Metrics(Protocol):
    """What aiostream reports. ``feed`` is the feed class's name."""

    def on_feed_read(self, feed: str, count: int, seconds: float) -> None:
        """A page of ``count`` items was read in ``seconds``."""
        return None

    def on_feed_write(self, feed: str, count: int) -> None:
        """``count`` activities were written to one feed."""
        return None

    def on_feed_remove(self, feed: str, count: int) -> None:
        """``count`` activities were removed from one feed."""
        return None

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        """One fanout chunk wrote ``operation`` into ``feeds`` feeds in ``seconds``."""
        return None

    def on_activity_published(self) -> None:
        """A user activity was published (before fanout)."""
        return None

    def on_activity_removed(self) -> None:
        """A user activity was removed (before fanout)."""
        return None

    def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
        """Background job ``job`` (its function name) failed its ``attempt``-th try with a
        transient ``error`` and will run again."""
        return None

    def on_error(self, where: str, error: BaseException) -> None:
        """An operation failed (``where`` names it; the error's class is its kind)."""
        return None


class NoopMetrics(Metrics):
    """Discards everything (the protocol's methods do nothing). The default; subclass
    it to override only the hooks you need."""


noop_metrics = NoopMetrics()


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a one-element list that holds the elapsed seconds once the block ends."""
    elapsed = [0.0]
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - started


def load_metrics(class_path: str | None, options: Mapping[str, Any] | None = None) -> Metrics:
    """Build the metrics sink named by a dotted path (``STREAM_METRIC_CLASS``) with keyword
    ``options`` (``STREAM_METRICS_OPTIONS``); the no-op sink when no path is given.

    Raises:
        ConfigurationError: the path cannot be imported or the object is not a metrics sink.
    """
    if not class_path:
        return noop_metrics
    module_name, _, attr = class_path.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"metrics class {class_path!r} cannot be imported: {exc}") from exc
    sink = factory(**dict(options or {}))
    if not isinstance(sink, Metrics):
        raise ConfigurationError(f"{class_path!r} does not implement aiostream.metrics.Metrics")
    return sink
