"""What an ``arq`` worker process tells about itself, read from its log."""

from __future__ import annotations

import re
from pathlib import Path


def jobs_completed(log: Path) -> int:
    """The jobs a worker says it completed when it stops (arq's shutdown line).

    Raises:
        ValueError: the log has no such line (the worker did not stop cleanly).
    """
    text = log.read_text()
    found = re.findall(r"(\d+) jobs? complete", text)
    if not found:
        raise ValueError(f"no shutdown line in {log}: {text[-2000:]}")
    return int(found[-1])
