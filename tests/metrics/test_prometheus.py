"""PrometheusMetrics: the exposition text of a fresh registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aiostream import ConfigurationError
from aiostream.metrics import LATENCY_BUCKETS
from aiostream.metrics.prometheus import PrometheusMetrics
from tests.metrics.scenario import COUNTS, TIMINGS, run_workload

pytestmark = pytest.mark.anyio

COUNTER_NAMES = {
    "reads": "aiostream_feed_reads_total",
    "writes": "aiostream_feed_writes_total",
    "deletes": "aiostream_feed_deletes_total",
    "fanout": "aiostream_fanout_feeds_total",
    "published": "aiostream_activities_published_total",
    "removed": "aiostream_activities_removed_total",
    "errors": "aiostream_errors_total",
    "job_retries": "aiostream_job_retries_total",
}
HISTOGRAM_NAMES = {
    "read_latency": "aiostream_feed_read_seconds",
    "fanout_latency": "aiostream_fanout_chunk_seconds",
    "storage": "aiostream_storage_operation_seconds",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_prometheus_registry_exposes_every_hook() -> None:
    registry = CollectorRegistry()
    await run_workload(PrometheusMetrics(registry=registry))
    text = generate_latest(registry).decode()
    got = samples(text)

    totals = {key: value for key, value in got.items() if key[0].endswith("_total")}
    assert totals == {(COUNTER_NAMES[c], labels): v for (c, labels), v in COUNTS.items()}
    counts = {key: value for key, value in got.items() if key[0].endswith("_seconds_count")}
    assert counts == {
        (HISTOGRAM_NAMES[c] + "_count", labels): n for (c, labels), n in TIMINGS.items()
    }
    for (concept, labels), _ in TIMINGS.items():
        name = HISTOGRAM_NAMES[concept]
        assert 0 <= got[(name + "_sum", labels)] < 10
        bounds = sorted(
            float(dict(key[1])["le"])
            for key in got
            if key[0] == name + "_bucket" and tuple(p for p in key[1] if p[0] != "le") == labels
        )
        assert bounds == [*LATENCY_BUCKETS, float("inf")]
    # the literal text a scraper reads
    assert 'aiostream_feed_writes_total{feed="PinFeed"} 3.0' in text.splitlines()
    assert "# TYPE aiostream_fanout_chunk_seconds histogram" in text
    assert (
        'aiostream_errors_total{kind="StorageUnavailableError",where="storage.count_timeline"} 1.0'
        in text.splitlines()
    )


def test_namespace_and_buckets() -> None:
    registry = CollectorRegistry()
    sink = PrometheusMetrics(registry=registry, namespace="feeds", buckets=[0.1, 1.0])
    sink.on_storage_operation("read_timeline", 0.5)
    got = samples(generate_latest(registry).decode())
    bucket = "feeds_storage_operation_seconds_bucket"
    assert got[(bucket, (("le", "0.1"), ("operation", "read_timeline")))] == 0
    assert got[(bucket, (("le", "1.0"), ("operation", "read_timeline")))] == 1
    assert not any(name.startswith("aiostream_") for name, _ in got)


def test_registering_twice_is_a_configuration_error() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    with pytest.raises(ConfigurationError, match="one sink per registry and namespace"):
        PrometheusMetrics(registry=registry)
    PrometheusMetrics(registry=registry, namespace="other")  # another namespace is fine
    with pytest.raises(ConfigurationError, match=r"buckets: expected increasing"):
        PrometheusMetrics(registry=CollectorRegistry(), buckets=[1.0, 0.5])
