"""Choosing the sink by settings, end to end, and the errors of a bad choice."""

from __future__ import annotations

import json
import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from aiostream import BaseFeed, ConfigurationError, MemoryStorage, Settings
from aiostream.metrics import NoopMetrics, load_metrics
from aiostream.metrics.otel import OpenTelemetryMetrics
from aiostream.metrics.prometheus import PrometheusMetrics
from aiostream.metrics.statsd import StatsdMetrics
from tests.helpers import make_activities
from tests.metrics.conftest import StatsdServer

pytestmark = pytest.mark.anyio


class EnvFeed(BaseFeed):
    key_format = "m:env:%(user_id)s"


async def test_statsd_chosen_by_environment(statsd_server: StatsdServer) -> None:
    settings = Settings.from_env(
        {
            "STREAM_METRIC_CLASS": "aiostream.metrics.statsd.StatsdMetrics",
            "STREAM_METRICS_OPTIONS": json.dumps(
                {"host": "127.0.0.1", "port": statsd_server.port, "prefix": "stream"}
            ),
        }
    )
    sink = settings.metrics()
    assert isinstance(sink, StatsdMetrics)
    with sink:
        feed = EnvFeed(1, storage=MemoryStorage(), metrics=sink)
        await feed.add_many(make_activities(2))
        await feed[:10]
    received = {(s.name, s.type): s.value for s in statsd_server.receive()}
    assert received[("stream.EnvFeed.writes", "c")] == 2
    assert received[("stream.EnvFeed.reads", "c")] == 2
    assert ("stream.EnvFeed.read_latency", "ms") in received
    assert ("stream.storage.read_timeline", "ms") in received


async def test_prometheus_and_otel_chosen_by_class_path() -> None:
    registry = CollectorRegistry()
    prometheus = Settings(
        metrics_class="aiostream.metrics.prometheus.PrometheusMetrics",
        metrics_options={"registry": registry, "namespace": "svc"},
    ).metrics()
    assert isinstance(prometheus, PrometheusMetrics)
    await EnvFeed(1, storage=MemoryStorage(), metrics=prometheus).add_many(make_activities(1))
    assert 'svc_feed_writes_total{feed="EnvFeed"} 1.0' in generate_latest(registry).decode()

    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    try:
        otel = load_metrics(OTEL, {"meter_provider": provider})
        assert isinstance(otel, OpenTelemetryMetrics)
        await EnvFeed(1, storage=MemoryStorage(), metrics=otel).add_many(make_activities(3))
        data = metric_reader.get_metrics_data()
        assert data is not None
        (writes,) = [
            m
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "aiostream.feed.writes"
        ]
        assert [(dict(p.attributes), p.value) for p in writes.data.data_points] == [
            ({"feed": "EnvFeed"}, 3)
        ]
    finally:
        provider.shutdown()


STATSD = "aiostream.metrics.statsd.StatsdMetrics"
PROMETHEUS = "aiostream.metrics.prometheus.PrometheusMetrics"
OTEL = "aiostream.metrics.otel.OpenTelemetryMetrics"


@pytest.mark.parametrize(
    ("class_path", "options", "message"),
    [
        ("aiostream.metrics.nowhere.Sink", {}, r"'aiostream\.metrics\.nowhere\.Sink' cannot be"),
        ("aiostream.metrics.statsd.NoSuchSink", {}, r"NoSuchSink.* cannot be imported"),
        ("StatsdMetrics", {}, r"'StatsdMetrics' cannot be imported"),
        ("aiostream.metrics.LATENCY_BUCKETS", {}, "is not a class or factory"),
        ("builtins.dict", {}, "does not implement aiostream.metrics.Metrics"),
        (STATSD, {"hots": "x"}, r"rejected the options.*'hots'"),
        (STATSD, {"port": "8125"}, r"port: expected an int port, got '8125'"),
        (STATSD, {"prefix": 3}, "prefix: expected a str or None, got int"),
        (PROMETHEUS, {"namespace": 7}, "namespace: expected a str"),
        (PROMETHEUS, {"buckets": 5}, r"PrometheusMetrics buckets: expected increasing .* got 5"),
        (OTEL, {"buckets": [1, 0.5]}, r"OpenTelemetryMetrics buckets: .* got \[1, 0\.5\]"),
        (OTEL, {"meter": 1}, r"rejected the options.*'meter'"),
    ],
)
def test_bad_class_or_options_are_named(
    class_path: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings(metrics_class=class_path, metrics_options=options).metrics()


def test_bad_options_from_environment_are_named() -> None:
    env = {
        "STREAM_METRIC_CLASS": "aiostream.metrics.statsd.StatsdMetrics",
        "STREAM_METRICS_OPTIONS": '{"host": "127.0.0.1", "prot": 8125}',
    }
    with pytest.raises(ConfigurationError, match=r"StatsdMetrics.*'prot'"):
        Settings.from_env(env).metrics()


def test_a_missing_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsd", None)  # as if `statsd` were not installed
    monkeypatch.delitem(sys.modules, "aiostream.metrics.statsd")
    with pytest.raises(ConfigurationError, match=r"aiostream-feeds\[statsd\]"):
        load_metrics("aiostream.metrics.statsd.StatsdMetrics")


def test_no_class_is_the_noop_sink() -> None:
    assert isinstance(Settings.from_env({}).metrics(), NoopMetrics)
    assert isinstance(Settings.from_env({"STREAM_METRIC_CLASS": ""}).metrics(), NoopMetrics)
