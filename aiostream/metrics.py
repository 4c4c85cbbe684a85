"""Metrics hooks. The default does nothing; pass your own object to feeds and managers.

A metrics sink is any object with the methods of :class:`Metrics`; subclass
:class:`NoopMetrics` to override only what you need.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

__all__ = ["Metrics", "NoopMetrics", "noop_metrics"]


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

    def on_error(self, where: str, error: BaseException) -> None:
        """An operation failed (``where`` names it)."""
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
