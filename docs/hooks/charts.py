"""MkDocs hook: publish the benchmark charts of ``benchmarks/results/`` with the docs.

The charts stay where the benchmarks write them; each build adds them to the site as
``benchmarks/<name>.png``, so the benchmarks page shows the committed results and no
copy can go stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add every chart as if it were ``docs/benchmarks/<name>.png``."""
    for chart in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{chart.name}", abs_src_path=str(chart)))
    return files
