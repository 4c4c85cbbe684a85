"""Helpers shared by the benchmark modules: timing, percentiles, result files."""

from __future__ import annotations

import json
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


async def latencies(call: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    """Run ``call`` ``n`` times one after the other; p50 / p99 in ms and calls per second."""
    samples = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    return {
        "calls": n,
        "per_second": n / total,
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` (plus machine facts) to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": {"python": platform.python_version(), "cpus": _cpus()}, **results}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 1
