"""Where read cost grows: read latency against feed length and against page size.

One private Redis, concurrency 1 (latency, not throughput). A flat feed read is
``feed[offset:offset + page]`` with its activities hydrated from the activity storage; a
group read is ``feed[:page]`` of an aggregated feed whose groups hold 5 activities each,
used two ways (``peer_bench``'s *render* and *full*). Feeds are filled once per length,
through the storage, and read ``--calls`` times per point after a warm-up.

    python -m benchmarks.reads_bench [--lengths 100,1000,10000] [--pages 10,25,100,500]

Writes ``benchmarks/results/reads.json`` and the charts ``reads_by_length.png`` and
``reads_by_page.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiostream import Activity, AggregatedFeed, BaseFeed, Love
from aiostream.storage.redis import RedisStorage
from benchmarks import chart
from benchmarks.common import RESULTS, latencies, write_results
from benchmarks.peer.touch import TOUCH
from tests.servers import start_redis

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
LONGEST = 10_000
GROUP_SIZE = 5  # activities per group: five an hour apart, then the next day
DEFAULT_PAGE = 25


class SweepFlat(BaseFeed):
    key_format = "sweep:flat:%(user_id)s"
    max_length = LONGEST


class SweepAggregated(AggregatedFeed):
    key_format = "sweep:aggregated:%(user_id)s"
    max_length = LONGEST


def flat_activities(n: int) -> list[Activity]:
    return [
        Activity(i % 50 + 1, Love, i, time=T0 + dt.timedelta(seconds=i), extra_context={"i": i})
        for i in range(n)
    ]


def grouped_activities(groups: int) -> list[Activity]:
    """``GROUP_SIZE`` activities a day for ``groups`` days: one group per day."""
    return [
        Activity(
            i % 50 + 1,
            Love,
            i,
            time=T0 + dt.timedelta(days=i // GROUP_SIZE, hours=i % GROUP_SIZE),
            extra_context={"i": i},
        )
        for i in range(groups * GROUP_SIZE)
    ]


async def fill(storage: RedisStorage, length: int) -> tuple[BaseFeed, AggregatedFeed]:
    """A flat feed of ``length`` activities and an aggregated feed of ``length`` groups."""
    flat = SweepFlat(length, storage=storage)
    activities = flat_activities(length)
    for i in range(0, length, 1000):
        await flat.add_many(activities[i : i + 1000])
    groups = SweepAggregated(length, storage=storage)
    grouped = grouped_activities(length)
    step = 200 * GROUP_SIZE  # whole days per call
    for i in range(0, len(grouped), step):
        await groups.add_many(grouped[i : i + step])
    assert await flat.count() == length
    assert await groups.count() == length
    return flat, groups


async def timed(read: Callable[[], Any], calls: int) -> dict[str, float]:
    await latencies(read, max(10, calls // 10))
    return await latencies(read, calls)


async def points(
    flat: BaseFeed, groups: AggregatedFeed, length: int, page: int, calls: int
) -> dict[str, dict[str, float]]:
    """Every read of one (length, page) point."""

    async def first() -> None:
        assert len(await flat[:page]) == min(page, length)

    async def deepest() -> None:
        assert len(await flat[length - page : length]) == page

    def group_read(touch: str) -> Callable[[], Any]:
        use = TOUCH[touch]

        async def read() -> None:
            assert use(await groups[:page]) == min(page, length)

        return read

    measured = {"flat_first_page": await timed(first, calls)}
    if page < length:
        measured["flat_last_page"] = await timed(deepest, calls)
    for touch in ("render", "full"):
        measured[f"groups_{touch}"] = await timed(group_read(touch), calls)
    return measured


def chart_of(runs: list[dict[str, Any]], x: str, path: Path, title: str, x_label: str) -> None:
    colors = {
        "flat_first_page": chart.BLUE,
        "flat_last_page": chart.ORANGE,
        "groups_render": chart.GREEN,
        "groups_full": chart.RED,
    }
    labels = {
        "flat_first_page": "flat, first page",
        "flat_last_page": "flat, last page",
        "groups_render": "groups, render",
        "groups_full": "groups, full",
    }
    series = [
        chart.Series(
            labels[name],
            [(r[x], r["reads"][name]["p50_ms"]) for r in runs if name in r["reads"]],
            color,
        )
        for name, color in colors.items()
    ]
    chart.line_chart(
        path,
        [s for s in series if len(s.points) > 1],
        title=title,
        x_label=x_label,
        y_label="p50 ms",
    )


async def main(lengths: list[int], pages: list[int], calls: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="aiostream-bench-"))
    server = start_redis(workdir / "standalone")
    by_length: list[dict[str, Any]] = []
    by_page: list[dict[str, Any]] = []
    page_length = 1000 if 1000 in lengths else max(lengths)
    try:
        async with RedisStorage.from_url(server.url, prefix="sweep:") as storage:
            for length in lengths:
                flat, groups = await fill(storage, length)
                reads = await points(flat, groups, length, DEFAULT_PAGE, calls)
                by_length.append({"length": length, "page": DEFAULT_PAGE, "reads": reads})
                print(f"length {length:,}: {report(reads)}", flush=True)
                if length != page_length:
                    continue
                for page in pages:
                    reads = await points(flat, groups, length, page, calls)
                    by_page.append({"length": length, "page": page, "reads": reads})
                    print(f"length {length:,}, page {page}: {report(reads)}", flush=True)
    finally:
        server.stop()
    if len(by_length) > 1:
        chart_of(
            by_length,
            "length",
            RESULTS / "reads_by_length.png",
            f"Read latency by feed length (page {DEFAULT_PAGE}, one Redis)",
            "entries (flat) / groups of 5 (aggregated)",
        )
    if len(by_page) > 1:
        chart_of(
            by_page,
            "page",
            RESULTS / "reads_by_page.png",
            f"Read latency by page size (feeds of {page_length:,}, one Redis)",
            "page size (entries / groups)",
        )
    write_results(
        "reads",
        {
            "by_length": by_length,
            "by_page": by_page,
            "setup": {"calls": calls, "concurrency": 1, "group_size": GROUP_SIZE},
        },
    )


def report(reads: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{name} p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms" for name, r in reads.items()
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,1000,10000")
    parser.add_argument("--pages", default="10,25,100,500")
    parser.add_argument("--calls", type=int, default=300)
    options = parser.parse_args()
    asyncio.run(
        main(
            [int(n) for n in options.lengths.split(",")],
            [int(n) for n in options.pages.split(",")],
            options.calls,
        )
    )
