"""Metrics hooks. The default does nothing; pass your own object to feeds and managers.

A metrics sink is any object with the methods of :class:`Metrics`; subclass
:class:`NoopMetrics` to override only what you need. Three sinks ship with aiostream,
each behind its own extra and each importing its library only when its own module is
imported (``import aiostream`` imports none of them):

* :class:`aiostream.metrics.statsd.StatsdMetrics`: extra ``statsd`` (the ``statsd``
  package), options ``host``, ``port``, ``prefix`` as in Stream Framework;
* :class:`aiostream.metrics.prometheus.PrometheusMetrics`: extra ``prometheus``
  (``prometheus-client``), options ``namespace``, ``buckets``, ``registry``;
* :class:`aiostream.metrics.otel.OpenTelemetryMetrics`: extra ``otel``
  (``opentelemetry-api`` only; the application brings the SDK), options ``namespace``,
  ``meter_provider``.

Choose one by settings (``STREAM_METRIC_CLASS=aiostream.metrics.statsd.StatsdMetrics``,
``STREAM_METRICS_OPTIONS='{"host": "statsd.internal", "prefix": "stream"}'``, then
``Settings.from_env().metrics()``) or build one and pass it in (``Manager(metrics=...)``,
``MyFeed(user_id, metrics=...)``).

Names, per hook. ``<Feed>`` is the feed class's name, ``kind`` the error's class name,
a storage ``operation`` the :class:`~aiostream.storage.base.FeedStorage` method called
(``read_timeline``, ``add_to_timelines``, …). StatsD names get the client's ``prefix``
and times in milliseconds; Prometheus and OpenTelemetry names start with ``namespace``
(``aiostream``), times are in seconds, and the bracketed names are labels / attributes.

===================== ============================= ========================================
Hook                  StatsD                        Prometheus / OpenTelemetry
===================== ============================= ========================================
on_feed_read          ``<Feed>.reads`` (count)      ``aiostream_feed_reads_total``
                                                    ``aiostream.feed.reads`` [feed]
on_feed_read          ``<Feed>.read_latency`` (ms)  ``aiostream_feed_read_seconds``
                                                    ``aiostream.feed.read.duration`` [feed]
on_feed_write         ``<Feed>.writes`` (count)     ``aiostream_feed_writes_total``
                                                    ``aiostream.feed.writes`` [feed]
on_feed_remove        ``<Feed>.deletes`` (count)    ``aiostream_feed_deletes_total``
                                                    ``aiostream.feed.deletes`` [feed]
on_fanout             ``<Feed>.fanout.<operation>`` ``aiostream_fanout_feeds_total``
                      (count: feeds reached)        ``aiostream.fanout.feeds``
                                                    [feed, operation]
on_fanout             ``<Feed>.fanout_latency``     ``aiostream_fanout_chunk_seconds``
                      (ms, one per chunk)           ``aiostream.fanout.chunk.duration``
                                                    [feed, operation]
on_activity_published ``activities.published``      ``aiostream_activities_published_total``
                                                    ``aiostream.activities.published``
on_activity_removed   ``activities.removed``        ``aiostream_activities_removed_total``
                                                    ``aiostream.activities.removed``
on_storage_operation  ``storage.<operation>`` (ms)  ``aiostream_storage_operation_seconds``
                                                    ``aiostream.storage.operation.duration``
                                                    [operation]
on_job_retry          ``jobs.<job>.retries.<kind>`` ``aiostream_job_retries_total``
                      (count)                       ``aiostream.job.retries``
                                                    [job_name, kind]
on_error              ``errors.<where>.<kind>``     ``aiostream_errors_total``
                      (count)                       ``aiostream.errors`` [where, kind]
===================== ============================= ========================================

Counters count items (activities, groups, feeds), not calls; each latency is a
histogram (Prometheus, OpenTelemetry) or a timer (StatsD), whose count is the number of
calls. The StatsD names of the first eight rows are the ones Stream Framework's StatsD
sink used, so existing dashboards keep working. A storage call that raises is timed and
also counted as an error with ``where`` = ``storage.<operation>``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, Protocol, runtime_checkable

from aiostream.exceptions import ConfigurationError

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "NoopMetrics",
    "load_metrics",
    "noop_metrics",
    "stopwatch",
]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
"""Default histogram bucket bounds, in seconds, of the Prometheus and OpenTelemetry sinks:
from half a millisecond (a memory read, a Redis round trip) to ten seconds (a slow chunk)."""


def _bucket_bounds(owner: str, buckets: Any) -> tuple[float, ...]:
    """``buckets`` as increasing floats (:data:`LATENCY_BUCKETS` for None).

    Raises:
        ConfigurationError: not a non-empty, increasing sequence of numbers.
    """
    if buckets is None:
        return LATENCY_BUCKETS
    try:
        bounds = tuple(float(b) for b in buckets)
    except (TypeError, ValueError):
        bounds = ()
    if not bounds or any(a >= b for a, b in pairwise(bounds)):
        raise ConfigurationError(
            f"{owner} buckets: expected increasing numbers (seconds), got {buckets!r}"
        )
    return bounds


@runtime_checkable
class Metrics(Protocol):
    """What aiostream reports. ``feed`` is the feed class's name.

    Hooks are called inline on the hot path: they must not block and must not raise.
    """

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

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        """One call of the storage method ``operation`` (``read_timeline``,
        ``add_to_timelines``, …) took ``seconds`` (failed calls included)."""
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
    it to override only the hooks you need.

    Example::

        class PublishedCounter(NoopMetrics):
            def __init__(self) -> None:
                self.published = 0

            def on_activity_published(self) -> None:
                self.published += 1
    """


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

    Example::

        sink = load_metrics("aiostream.metrics.statsd.StatsdMetrics", {"prefix": "stream"})

    Raises:
        ConfigurationError: the path cannot be imported (a missing extra included), the
            options do not fit the class, or the object is not a metrics sink.
    """
    if not class_path:
        return noop_metrics
    module_name, _, attr = class_path.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"metrics class {class_path!r} cannot be imported: {exc}") from exc
    if not callable(factory):
        raise ConfigurationError(f"{class_path!r} is not a class or factory")
    kwargs = dict(options or {})
    try:
        sink = factory(**kwargs)
    except (TypeError, ValueError, OSError) as exc:
        raise ConfigurationError(
            f"metrics class {class_path!r} rejected the options {kwargs!r} "
            f"(STREAM_METRICS_OPTIONS): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(sink, Metrics):
        raise ConfigurationError(f"{class_path!r} does not implement aiostream.metrics.Metrics")
    return sink
