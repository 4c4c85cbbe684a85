"""Fanout through arq: one activity to 100,000 followers with 1, 2 and 4 worker processes,
the queue on a Redis of its own (``--queue-redis shared``: on the feed Redis).

Starts a private redis-server, then for each chunk size (100, 1,000, 10,000 followers per
job) and each number of worker processes (1, 2, 4; ``python -m arq
benchmarks.arq_app.WorkerSettings``, started before the clock starts):

* **end to end**: from ``Manager.add_user_activity`` (store, enqueue every chunk) until
  arq's queue is empty (a job leaves it only when it finished), as feed writes/s, with
  the jobs each worker completed (from its shutdown line) and the share of the time the
  feed Redis was busy (its CPU seconds over the wall-clock seconds);
* **enqueue cost**: ``add_user_activity`` with no worker running, per chunk.

Results go to ``benchmarks/results/arq.json``.
With ``--kinds three`` the Manager writes a flat, an aggregated and a notification feed
per follower, and writes/s count every feed written.

``python -m benchmarks.arq_bench [--followers N] [--chunks 100,1000,10000] [--workers 1,2,4]
[--kinds flat|three] [--queue-redis separate|shared]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aiostream import Activity
from aiostream.progress import Progress
from aiostream.settings import Settings
from aiostream.storage.registry import close_default_storages, configure
from aiostream.tasks import HIGH_QUEUE, ArqDispatcher
from benchmarks.arq_app import BenchFeed, BenchManager, PinVerb, feed_classes
from benchmarks.common import write_results
from tests.servers import start_redis
from tests.servers.arq_workers import jobs_completed

ROOT = Path(__file__).resolve().parents[1]


def start_workers(
    url: str, queue_url: str, count: int, logs: Path
) -> list[subprocess.Popen[bytes]]:
    """``count`` worker processes, each logging to ``logs / worker-<n>.log``."""
    env = {
        **os.environ,
        "STREAM_REDIS_URL": url,
        "STREAM_ARQ_REDIS_URL": queue_url,
        "PYTHONPATH": str(ROOT),
    }
    logs.mkdir(parents=True, exist_ok=True)
    workers = []
    for n in range(count):
        with (logs / f"worker-{n}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "arq", "benchmarks.arq_app.WorkerSettings"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]], logs: Path) -> list[int]:
    """Stop the workers (SIGTERM: arq finishes and logs its counts); the jobs each
    completed."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=30)
    return [jobs_completed(logs / f"worker-{n}.log") for n in range(len(workers))]


async def wait_until_idle(client: Redis, jobs: int) -> None:
    """Until the queue is empty: arq removes a job from it when the job has finished.
    A progress bar shows the jobs done on a terminal."""
    with Progress(jobs, "arq jobs") as bar:
        async with asyncio.timeout(600):
            while left := await client.zcard(HIGH_QUEUE):
                bar.advance(max(0, jobs - left - bar.done))
                await asyncio.sleep(0.002)
        bar.advance(jobs - bar.done)


async def server_cpu(client: Redis) -> float:
    """CPU seconds the Redis server behind ``client`` has used so far."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def publish(dispatcher: ArqDispatcher, n: int) -> float:
    """Seconds ``add_user_activity`` of a fresh activity took (store + enqueue)."""
    activity = Activity(1, PinVerb, n, time=dt.datetime.now(dt.UTC))
    started = time.perf_counter()
    await BenchManager(dispatcher=dispatcher).add_user_activity(1, activity)
    return time.perf_counter() - started


async def run(
    url: str,
    queue_url: str,
    followers: int,
    chunks: list[int],
    workers: list[int],
    kinds: str,
    job_size: int | None,
    logs: Path,
) -> dict[str, Any]:
    configure(Settings(redis_url=url))
    BenchManager.feed_classes = feed_classes(kinds)
    writes = followers * len(BenchManager.feed_classes)
    BenchManager.followers = list(range(10, 10 + followers))
    client = Redis.from_url(queue_url)
    feed_redis = Redis.from_url(url)
    results: dict[str, Any] = {
        "queue_redis": "separate" if queue_url != url else "the feed Redis",
        "followers": followers,
        "feed_classes": len(BenchManager.feed_classes),
        "job_size": job_size,
        "end_to_end": [],
        "enqueue": [],
    }
    serial = 0
    try:
        async with await ArqDispatcher.connect(queue_url, job_size=job_size) as dispatcher:
            for chunk in chunks:
                BenchManager.fanout_chunk_size = chunk
                jobs = -(-followers // chunk)
                serial += 1
                seconds = await publish(dispatcher, serial)
                results["enqueue"].append(
                    {"chunk_size": chunk, "jobs": jobs, "ms_per_job": seconds * 1000 / jobs}
                )
                print(f"enqueue chunk={chunk}: {seconds * 1000 / jobs:.3f} ms per job", flush=True)
                await client.delete(HIGH_QUEUE)
                await client.delete(*[k async for k in client.scan_iter("arq:job:*")] or ["-"])
                for count in workers:
                    run_logs = logs / f"chunk-{chunk}-workers-{count}"
                    procs = start_workers(url, queue_url, count, run_logs)
                    try:
                        await asyncio.sleep(3)  # imports and first poll
                        serial += 1
                        cpu = await server_cpu(feed_redis)
                        started = time.perf_counter()
                        enqueue = await publish(dispatcher, serial)
                        await wait_until_idle(client, jobs)
                        total = time.perf_counter() - started
                        cpu = await server_cpu(feed_redis) - cpu
                    finally:
                        per_worker = stop_workers(procs, run_logs)
                    last = await BenchFeed(10 + followers - 1)[:1]
                    if [a.object_id for a in last] != [serial]:
                        raise RuntimeError(f"the last follower lacks activity {serial}")
                    row = {
                        "chunk_size": chunk,
                        "workers": count,
                        "seconds": total,
                        "enqueue_seconds": enqueue,
                        "writes_per_second": writes / total,
                        "jobs_per_worker": per_worker,
                        "feed_redis_cpu_share": cpu / total,
                    }
                    results["end_to_end"].append(row)
                    print(
                        f"chunk={chunk} workers={count}: {writes / total:,.0f} feed writes/s, "
                        f"last feed after {total:.2f} s, jobs per worker {per_worker}, "
                        f"feed Redis busy {cpu / total:.0%} of the time",
                        flush=True,
                    )
    finally:
        await client.aclose()
        await feed_redis.aclose()
        await close_default_storages()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="aiostream fanout through arq workers")
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--chunks", default="100,1000,10000")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument(
        "--queue-redis",
        choices=["separate", "shared"],
        default="separate",
        help="the queue on its own Redis (as production runs it) or on the feed Redis",
    )
    parser.add_argument("--kinds", choices=["flat", "three"], default="flat")
    parser.add_argument(
        "--job-size", type=int, default=1000, help="ArqDispatcher job_size (0: no joining)"
    )
    args = parser.parse_args()
    os.environ["BENCH_FEED_KINDS"] = args.kinds  # the workers' Manager too
    chunks = [int(c) for c in args.chunks.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as workdir, start_redis(Path(workdir)) as server:
        job_size = args.job_size or None
        with contextlib.ExitStack() as stack:
            queue_url = server.url
            if args.queue_redis == "separate":
                queue = stack.enter_context(start_redis(Path(workdir) / "queue"))
                queue_url = queue.url
            results = asyncio.run(
                run(
                    server.url,
                    queue_url,
                    args.followers,
                    chunks,
                    workers,
                    args.kinds,
                    job_size,
                    Path(workdir) / "workers",
                )
            )
    write_results("arq" if args.kinds == "flat" else "arq_three_kinds", results)


if __name__ == "__main__":
    main()
