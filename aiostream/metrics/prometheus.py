"""Prometheus sink: counters and histograms in a ``prometheus_client`` registry.

Needs the ``prometheus`` extra (``pip install "aiostream-feeds[prometheus]"``);
importing this module imports ``prometheus_client``, importing ``aiostream`` does not.

Series (``aiostream`` is the default ``namespace``; labels in brackets):

* ``aiostream_feed_reads_total`` [feed]: items returned by feed reads;
* ``aiostream_feed_read_seconds`` [feed]: histogram of feed read latency;
* ``aiostream_feed_writes_total`` / ``aiostream_feed_deletes_total`` [feed]: activities
  written to / removed from feeds;
* ``aiostream_fanout_feeds_total`` [feed, operation]: feeds reached by fanout;
* ``aiostream_fanout_chunk_seconds`` [feed, operation]: histogram of fanout chunk latency;
* ``aiostream_activities_published_total``, ``aiostream_activities_removed_total``;
* ``aiostream_storage_operation_seconds`` [operation]: histogram of storage calls;
* ``aiostream_job_retries_total`` [job_name, kind]: background job retries by error kind;
* ``aiostream_errors_total`` [where, kind]: failures by place and error class name.

Example (serve them with ``prometheus_client.start_http_server`` or your framework's
``/metrics`` route)::

    metrics = PrometheusMetrics()              # the default registry
    manager = PinManager(metrics=metrics)
"""

from __future__ import annotations

from collections.abc import Sequence

from aiostream.exceptions import ConfigurationError, requires_extra
from aiostream.metrics import Metrics, _bucket_bounds

with requires_extra(
    "aiostream.metrics.prometheus", "the 'prometheus-client' package", "prometheus"
):
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics(Metrics):
    """Records every hook in Prometheus counters and histograms.

    Build one per registry and namespace (registering the same series twice is an
    error in ``prometheus_client``), typically once at application start.

    Args:
        registry: Where the series are registered (default: ``prometheus_client.REGISTRY``,
            the one ``generate_latest()`` and ``start_http_server`` expose).
        namespace: Prefix of every series name (``aiostream``).
        buckets: Upper bounds, in seconds, of the latency histograms
            (:data:`aiostream.metrics.LATENCY_BUCKETS`).

    Raises:
        ConfigurationError: the registry already holds these series, or the namespace or
            buckets are invalid (the message names which).

    Example::

        registry = CollectorRegistry()
        metrics = PrometheusMetrics(registry=registry, namespace="feeds")
        feed = PinFeed(13, metrics=metrics)
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "aiostream",
        buckets: Sequence[float] | None = None,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        if not isinstance(namespace, str):
            raise ConfigurationError(
                f"PrometheusMetrics namespace: expected a str, got {type(namespace).__name__}"
            )
        self.namespace = namespace
        bounds = _bucket_bounds("PrometheusMetrics", buckets)
        self._registered: list[Counter | Histogram] = []
        try:
            self.feed_reads = self._counter(
                "feed_reads", "Items (activities or groups) returned by feed reads.", "feed"
            )
            self.feed_read_seconds = self._histogram(
                "feed_read_seconds", "Latency of feed reads.", bounds, "feed"
            )
            self.feed_writes = self._counter("feed_writes", "Activities written to feeds.", "feed")
            self.feed_deletes = self._counter(
                "feed_deletes", "Activities removed from feeds.", "feed"
            )
            self.fanout_feeds = self._counter(
                "fanout_feeds", "Feeds reached by fanout.", "feed", "operation"
            )
            self.fanout_chunk_seconds = self._histogram(
                "fanout_chunk_seconds", "Latency of fanout chunks.", bounds, "feed", "operation"
            )
            self.activities_published = self._counter(
                "activities_published", "User activities published."
            )
            self.activities_removed = self._counter(
                "activities_removed", "User activities removed."
            )
            self.storage_operation_seconds = self._histogram(
                "storage_operation_seconds", "Latency of storage calls.", bounds, "operation"
            )
            self.job_retries = self._counter(
                "job_retries", "Background job retries.", "job_name", "kind"
            )
            self.errors = self._counter("errors", "Failed operations.", "where", "kind")
        except ValueError as exc:
            for collector in self._registered:  # leave the registry as it was
                self.registry.unregister(collector)
            raise ConfigurationError(
                f"PrometheusMetrics(namespace={namespace!r}) cannot register its series in "
                f"{self.registry!r}: {exc} (build one sink per registry and namespace)"
            ) from exc

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        counter = Counter(
            name, documentation, labels, namespace=self.namespace, registry=self.registry
        )
        self._registered.append(counter)
        return counter

    def _histogram(
        self, name: str, documentation: str, bounds: Sequence[float], *labels: str
    ) -> Histogram:
        histogram = Histogram(
            name,
            documentation,
            labels,
            namespace=self.namespace,
            registry=self.registry,
            buckets=bounds,
        )
        self._registered.append(histogram)
        return histogram

    def __repr__(self) -> str:
        return f"<PrometheusMetrics namespace={self.namespace!r}>"

    # -- hooks ---------------------------------------------------------------------------

    def on_feed_read(self, feed: str, count: int, seconds: float) -> None:
        """``feed_reads_total`` += count; ``feed_read_seconds`` observes seconds."""
        self.feed_reads.labels(feed).inc(count)
        self.feed_read_seconds.labels(feed).observe(seconds)

    def on_feed_write(self, feed: str, count: int) -> None:
        """``feed_writes_total`` += count."""
        self.feed_writes.labels(feed).inc(count)

    def on_feed_remove(self, feed: str, count: int) -> None:
        """``feed_deletes_total`` += count."""
        self.feed_deletes.labels(feed).inc(count)

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        """``fanout_feeds_total`` += feeds; ``fanout_chunk_seconds`` observes seconds."""
        self.fanout_feeds.labels(feed, operation).inc(feeds)
        self.fanout_chunk_seconds.labels(feed, operation).observe(seconds)

    def on_activity_published(self) -> None:
        """``activities_published_total`` += 1."""
        self.activities_published.inc()

    def on_activity_removed(self) -> None:
        """``activities_removed_total`` += 1."""
        self.activities_removed.inc()

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        """``storage_operation_seconds`` observes seconds."""
        self.storage_operation_seconds.labels(operation).observe(seconds)

    def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
        """``job_retries_total`` += 1."""
        self.job_retries.labels(job, type(error).__name__).inc()

    def on_error(self, where: str, error: BaseException) -> None:
        """``errors_total`` += 1."""
        self.errors.labels(where, type(error).__name__).inc()
