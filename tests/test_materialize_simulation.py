"""The materialization benchmark's simulated day, small, in the suite: on its own Redis,
every page a reader reads during the day and at its end is the same under push-all, the
selective policy (read in one step, and with the pages merged by the Manager) and the
rate policy, while the policies write far fewer feed entries.

The network is 2,000 users of Stream-Framework-Bench's social model; at that size the
top producers have 999 followers, so the selective policy pulls from 500.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from aiostream.materialize import MaterializationPolicy, RatePolicy, SelectivePolicy
from benchmarks.materialize_bench import (
    CountingStorage,
    Network,
    PagesStorage,
    day_plan,
    run_day,
)
from tests.servers import start_redis

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

USERS = 2000
DAY = dt.timedelta(days=1)


async def simulated(
    url: str,
    network: Network,
    policy: MaterializationPolicy | None,
    storage_class: type[CountingStorage] = CountingStorage,
) -> tuple[dict[str, Any], list[list[int]]]:
    pages: list[list[int]] = []
    result = await run_day(url, network, policy, 1.0, storage_class, pages)
    return result, pages


async def test_a_simulated_day_reads_the_pages_of_push_all_and_writes_less(
    tmp_path: Path,
) -> None:
    network = Network(USERS)
    with start_redis(tmp_path) as server:
        push, pushed_pages = await simulated(server.url, network, None)
        selective = SelectivePolicy(inactive_after=DAY, pull_threshold=500)
        runs = {
            "selective": await simulated(server.url, network, selective),
            "pages merged by the Manager": await simulated(
                server.url, network, selective, PagesStorage
            ),
            "rate": await simulated(server.url, network, RatePolicy(1.0, inactive_after=DAY)),
        }
    _, posts, readers = day_plan(network)
    assert push["feed_writes"] == sum(len(network.followers(p)) for p in posts)
    assert len(pushed_pages) == 2 * len(readers)
    assert sum(map(len, pushed_pages)) > 10 * len(pushed_pages)  # mostly full pages
    for name, (result, pages) in runs.items():
        assert pages == pushed_pages, name
        assert result["feed_writes"] * 5 < push["feed_writes"], name
        assert result["rebuild_reads"] > 0, name  # some readers came back stale
    # The selective policy pulled the top producers (their posts skipped followers).
    assert runs["selective"][0]["feed_writes"] < push["feed_writes"] - posts_of_top(network)


def posts_of_top(network: Network) -> int:
    """Feed writes push-all spends on the posts of producers with 500 followers or more."""
    _, posts, _ = day_plan(network)
    return sum(int(network.count[p]) - 1 for p in posts if network.count[p] - 1 >= 500)
