"""Helpers shared by the benchmark modules: timing, percentiles, result files."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(samples: list[float], seconds: float) -> dict[str, float]:
    """Calls per second over ``seconds`` of wall time, and p50 / p99 / mean of ``samples`` in ms.

    ``samples`` are the durations of single calls, in seconds.
    """
    return {
        "calls": len(samples),
        "per_second": len(samples) / seconds,
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


def median_of(summaries: list[dict[str, float]]) -> dict[str, float]:
    """Each statistic's median over repeated rounds of :func:`summarize` results."""
    return {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}


async def latencies(
    call: Callable[[], Awaitable[Any]], n: int, *, concurrency: int = 1
) -> dict[str, float]:
    """Run ``call`` ``n`` times from ``concurrency`` tasks at once; see :func:`summarize`.

    Each task makes its calls one after the other, so at most ``concurrency`` are in
    flight; the rate is over the wall time of the whole run.
    """
    samples: list[float] = []

    async def worker(calls: int) -> None:
        for _ in range(calls):
            t = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return summarize(samples, time.perf_counter() - started)


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` (plus machine facts) to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), **results}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))
    return path


def machine() -> dict[str, Any]:
    """Facts about where the numbers were taken (saved beside them)."""
    return {"python": platform.python_version(), "cpus": os.cpu_count() or 1}
