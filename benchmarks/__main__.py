"""Run every benchmark module (``benchmarks/*_bench.py``) in turn, each in its own process.

``python -m benchmarks`` runs them all; ``python -m benchmarks memory redis`` runs those
named. Each module writes its results under ``benchmarks/results/``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removesuffix("_bench") for p in HERE.glob("*_bench.py"))
    chosen = argv or available
    if not argv and importlib.util.find_spec("arq") is None:
        # arq pins redis-py 5: its benchmark runs in `nox -s benchmarks_arq`.
        chosen = [name for name in chosen if name != "arq"]
        print("arq is not installed: skipping the arq benchmark (nox -s benchmarks_arq)")
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"unknown benchmarks {unknown}; available: {available}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"== benchmark {name} ==", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}_bench"]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
