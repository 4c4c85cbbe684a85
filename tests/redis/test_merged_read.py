"""Redis's one-step merged read (``READ_MERGED``, selective materialization's read of
a follower who pulls many producers): the same pages as reading every feed's page and
merging, from only the feeds that can reach the page, in one script."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream.ids import DIGEST_BITS
from aiostream.query import Query
from aiostream.storage.redis import RedisStorage
from tests.behaviour.test_materialize import Wide, posted_round_robin

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def kind() -> str:
    return "redis"


async def timelines_read(raw: Any) -> int:
    """Timeline ranges the server has run so far (a script's calls count too)."""
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_zrevrangebylex", {}).get("calls", 0))


async def test_a_merged_read_reads_only_the_producers_that_reach_its_page(
    storage: RedisStorage, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = Wide(storage=storage)
    newest_first = await posted_round_robin(manager, rounds=2)
    calls: list[int] = []
    read_merged = storage.read_merged

    async def counted(*args: Any) -> Any:
        calls.append(len(args[1]))
        return await read_merged(*args)

    monkeypatch.setattr(storage, "read_merged", counted)

    async def nothing_else(*args: Any) -> Any:
        raise AssertionError("a page was read outside the merged read")

    monkeypatch.setattr(storage, "read_timeline", nothing_else)
    feed = manager.get_feeds(100)["flat"]
    before = await timelines_read(raw)
    assert await feed[:3] == newest_first[:3]
    # One script, naming all twelve producers; it read the reader's own feed and the
    # three producers whose newest posts come first (10, 11, 12), not the others.
    assert calls == [12]
    assert await timelines_read(raw) - before == 4
    # Deeper pages, filters, and a page longer than everything there is.
    assert await feed[5:30] == newest_first[5:30]
    below = newest_first[4].serialization_id
    assert await feed.filter(activity_id__lt=below)[:4] == newest_first[5:9]
    assert await feed[:100] == newest_first


async def test_only_sources_with_a_maximum_count(storage: RedisStorage) -> None:
    entries = [(n << 64, f"payload {n}") for n in range(1, 7)]
    await storage.store_activities(entries)
    await storage.add_to_timelines(["own"], entries[:2], max_length=None, store=False)
    await storage.add_to_timelines(["a"], entries[2:4], max_length=None, store=False)
    await storage.add_to_timelines(["b"], entries[4:], max_length=None, store=False)
    # a's newest entry, as a maximum: the microsecond of its id; b has none.
    await storage.raise_maxima("newest", {"a": entries[3][0] >> DIGEST_BITS})
    page = await storage.read_merged("own", ["a", "b", "c"], "newest", 10, Query())
    assert page == entries[3::-1]  # b has no maximum: left out
    await storage.raise_maxima("newest", {"b": entries[5][0] >> DIGEST_BITS})
    assert await storage.read_merged("own", ["a", "b", "c"], "newest", 3, Query()) == (
        entries[:2:-1]
    )
    assert await storage.read_merged("own", ["a", "a"], "newest", 10, Query()) == (
        entries[3::-1]
    )
    ascending = Query().order_by("activity_id")
    assert await storage.read_merged("own", ["a"], "newest", 3, ascending) is None


async def test_sources_whose_maxima_are_older_than_many_others_are_looked_up(
    storage: RedisStorage, raw: Any
) -> None:
    """The script scans the set newest maximum first for as many maxima as it has
    sources, then looks the rest up: sources behind hundreds of newer maxima of feeds
    nobody here reads are found, and the scan stops at the page's last entry."""
    entries = [(n << 64, f"payload {n}") for n in range(1, 5)]
    await storage.store_activities(entries)
    await storage.add_to_timelines(["a"], entries[:2], max_length=None, store=False)
    await storage.add_to_timelines(["b"], entries[2:], max_length=None, store=False)
    newest = {"a": entries[1][0] >> DIGEST_BITS, "b": entries[3][0] >> DIGEST_BITS}
    others = {f"other {n}": newest["b"] + 1000 + n for n in range(300)}
    await storage.raise_maxima("newest", newest | others)
    page = await storage.read_merged("own", ["b", "a", "other 7"], "newest", 3, Query())
    assert page == entries[:0:-1]
    # A source among the newest maxima is met by the scan and fills the page; a's
    # maximum is older than the page's last entry, so a is not read.
    await storage.add_to_timelines(["other 299"], entries, max_length=None, store=False)
    before = await timelines_read(raw)
    page = await storage.read_merged("own", ["a", "other 299"], "newest", 2, Query())
    assert page == entries[:1:-1]
    assert await timelines_read(raw) - before == 2  # own, then other 299
