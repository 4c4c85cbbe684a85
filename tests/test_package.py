"""Package-level guarantees: the public API, imports without backends, settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

import aiostream
from aiostream import ConfigurationError, MemoryStorage, NoopMetrics, Settings


def test_all_is_sorted_and_complete() -> None:
    assert aiostream.__all__ == sorted(aiostream.__all__)
    for name in aiostream.__all__:
        assert hasattr(aiostream, name), name


def test_import_does_not_pull_backends_or_do_io() -> None:
    code = (
        "import sys, socket\n"
        "def refuse(*a, **k): raise AssertionError('network I/O at import')\n"
        "socket.socket.connect = refuse\n"
        "import aiostream, aiostream.feeds, aiostream.manager, aiostream.settings\n"
        "import aiostream.metrics\n"
        "aiostream.Settings.from_env({}).metrics()\n"
        "backends = ('redis', 'cassandra', 'arq', 'statsd', 'prometheus_client', 'opentelemetry')\n"
        "bad = [m for m in sys.modules if m.partition('.')[0] in backends]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("module", "library"),
    [
        ("aiostream.metrics.statsd", "statsd"),
        ("aiostream.metrics.prometheus", "prometheus_client"),
        ("aiostream.metrics.otel", "opentelemetry"),
    ],
)
def test_each_metrics_sink_imports_only_its_own_library(module: str, library: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        "others = {'statsd', 'prometheus_client', 'opentelemetry'}"
        f" - {{{library!r}}}\n"
        "assert " + repr(library) + " in sys.modules\n"
        "bad = [m for m in sys.modules if m.partition('.')[0] in others]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "STREAM_REDIS_URL": "redis://cache:6380/2",
            "STREAM_REDIS_SERVERS": "other=redis://b:1/0, third=unix:///tmp/r.sock",
            "STREAM_CASSANDRA_HOSTS": "a, b",
            "STREAM_CASSANDRA_PORT": "9043",
            "STREAM_DEFAULT_KEYSPACE": "feeds",
            "STREAM_CASSANDRA_CONSISTENCY_LEVEL": "QUORUM",
            "CASSANDRA_DRIVER_KWARGS": '{"protocol_version": 5}',
            "STREAM_METRICS_OPTIONS": '{"prefix": "x"}',
        }
    )
    assert settings.redis_server_url() == "redis://cache:6380/2"
    assert settings.redis_server_url("other") == "redis://b:1/0"
    assert settings.redis_server_url("third") == "unix:///tmp/r.sock"
    assert settings.cassandra_hosts == ("a", "b")
    assert settings.cassandra_port == 9043
    assert settings.cassandra_keyspace == "feeds"
    assert settings.cassandra_consistency == "QUORUM"
    assert settings.cassandra_driver_kwargs == {"protocol_version": 5}
    assert settings.metrics_options == {"prefix": "x"}
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ConfigurationError, match="missing"):
        settings.redis_server_url("missing")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASSANDRA_DRIVER_KWARGS": "{nope"}, "CASSANDRA_DRIVER_KWARGS"),
        ({"STREAM_METRICS_OPTIONS": "[1]"}, "STREAM_METRICS_OPTIONS"),
        ({"STREAM_REDIS_SERVERS": "justaname"}, "STREAM_REDIS_SERVERS"),
        ({"STREAM_CASSANDRA_PORT": "x"}, "STREAM_CASSANDRA_PORT"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize("module_name", ["aiostream.activity", "aiostream.verbs"])
def test_docstring_examples_run(module_name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name))
    assert result.failed == 0
    assert result.attempted > 0


class CountingMetrics(NoopMetrics):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.published = 0

    def on_activity_published(self) -> None:
        self.published += 1


def test_metrics_from_settings() -> None:
    assert isinstance(Settings().metrics(), NoopMetrics)
    sink = Settings(
        metrics_class="tests.test_package.CountingMetrics", metrics_options={"prefix": "x"}
    ).metrics()
    assert isinstance(sink, CountingMetrics)
    assert sink.prefix == "x"
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        Settings(metrics_class="tests.nowhere.Metrics").metrics()
    with pytest.raises(ConfigurationError, match="does not implement"):
        Settings(metrics_class="builtins.object").metrics()


@pytest.mark.anyio
async def test_manager_reports_to_metrics() -> None:
    from aiostream import Activity, Love, Manager

    class Quiet(Manager):
        def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
            return {"HIGH": [2]}

    sink = CountingMetrics()
    await Quiet(metrics=sink, storage=MemoryStorage()).add_user_activity(1, Activity(1, Love, 1))
    assert sink.published == 1
