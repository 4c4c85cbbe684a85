"""Redis's one-step merged read (``READ_MERGED``, selective materialization's read of
a follower who pulls many producers): the same pages as reading every feed's page and
merging, from only the feeds that can reach the page, in one script."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import pytest

from aiostream import Activity, Love
from aiostream.ids import DIGEST_BITS
from aiostream.query import Query
from aiostream.storage.base import Entry, MergedPage
from aiostream.storage.redis import RedisStorage
from tests.behaviour.test_materialize import Wide, posted_round_robin, stored

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def kind() -> str:
    return "redis"


async def timelines_read(raw: Any) -> int:
    """Timeline ranges the server has run so far (a script's calls count too)."""
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_zrevrangebylex", {}).get("calls", 0))


def merged_reads(storage: RedisStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ``storage``'s merged reads from now on: the sources each one names."""
    calls: list[int] = []
    read_merged = storage.read_merged

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return await read_merged(*args, **kwargs)

    monkeypatch.setattr(storage, "read_merged", counted)
    return calls


async def wide_reader(
    storage: RedisStorage, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[Activity], list[int]]:
    """Reader 100's feed of twelve pulled producers, its whole page newest first, and
    the merged reads counted from now on (any other read of a page fails)."""
    manager = Wide(storage=storage)
    newest_first = await posted_round_robin(manager, rounds=2)

    async def nothing_else(*args: Any) -> Any:
        raise AssertionError("a page was read outside the merged read")

    monkeypatch.setattr(storage, "read_timeline", nothing_else)
    return manager.get_feeds(100)["flat"], newest_first, merged_reads(storage, monkeypatch)


async def test_a_merged_read_reads_only_the_producers_that_reach_its_page(
    storage: RedisStorage, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.joined_reads = 0  # (the next test: a few that joined are read apart)
    feed, newest_first, calls = await wide_reader(storage, monkeypatch)
    # This process knew no producer in the maxima: the first script named none and
    # reported all twelve, which the reader follows, so a second one named them.
    assert await feed[:3] == newest_first[:3]
    assert calls == [0, 12]
    # Known now: one script, which read the reader's own feed and the three producers
    # whose newest posts come first (10, 11, 12), not the others.
    before = await timelines_read(raw)
    assert await feed[:3] == newest_first[:3]
    assert calls == [0, 12, 12]
    assert await timelines_read(raw) - before == 4
    # Deeper pages, filters, and a page longer than everything there is.
    assert await feed[5:30] == newest_first[5:30]
    below = newest_first[4].serialization_id
    assert await feed.filter(activity_id__lt=below)[:4] == newest_first[5:9]
    assert await feed[:100] == newest_first


async def test_a_few_members_that_joined_are_merged_from_the_same_script(
    storage: RedisStorage, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert storage.joined_reads >= 12
    feed, newest_first, calls = await wide_reader(storage, monkeypatch)
    # The twelve that joined came with what each holds for the page: one script.
    before = await timelines_read(raw)
    assert await feed[:3] == newest_first[:3]
    assert calls == [0]
    # The reader's own feed, and each producer's apart: all their maxima are newer than
    # the last entry of the page of the named sources (none here: the own feed's).
    assert await timelines_read(raw) - before == 13
    assert await feed[5:30] == newest_first[5:30]
    assert await feed[:100] == newest_first
    assert calls == [0, 12, 12]


async def stored_feeds(storage: RedisStorage, **feeds: list[Entry]) -> None:
    for key, entries in feeds.items():
        await storage.store_activities(entries)
        await storage.add_to_timelines([key], entries, max_length=None, store=False)


def newest(entries: list[Entry]) -> int:
    """A maximum for a feed of ``entries``: the microsecond of its newest id."""
    return max(i for i, _ in entries) >> DIGEST_BITS


async def test_only_sources_with_a_maximum_count(storage: RedisStorage) -> None:
    entries = [(n << 64, f"payload {n}") for n in range(1, 7)]
    await stored_feeds(storage, own=entries[:2], a=entries[2:4], b=entries[4:])
    await storage.raise_maxima("newest", {"a": newest(entries[2:4])})
    page = await storage.read_merged("own", ["a", "b", "c"], "newest", 10, Query(), 0)
    # b has no maximum: left out; a, named, is not read apart again.
    assert page == MergedPage(entries[3::-1], ["a"], 0, [[]])
    await storage.raise_maxima("newest", {"b": newest(entries[4:])})
    page = await storage.read_merged("own", ["a", "b", "c"], "newest", 3, Query(), 1)
    assert page == MergedPage(entries[:2:-1], ["b"], 1, [[]])
    page = await storage.read_merged("own", ["a", "a"], "newest", 10, Query(), 2)
    assert page == MergedPage(entries[3::-1], [], 2, [])
    ascending = Query().order_by("activity_id")
    assert await storage.read_merged("own", ["a"], "newest", 3, ascending, 2) is None


async def test_members_are_reported_in_the_order_they_joined_the_maxima(
    storage: RedisStorage, raw: Any
) -> None:
    await storage.raise_maxima("newest", {"b": 5, "a": 7})
    await storage.raise_maxima("newest", {"a": 9, "c": 1, "b": 2})  # only c is new
    page = await storage.read_merged("own", [], "newest", 5, Query(), 1)
    assert page == MergedPage([], ["a", "c"], 1, [[], []])
    assert await storage.load_maxima("newest", ["a", "b", "c"]) == {"a": 9, "b": 5, "c": 1}
    # Emptied since (the caller knew three): all members again, from the first.
    await raw.flushdb()
    await storage.raise_maxima("newest", {"d": 3})
    page = await storage.read_merged("own", [], "newest", 5, Query(), 3)
    assert page == MergedPage([], ["d"], 0, [[]])


async def test_members_that_joined_are_read_apart_down_to_the_page_only(
    storage: RedisStorage,
) -> None:
    entries = [(n << 64, f"payload {n}") for n in range(1, 9)]
    # own: 2 and 5; a: 3 and 7; b: 1 (older than the page); c: 6 and 8.
    own, a, b = [entries[1], entries[4]], [entries[2], entries[6]], [entries[0]]
    c = [entries[5], entries[7]]
    await stored_feeds(storage, own=own, a=a, b=b, c=c)
    await storage.raise_maxima("newest", {"a": newest(a), "b": newest(b), "c": newest(c)})
    page = await storage.read_merged("own", ["a"], "newest", 2, Query(), 0)
    # The page of own and a: 7 and 5. b's maximum (1) is older than 5: not read; of c,
    # what is newer than 5.
    assert page == MergedPage([entries[6], entries[4]], ["a", "b", "c"], 0, [[], [], c[::-1]])
    storage.joined_reads = 2  # more joined than that: none read apart
    page = await storage.read_merged("own", ["a"], "newest", 2, Query(), 0)
    assert page == MergedPage([entries[6], entries[4]], ["a", "b", "c"], 0, None)
    page = await storage.read_merged("own", ["a"], "newest", 2, Query(), 1)
    assert page == MergedPage([entries[6], entries[4]], ["b", "c"], 1, [[], c[::-1]])


class Wider(Wide):
    """Reader 100 also follows producer 13."""

    graph: ClassVar[dict[int, list[int]]] = {100: list(range(1, 14))} | {
        p: [] for p in range(1, 14)
    }


@pytest.mark.parametrize(("joined_reads", "scripts"), [(16, 1), (0, 2)])
async def test_a_reader_learns_of_a_producer_pulled_by_another_process(
    storage: RedisStorage, monkeypatch: pytest.MonkeyPatch, joined_reads: int, scripts: int
) -> None:
    """Two Managers (two processes' caches) over one server: producer 13's first post,
    by way of the other, skips the reader; the reader's process, which knew the maxima
    before, hears from its next read that 13 joined them, with 13's entries for the
    page (merged: one script), or without them (it reads again with 13)."""
    first, other = Wider(storage=storage), Wider(storage=storage)
    newest_first = await posted_round_robin(first, rounds=1)
    feed = first.get_feeds(100)["flat"]
    assert await feed[:12] == newest_first[:12]
    other.clock = first.clock + 1
    post = Activity(13, Love, 1300, time=dt.datetime.fromtimestamp(other.clock, dt.UTC))
    await other.add_user_activity(13, post)
    assert post not in await stored(first, 100)
    first.clock = other.clock
    calls = merged_reads(storage, monkeypatch)
    storage.joined_reads = joined_reads
    assert await feed[:2] == [post, newest_first[0]]
    assert len(calls) == scripts
