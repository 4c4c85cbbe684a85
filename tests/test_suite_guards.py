"""The suite cannot silently lose a test group: with AIOSTREAM_REQUIRE_ARQ set (the arq
stack of ``nox -s tests`` sets it), a missing arq fails the run instead of leaving tests/arq
uncollected; without it (the newest stack, which deselects them) the run goes on. Under
CI=true a whole-suite run fails when any test group collects nothing, unless the group
is arq and the run says it has no arq (AIOSTREAM_WITHOUT_ARQ)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# pytest in a child process that cannot find arq, as in an environment without it.
WITHOUT_ARQ = """
import importlib.util, sys
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name == "arq" else find_spec(name, *a, **k)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


FLAGS = ("AIOSTREAM_REQUIRE_ARQ", "AIOSTREAM_WITHOUT_ARQ", "CI")


def collect_without_arq(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in FLAGS}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_ARQ, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # collects the whole suite, twice
def test_a_missing_arq_fails_the_run_when_the_arq_tests_are_required() -> None:
    required = collect_without_arq(AIOSTREAM_REQUIRE_ARQ="1")
    assert required.returncode == 4, required.stdout + required.stderr  # a usage error
    assert "AIOSTREAM_REQUIRE_ARQ is set but arq is not installed" in required.stderr

    optional = collect_without_arq()
    assert optional.returncode == 0, optional.stdout + optional.stderr
    assert "tests/arq/" not in optional.stdout and "tests/redis/" in optional.stdout


@pytest.mark.slow  # collects the whole suite, twice
def test_under_ci_every_test_group_must_be_collected() -> None:
    lost = collect_without_arq(CI="true")
    assert lost.returncode == 4, lost.stdout + lost.stderr
    assert "test group(s) tests/arq collected no test" in lost.stderr

    declared = collect_without_arq(CI="true", AIOSTREAM_WITHOUT_ARQ="1")
    assert declared.returncode == 0, declared.stdout + declared.stderr
    assert "tests/arq/" not in declared.stdout and "tests/cassandra/" in declared.stdout
