"""Metrics hooks. The default does nothing; pass your own object to feeds and managers.

A metrics sink is any object with these methods (see :class:`Metrics`); subclass
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

    def on_feed_write(self, feed: str, count: int) -> None:
        """``count`` activities were written to one feed."""

    def on_feed_remove(self, feed: str, count: int) -> None:
        """``count`` activities were removed from one feed."""

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        """One fanout chunk wrote ``operation`` into ``feeds`` feeds in ``seconds``."""

    def on_activity_published(self) -> None:
        """A user activity was published (before fanout)."""

    def on_activity_removed(self) -> None:
        """A user activity was removed (before fanout)."""

    def on_error(self, where: str, error: BaseException) -> None:
        """An operation failed (``where`` names it)."""


class NoopMetrics:
    """Discards everything. The default."""

    def on_feed_read(self, feed: str, count: int, seconds: float) -> None:
        """Discarded."""

    def on_feed_write(self, feed: str, count: int) -> None:
        """Discarded."""

    def on_feed_remove(self, feed: str, count: int) -> None:
        """Discarded."""

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        """Discarded."""

    def on_activity_published(self) -> None:
        """Discarded."""

    def on_activity_removed(self) -> None:
        """Discarded."""

    def on_error(self, where: str, error: BaseException) -> None:
        """Discarded."""


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
