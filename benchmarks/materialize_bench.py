"""Selective materialization on Stream-Framework-Bench's social model: one simulated day.

Users are ranked; the rank decides posts and reads per day (top 5%: 25 / 50, next 10%:
10 / 20, next 10%: 5 / 10, next 25%: 1 / 5, bottom 50%: 0 / 1) and followers (top 2%:
max(10% of the network, 1,000), next 13%: min(5%, 1,000), next 10%: 100, next 25%: 50,
bottom 50%: 5). 10% of the users are active on the day: they post and read; the others
read nothing (and read last before the day began, when they were active). The follow
graph is implicit (each producer's followers are an arithmetic progression modulo the
network size), so a million users fit in memory.

For each network size and policy (push-all; :class:`SelectivePolicy` with
``inactive_after`` one day and ``pull_threshold`` 1,000, read with Redis's one-step
merged read and, side by side, with the producers' pages merged by the Manager as on
other storages; :class:`RatePolicy`) it
reports feed writes (entries written into flat feeds), Redis memory (``used_memory``
after the day less before), read latency p50 / p99 of ``feed[:25]`` through the Manager
for readers drawn by their read rates at random moments among the day's posts (the reads
that found their feed stale and rebuilt it are counted apart, with their copies among the
feed writes), the same reads once more at the end of the day (a refresh: the process's
caches warm), and fanout seconds per post (p50 / p99). Where a
run would write too much for this machine (push-all beyond 10,000 users, the rate
policy beyond 10,000), writes and memory are computed from the model (marked
``"computed"``); a 1,000,000-user day runs a sample of its posts (``post_sample``) and
scales its writes. Finally one post by a user with 1,000,000 followers, pulled.

    python -m benchmarks materialize   (or: python -m benchmarks.materialize_bench --users 10000)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import tempfile
import time
from math import gcd
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aiostream import Activity, BaseFeed, FanoutPriority, Love, Manager, UserBaseFeed
from aiostream.materialize import MaterializationPolicy, RatePolicy, SelectivePolicy
from aiostream.storage.redis import RedisStorage
from benchmarks.common import RESULTS, percentile, write_results
from tests.servers import start_redis

BANDS = [(0.05, 25, 50), (0.15, 10, 20), (0.25, 5, 10), (0.50, 1, 5), (1.0, 0, 1)]
ACTIVE = 0.10
DAY = 86400.0
READS = 1000  # sampled reads per run
MAX_RUN_WRITES = 20_000_000  # beyond this, writes and memory are computed


def band(rank: int, n: int) -> tuple[int, int]:
    """(posts, reads) a day of the user of ``rank``."""
    share = rank / n
    return next((posts, reads) for top, posts, reads in BANDS if share < top)


def follower_count(rank: int, n: int) -> int:
    share = rank / n
    if share < 0.02:
        count = max(n // 10, 1000)
    elif share < 0.15:
        count = min(n // 20, 1000)
    elif share < 0.25:
        count = 100
    elif share < 0.50:
        count = 50
    else:
        count = 5
    return min(count, n - 1)


class Network:
    """The implicit follow graph: followers of ``p`` are ``start[p] + i * STEP`` (mod n)
    for ``i < count[p]`` (``p`` itself left out)."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.n = n
        self.step = next(s for s in range(1_000_003, 10**8, 2) if gcd(s, n) == 1)
        self.inverse = pow(self.step, -1, n)
        rng = np.random.default_rng(seed)
        self.start = rng.integers(0, n, n, dtype=np.int64)
        self.count = np.array([follower_count(r, n) for r in range(n)], dtype=np.int64)

    def followers(self, p: int) -> list[int]:
        ids = (self.start[p] + np.arange(self.count[p], dtype=np.int64) * self.step) % self.n
        return [int(u) for u in ids if u != p]

    def following(self, f: int) -> list[int]:
        offsets = ((f - self.start) % self.n) * self.inverse % self.n
        found = np.nonzero(offsets < self.count)[0]
        return [int(p) for p in found if p != f]


class SimFlat(BaseFeed):
    key_format = "sim:flat:%(user_id)s"


class SimUser(UserBaseFeed):
    key_format = "sim:user:%(user_id)s"


class SimManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": SimFlat}
    user_feed_class = SimUser
    fanout_chunk_size = 1000
    network: Network
    # The application's lookup, cached as tuples of ids: the garbage collector stops
    # tracking those, where lists of a thousand readers' thousands of ids would lengthen
    # every full collection (which the read timings would then measure).
    followings: dict[int, tuple[int, ...]]
    clock: float

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: self.network.followers(user_id)}

    def get_user_follower_count(self, user_id: int) -> int:
        return int(self.network.count[user_id]) - 1

    def get_user_following_ids(self, user_id: int) -> tuple[int, ...]:
        if user_id not in self.followings:  # the application's lookup, not timed
            self.followings[user_id] = tuple(self.network.following(user_id))
        return self.followings[user_id]

    def now(self) -> float:
        return self.clock


class CountingStorage(RedisStorage):
    """Counts the entries written into flat feed timelines."""

    written = 0

    async def add_to_timelines(self, keys: Any, entries: Any, **kwargs: Any) -> None:
        self.written += len(keys) * len(entries)
        await super().add_to_timelines(keys, entries, **kwargs)


def day_plan(network: Network, seed: int = 11) -> tuple[list[int], list[int], list[int]]:
    """The day's active users, its posts (authors, in order) and its readers (drawn)."""
    rng = random.Random(seed)
    n = network.n
    active = rng.sample(range(n), max(1, int(n * ACTIVE)))
    posts = [u for u in active for _ in range(band(u, n)[0])]
    rng.shuffle(posts)
    weights = [band(u, n)[1] for u in active]
    readers = rng.choices(active, weights=weights, k=READS)
    return active, posts, readers


def model_writes(network: Network, posts: list[int]) -> int:
    return sum(int(network.count[p]) - 1 for p in posts)


def model_kept_entries(network: Network, posts: list[int], max_length: int = 100) -> int:
    """Entries push-all's flat feeds keep at the end of the day: each feed at most
    ``max_length`` (trimmed), of what its followees posted."""
    received = np.zeros(network.n, dtype=np.int64)
    per_author: dict[int, int] = {}
    for author in posts:
        per_author[author] = per_author.get(author, 0) + 1
    for author, count in per_author.items():
        k = int(network.count[author])
        ids = (network.start[author] + np.arange(k, dtype=np.int64) * network.step) % network.n
        received[ids[ids != author]] += count
    return int(np.minimum(received, max_length).sum())


async def used_memory(storage: RedisStorage) -> int:
    info = await storage.client.info("memory")
    return int(info["used_memory"])


class PagesStorage(CountingStorage):
    """Declines the one-step merged read: the Manager reads the producers' pages itself,
    as it does on a cluster, Cassandra or memory (the side-by-side row)."""

    async def read_merged(self, *args: Any, **kwargs: Any) -> None:
        return None


async def run_day(
    url: str,
    network: Network,
    policy: MaterializationPolicy | None,
    post_sample: float,
    storage_class: type[CountingStorage] = CountingStorage,
    pages: list[list[int]] | None = None,
) -> dict[str, Any]:
    """One simulated day (see the module docstring); with ``pages``, the object ids
    (the posts' indexes) of every page read are appended to it, in order (the suite
    compares them across policies)."""
    active, posts, readers = day_plan(network)
    if post_sample < 1.0:
        posts = random.Random(3).sample(posts, int(len(posts) * post_sample))
    async with storage_class.from_url(url, prefix="sim:") as storage:
        await storage.client.flushdb()  # our own private server
        manager = SimManager(storage=storage, policy=policy)
        manager.network, manager.followings = network, {}
        manager.clock = time.time()
        # The day before left its state: the active users read then (the rest did not),
        # and producers with pull_threshold followers were pulled.
        await storage.store_states({f"read:{u}": repr(manager.clock - 3600) for u in active})
        threshold = getattr(policy, "pull_threshold", None)
        if threshold is not None:
            pulled = np.nonzero(network.count - 1 >= threshold)[0]
            since = repr(manager.clock - DAY)
            for start in range(0, len(pulled), 10_000):
                chunk = pulled[start : start + 10_000]
                await storage.store_states({f"pulled:{int(p)}": since for p in chunk})
        for reader in set(readers):
            manager.get_user_following_ids(reader)  # the application's cache, warmed
        before = await used_memory(storage)
        start_clock = manager.clock
        # Posts evenly through the day, reads at random moments among them.
        events = [((i + 1) * DAY / max(len(posts), 1), 0, a) for i, a in enumerate(posts)]
        moments = random.Random(5)
        events += [(moments.uniform(0, DAY), 1, r) for r in readers]
        events.sort()
        fanout: list[float] = []
        reads: list[float] = []
        rebuilds: list[float] = []
        rebuild_writes = 0
        for index, (moment, is_read, user) in enumerate(events):
            manager.clock = start_clock + moment
            if is_read:
                stale = f"stale:flat:{user}"
                rebuilt = stale in await storage.load_states([stale])  # (not timed)
                written = storage.written
                started = time.perf_counter()
                page = await manager.get_feeds(user)["flat"][:25]
                took = time.perf_counter() - started
                if pages is not None:
                    pages.append([a.object_id for a in page])
                (rebuilds if rebuilt else reads).append(took)
                rebuild_writes += storage.written - written  # rebuild copies
                continue
            when = dt.datetime.fromtimestamp(manager.clock, dt.UTC)
            activity = Activity(user, Love, index, time=when)
            started = time.perf_counter()
            await manager.add_user_activity(user, activity)
            fanout.append(time.perf_counter() - started)
        after = await used_memory(storage)
        written = storage.written - len(posts)  # less the authors' own user feeds
        # The same readers again at the end of the day: a refresh, this process warm.
        rereads: list[float] = []
        for reader in readers:
            started = time.perf_counter()
            page = await manager.get_feeds(reader)["flat"][:25]
            rereads.append(time.perf_counter() - started)
            if pages is not None:
                pages.append([a.object_id for a in page])
    scale = 1 / post_sample
    return {
        "posts": len(posts),
        # Rebuilds copy into feeds too; the reads are not sampled, so they are not scaled.
        "feed_writes": int((written - rebuild_writes) * scale) + rebuild_writes,
        "redis_bytes": int((after - before) * scale) if post_sample == 1.0 else after - before,
        "read_p50_ms": percentile(reads, 0.5) * 1000,
        "read_p99_ms": percentile(reads, 0.99) * 1000,
        "reread_p50_ms": percentile(rereads, 0.5) * 1000,
        "reread_p99_ms": percentile(rereads, 0.99) * 1000,
        "rebuild_reads": len(rebuilds),
        "rebuild_p50_ms": percentile(rebuilds, 0.5) * 1000 if rebuilds else None,
        "rebuild_writes": rebuild_writes,
        "fanout_p50_s": percentile(fanout, 0.5),
        "fanout_p99_s": percentile(fanout, 0.99),
        "post_sample": post_sample,
    }


async def celebrity(url: str) -> dict[str, Any]:
    """One post by a user with 1,000,000 followers, pulled: the time of the call."""
    followers = list(range(1, 1_000_001))

    class Celebrity(SimManager):
        def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
            return {FanoutPriority.HIGH: followers}

        def get_user_follower_count(self, user_id: int) -> int:
            return len(followers)

    async with RedisStorage.from_url(url, prefix="celeb:") as storage:
        manager = Celebrity(storage=storage, policy=SelectivePolicy(pull_threshold=1000))
        manager.clock = time.time()
        warm = Activity(0, Love, 1, time=dt.datetime.fromtimestamp(manager.clock, dt.UTC))
        await manager.add_user_activity(0, warm)
        manager.clock += 120
        timings = []
        for n in range(5):
            manager.clock += 1
            post = Activity(0, Love, 2 + n, time=dt.datetime.fromtimestamp(manager.clock, dt.UTC))
            started = time.perf_counter()
            await manager.add_user_activity(0, post)
            timings.append(time.perf_counter() - started)
    return {"followers": len(followers), "post_ms": sorted(timings)[len(timings) // 2] * 1000}


def selective() -> SelectivePolicy:
    return SelectivePolicy(inactive_after=dt.timedelta(days=1), pull_threshold=1000)


POLICIES: dict[str, Any] = {
    "push-all": lambda: None,
    "selective": selective,
    "selective, pages merged by the Manager": selective,
    "rate": lambda: RatePolicy(cost_ratio=1.0, inactive_after=dt.timedelta(days=1)),
}


async def run(url: str, sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {"sizes": {}}
    for n in sizes:
        network = Network(n)
        _, posts, _ = day_plan(network)
        push_writes = model_writes(network, posts)
        rows: dict[str, Any] = {}
        for name, make in POLICIES.items():
            sample = 1.0 if n < 1_000_000 else 0.05
            if name == "push-all" and push_writes * sample > MAX_RUN_WRITES:
                rows[name] = {"feed_writes": push_writes, "computed": True}
                continue
            if name == "rate" and n > 10_000:
                # Every post checks every follower's rate: too many reads for this machine.
                rows[name] = {"not_run": "the per-follower rate checks exceed this machine"}
                continue
            print(f"{n} users, {name}...", flush=True)
            storage_class = PagesStorage if "pages" in name else CountingStorage
            rows[name] = await run_day(url, network, make(), sample, storage_class)
        kept = model_kept_entries(network, posts)
        measured = rows["push-all"].get("redis_bytes")
        results["sizes"][str(n)] = {
            "push_all_model_writes": push_writes,
            "push_all_model_kept_entries": kept,
            "rows": rows,
        }
        if measured:
            # Push-all's feeds trim one write in a hundred: they hold about what was
            # written, so this is the cost of an entry held.
            results["bytes_per_held_entry"] = measured / rows["push-all"]["feed_writes"]
    per_entry = results.get("bytes_per_held_entry")
    for size in results["sizes"].values():
        push = size["rows"]["push-all"]
        if push.get("computed") and per_entry:
            # Feeds trimmed to max_length at the bytes an entry measured above: a low
            # estimate (they trim only now and then).
            push["redis_bytes"] = int(size["push_all_model_kept_entries"] * per_entry)
    results["celebrity"] = await celebrity(url)
    return results


def markdown(results: dict[str, Any]) -> str:
    """The results as the table the docs quote."""
    lines = [
        "# Selective materialization: one simulated day",
        "",
        "| users | policy | feed writes | Redis bytes | read p50 / p99 ms "
        "| re-read p50 / p99 ms | reads that rebuilt: count, p50 ms | fanout p99 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, size in results["sizes"].items():
        for name, row in size["rows"].items():
            if "not_run" in row:
                lines.append(f"| {int(n):,} | {name} | not run: {row['not_run']} | | | | | |")
                continue
            how = " (computed)" if row.get("computed") else ""
            sample = row.get("post_sample", 1.0)
            scaled = f" ({sample:.0%} of the posts, scaled)" if sample < 1 else ""
            reads = (
                f"{row['read_p50_ms']:.1f} / {row['read_p99_ms']:.1f}"
                if "read_p50_ms" in row
                else ""
            )
            fanout = f"{row['fanout_p99_s']:.3f}" if "fanout_p99_s" in row else ""
            rereads = (
                f"{row['reread_p50_ms']:.1f} / {row['reread_p99_ms']:.1f}"
                if "reread_p50_ms" in row
                else ""
            )
            rebuilt = ""
            if row.get("rebuild_reads"):
                rebuilt = f"{row['rebuild_reads']:,}, {row['rebuild_p50_ms']:.1f}"
            elif "rebuild_reads" in row:
                rebuilt = "0"
            lines.append(
                f"| {int(n):,} | {name} | {row['feed_writes']:,}{how}{scaled} | "
                f"{row.get('redis_bytes', 0):,}{how} | {reads} | {rereads} | {rebuilt} | {fanout} |"
            )
    celebrity = results["celebrity"]
    lines += [
        "",
        f"A post by a user with {celebrity['followers']:,} followers, pulled: "
        f"{celebrity['post_ms']:.1f} ms.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.users.split(",")]
    with tempfile.TemporaryDirectory() as workdir, start_redis(Path(workdir)) as server:
        results = asyncio.run(run(server.url, sizes))
    write_results("materialize", results)
    (RESULTS / "materialize.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
