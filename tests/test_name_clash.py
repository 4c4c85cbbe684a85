"""``import aiostream`` refuses to run beside the unrelated PyPI package ``aiostream``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_aiostream(extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    paths = [str(ROOT), *([str(extra_path)] if extra_path else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(
        [sys.executable, "-c", "import aiostream"], capture_output=True, text=True, env=env
    )


def test_import_fails_with_the_fix_when_the_foreign_distribution_is_installed(
    tmp_path: Path,
) -> None:
    # What pip leaves behind when it installs that package: its metadata directory.
    info = tmp_path / "aiostream-0.6.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aiostream\nVersion: 0.6.4\n")
    result = import_aiostream(tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: the PyPI package 'aiostream' 0.6.4 (async iteration operators, "
        "unrelated to this library) is installed beside 'aiostream-feeds'. Both use the "
        "import name 'aiostream', so installing one overwrote files of the other. Fix: "
        "pip uninstall -y aiostream aiostream-feeds && pip install aiostream-feeds "
        "(and use that other package in another virtualenv)."
    )


def test_import_works_without_it() -> None:
    result = import_aiostream()
    assert (result.returncode, result.stderr) == (0, "")
