"""OpenTelemetry sink: counters and histograms through the OpenTelemetry metrics API.

Needs the ``otel`` extra (``pip install "aiostream-feeds[otel]"``), which installs only
``opentelemetry-api``: the application configures the SDK and its exporters (OTLP,
Prometheus, …) as usual. Importing this module imports ``opentelemetry``, importing
``aiostream`` does not.

Instruments (``aiostream`` is the default ``namespace``; attributes in brackets):

* ``aiostream.feed.reads`` [feed]: items returned by feed reads;
* ``aiostream.feed.read.duration`` [feed]: histogram of feed read latency, in seconds;
* ``aiostream.feed.writes`` / ``aiostream.feed.deletes`` [feed]: activities written to /
  removed from feeds;
* ``aiostream.fanout.feeds`` [feed, operation]: feeds reached by fanout;
* ``aiostream.fanout.chunk.duration`` [feed, operation]: histogram of fanout chunk latency;
* ``aiostream.activities.published``, ``aiostream.activities.removed``;
* ``aiostream.storage.operation.duration`` [operation]: histogram of storage calls;
* ``aiostream.job.retries`` [job_name, kind]: background job retries by error kind;
* ``aiostream.errors`` [where, kind]: failures by place and error class name.

The meter's instrumentation scope is ``aiostream`` with the package's version.

Example::

    from opentelemetry import metrics as otel_metrics
    otel_metrics.set_meter_provider(provider)  # your SDK MeterProvider
    manager = PinManager(metrics=OpenTelemetryMetrics())
"""

from __future__ import annotations

from collections.abc import Sequence

from aiostream._version import __version__
from aiostream.exceptions import ConfigurationError, requires_extra
from aiostream.metrics import Metrics, _bucket_bounds

with requires_extra("aiostream.metrics.otel", "the 'opentelemetry-api' package", "otel"):
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, get_meter

__all__ = ["OpenTelemetryMetrics"]


class OpenTelemetryMetrics(Metrics):
    """Records every hook with OpenTelemetry counters and histograms.

    Args:
        meter_provider: Provider of the meter (default: the global one, which is a no-op
            until the application sets an SDK provider).
        namespace: Prefix of every instrument name (``aiostream``).
        buckets: Advised bucket bounds, in seconds, of the latency histograms
            (:data:`aiostream.metrics.LATENCY_BUCKETS`; the SDK's own default bounds
            are meant for milliseconds). Views configured in the SDK take precedence.

    Raises:
        ConfigurationError: ``namespace`` is not a str or ``buckets`` not increasing numbers.

    Example::

        provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])
        metrics = OpenTelemetryMetrics(meter_provider=provider)
        feed = PinFeed(13, metrics=metrics)
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        namespace: str = "aiostream",
        buckets: Sequence[float] | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(
                f"OpenTelemetryMetrics namespace: expected a non-empty str, got {namespace!r}"
            )
        bounds = _bucket_bounds("OpenTelemetryMetrics", buckets)
        self.namespace = namespace
        self.meter: Meter = get_meter("aiostream", __version__, meter_provider=meter_provider)
        ns = namespace
        self.feed_reads = self._counter(f"{ns}.feed.reads", "{item}", "Items returned by reads.")
        self.feed_read_duration = self._histogram(
            f"{ns}.feed.read.duration", "Latency of feed reads.", bounds
        )
        self.feed_writes = self._counter(
            f"{ns}.feed.writes", "{activity}", "Activities written to feeds."
        )
        self.feed_deletes = self._counter(
            f"{ns}.feed.deletes", "{activity}", "Activities removed from feeds."
        )
        self.fanout_feeds = self._counter(
            f"{ns}.fanout.feeds", "{feed}", "Feeds reached by fanout."
        )
        self.fanout_chunk_duration = self._histogram(
            f"{ns}.fanout.chunk.duration", "Latency of fanout chunks.", bounds
        )
        self.activities_published = self._counter(
            f"{ns}.activities.published", "{activity}", "User activities published."
        )
        self.activities_removed = self._counter(
            f"{ns}.activities.removed", "{activity}", "User activities removed."
        )
        self.storage_operation_duration = self._histogram(
            f"{ns}.storage.operation.duration", "Latency of storage calls.", bounds
        )
        self.job_retries = self._counter(f"{ns}.job.retries", "{retry}", "Background job retries.")
        self.errors = self._counter(f"{ns}.errors", "{error}", "Failed operations.")

    def _counter(self, name: str, unit: str, description: str) -> Counter:
        return self.meter.create_counter(name, unit=unit, description=description)

    def _histogram(self, name: str, description: str, bounds: Sequence[float]) -> Histogram:
        return self.meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=bounds
        )

    def __repr__(self) -> str:
        return f"<OpenTelemetryMetrics namespace={self.namespace!r}>"

    # -- hooks ---------------------------------------------------------------------------

    def on_feed_read(self, feed: str, count: int, seconds: float) -> None:
        """``feed.reads`` += count; ``feed.read.duration`` records seconds."""
        attributes = {"feed": feed}
        self.feed_reads.add(count, attributes)
        self.feed_read_duration.record(seconds, attributes)

    def on_feed_write(self, feed: str, count: int) -> None:
        """``feed.writes`` += count."""
        self.feed_writes.add(count, {"feed": feed})

    def on_feed_remove(self, feed: str, count: int) -> None:
        """``feed.deletes`` += count."""
        self.feed_deletes.add(count, {"feed": feed})

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        """``fanout.feeds`` += feeds; ``fanout.chunk.duration`` records seconds."""
        attributes = {"feed": feed, "operation": operation}
        self.fanout_feeds.add(feeds, attributes)
        self.fanout_chunk_duration.record(seconds, attributes)

    def on_activity_published(self) -> None:
        """``activities.published`` += 1."""
        self.activities_published.add(1)

    def on_activity_removed(self) -> None:
        """``activities.removed`` += 1."""
        self.activities_removed.add(1)

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        """``storage.operation.duration`` records seconds."""
        self.storage_operation_duration.record(seconds, {"operation": operation})

    def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
        """``job.retries`` += 1."""
        self.job_retries.add(1, {"job_name": job, "kind": type(error).__name__})

    def on_error(self, where: str, error: BaseException) -> None:
        """``errors`` += 1."""
        self.errors.add(1, {"where": where, "kind": type(error).__name__})
