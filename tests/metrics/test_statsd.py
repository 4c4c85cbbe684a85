"""StatsdMetrics: the datagrams a real UDP socket receives."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from aiostream.metrics.statsd import StatsdMetrics
from tests.metrics.conftest import StatsdServer
from tests.metrics.scenario import COUNTS, TIMINGS, run_workload

pytestmark = pytest.mark.anyio

COUNTER_NAMES = {
    "reads": "{feed}.reads",
    "writes": "{feed}.writes",
    "deletes": "{feed}.deletes",
    "fanout": "{feed}.fanout.{operation}",
    "published": "activities.published",
    "removed": "activities.removed",
    "errors": "errors.{where}.{kind}",
    "job_retries": "jobs.{job_name}.retries.{kind}",
}
TIMER_NAMES = {
    "read_latency": "{feed}.read_latency",
    "fanout_latency": "{feed}.fanout_latency",  # Stream Framework's name: no operation
    "storage": "storage.{operation}",
}


async def test_statsd_receives_every_hook(statsd_server: StatsdServer) -> None:
    with StatsdMetrics(host="127.0.0.1", port=statsd_server.port, prefix="stream") as sink:
        await run_workload(sink)
    stats = statsd_server.receive()

    expected_counters: dict[str, float] = defaultdict(float)
    for (concept, labels), value in COUNTS.items():
        expected_counters["stream." + COUNTER_NAMES[concept].format(**dict(labels))] += value
    expected_timers: Counter[str] = Counter()
    for (concept, labels), calls in TIMINGS.items():
        expected_timers["stream." + TIMER_NAMES[concept].format(**dict(labels))] += calls

    counters: dict[str, float] = defaultdict(float)
    timers: Counter[str] = Counter()
    for stat in stats:
        assert stat.type in {"c", "ms"}, stat
        if stat.type == "c":
            counters[stat.name] += stat.value
        else:
            assert 0 <= stat.value < 10_000, stat  # milliseconds
            timers[stat.name] += 1
    assert dict(counters) == dict(expected_counters)
    assert timers == expected_timers
    # spot checks of the literal wire format
    assert "stream.PinFeed.writes:3|c" in statsd_server.datagrams
    assert "stream.activities.published:1|c" in statsd_server.datagrams
    assert "stream.errors.storage.count_timeline.StorageUnavailableError:1|c" in (
        statsd_server.datagrams
    )


async def test_two_values_share_a_datagram(statsd_server: StatsdServer) -> None:
    with StatsdMetrics(host="127.0.0.1", port=statsd_server.port) as sink:
        sink.on_feed_read("PinFeed", 25, 0.0125)
    stats = statsd_server.receive()
    assert len(statsd_server.datagrams) == 1
    assert [(s.name, s.value, s.type) for s in stats] == [
        ("PinFeed.reads", 25, "c"),
        ("PinFeed.read_latency", 12.5, "ms"),
    ]


async def test_names_cannot_break_the_line_format(statsd_server: StatsdServer) -> None:
    class Weird(Exception):
        pass

    with StatsdMetrics(host="127.0.0.1", port=statsd_server.port) as sink:
        sink.on_error("add job:x|y@z\nq", Weird())
        sink.on_job_retry("my job", 1, Weird())
    stats = statsd_server.receive()
    assert [(s.name, s.value, s.type) for s in stats] == [
        ("errors.add_job_x_y_z_q.Weird", 1, "c"),
        ("jobs.my_job.retries.Weird", 1, "c"),
    ]


def test_a_passed_client_is_used_and_left_open(statsd_server: StatsdServer) -> None:
    import statsd

    client = statsd.StatsClient("127.0.0.1", statsd_server.port, prefix="app")
    try:
        sink = StatsdMetrics(client=client)
        sink.on_activity_removed()
        sink.close()
        client.incr("still.open")
        assert [s.name for s in statsd_server.receive()] == [
            "app.activities.removed",
            "app.still.open",
        ]
    finally:
        client.close()
