"""OpenTelemetryMetrics: what an SDK MeterProvider's in-memory reader collects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import aiostream
from aiostream import ConfigurationError
from aiostream.metrics import LATENCY_BUCKETS
from aiostream.metrics.otel import OpenTelemetryMetrics
from tests.metrics.scenario import COUNTS, TIMINGS, run_workload

pytestmark = pytest.mark.anyio

COUNTER_NAMES = {
    "reads": ("aiostream.feed.reads", "{item}"),
    "writes": ("aiostream.feed.writes", "{activity}"),
    "deletes": ("aiostream.feed.deletes", "{activity}"),
    "fanout": ("aiostream.fanout.feeds", "{feed}"),
    "published": ("aiostream.activities.published", "{activity}"),
    "removed": ("aiostream.activities.removed", "{activity}"),
    "errors": ("aiostream.errors", "{error}"),
    "job_retries": ("aiostream.job.retries", "{retry}"),
}
HISTOGRAM_NAMES = {
    "read_latency": "aiostream.feed.read.duration",
    "fanout_latency": "aiostream.fanout.chunk.duration",
    "storage": "aiostream.storage.operation.duration",
}


@pytest.fixture
def reader() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    try:
        yield provider, metric_reader
    finally:
        provider.shutdown()


def collect(metric_reader: InMemoryMetricReader) -> dict[str, Any]:
    data = metric_reader.get_metrics_data()
    assert data is not None
    (resource,) = data.resource_metrics
    (scope,) = resource.scope_metrics
    assert scope.scope.name == "aiostream"
    assert scope.scope.version == aiostream.__version__
    return {metric.name: metric for metric in scope.metrics}


def points(metric: Any) -> dict[tuple[tuple[str, str], ...], Any]:
    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}


async def test_otel_reader_collects_every_hook(
    reader: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, metric_reader = reader
    await run_workload(OpenTelemetryMetrics(meter_provider=provider))
    metrics = collect(metric_reader)

    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for name, unit in COUNTER_NAMES.values():
        assert metrics[name].unit == unit
        assert metrics[name].data.is_monotonic
        for labels, point in points(metrics[name]).items():
            sums[(name, labels)] = point.value
    assert sums == {(COUNTER_NAMES[c][0], labels): v for (c, labels), v in COUNTS.items()}

    observed: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for name in HISTOGRAM_NAMES.values():
        assert metrics[name].unit == "s"
        for labels, point in points(metrics[name]).items():
            observed[(name, labels)] = point.count
            assert point.explicit_bounds == LATENCY_BUCKETS
            assert sum(point.bucket_counts) == point.count
            assert 0 <= point.min <= point.max < 10
    assert observed == {(HISTOGRAM_NAMES[c], labels): n for (c, labels), n in TIMINGS.items()}
    assert set(metrics) == {n for n, _ in COUNTER_NAMES.values()} | set(HISTOGRAM_NAMES.values())


def test_namespace_and_buckets(reader: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    provider, metric_reader = reader
    sink = OpenTelemetryMetrics(meter_provider=provider, namespace="feeds", buckets=[0.1, 1])
    sink.on_fanout("PinFeed", "add", 100, 0.5)
    metrics = collect(metric_reader)
    assert set(metrics) == {"feeds.fanout.feeds", "feeds.fanout.chunk.duration"}
    (point,) = points(metrics["feeds.fanout.chunk.duration"]).values()
    assert point.explicit_bounds == (0.1, 1.0)
    assert list(point.bucket_counts) == [0, 1, 0]
    (feeds,) = points(metrics["feeds.fanout.feeds"]).values()
    assert feeds.value == 100


def test_bad_options_are_named() -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        OpenTelemetryMetrics(namespace="")
    with pytest.raises(ConfigurationError, match="buckets"):
        OpenTelemetryMetrics(buckets=["fast"])  # type: ignore[list-item]
