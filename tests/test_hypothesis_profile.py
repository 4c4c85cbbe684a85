"""A failure Hypothesis finds sticks: the property tests keep their failing examples in
a database committed with the suite (tests/hypothesis-examples/), written locally and
only replayed under CI=true, and no profile relies on derandomize (see tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase

from tests.conftest import HYPOTHESIS_EXAMPLES, IN_CI, TESTS

ROOT = TESTS.parent
COMMITTED = DirectoryBasedExampleDatabase(HYPOTHESIS_EXAMPLES)


def test_the_profiles_keep_failures_in_the_committed_database() -> None:
    dev, ci = settings.get_profile("dev"), settings.get_profile("ci")
    assert dev.database == COMMITTED
    assert ci.database == ReadOnlyDatabase(COMMITTED)
    assert not dev.derandomize and not ci.derandomize
    assert ci.print_blob and dev.print_blob


def test_the_profile_of_this_run_reaches_every_property_test(pytestconfig: pytest.Config) -> None:
    chosen = os.environ.get("HYPOTHESIS_PROFILE") or pytestconfig.getoption(
        "hypothesis_profile", None
    )
    if chosen is None:
        assert settings.get_current_profile_name() == ("ci" if IN_CI else "dev")
    database = settings.get_profile(settings.get_current_profile_name()).database
    assert settings().database == database
    # The tests' own settings objects, made when their modules are imported (after the
    # conftest loaded the profile), inherit it.
    from tests.test_properties import SETTINGS

    assert SETTINGS.database == database


def test_the_database_directory_is_committed_not_ignored() -> None:
    assert HYPOTHESIS_EXAMPLES.is_dir()
    assert (HYPOTHESIS_EXAMPLES / "README.md").is_file()
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    entry = HYPOTHESIS_EXAMPLES.relative_to(ROOT) / "0123456789abcdef" / "fedcba9876543210"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", str(entry)], cwd=ROOT, check=False
    )
    assert ignored.returncode == 1, f"{entry} is git-ignored: examples would not be committed"


def test_a_failure_found_is_saved_then_replayed_first_and_ci_never_writes(
    tmp_path: Path,
) -> None:
    """The profiles' behaviour, on a database of this test's own."""
    folder = DirectoryBasedExampleDatabase(tmp_path)
    dev = settings(settings.get_profile("dev"), database=folder)
    ci = settings(settings.get_profile("ci"), database=ReadOnlyDatabase(folder))
    seen: list[int] = []

    def prop(n: int, *, broken: bool) -> None:
        seen.append(n)
        assert not (broken and n > 10)

    def run(profile: settings, *, broken: bool) -> None:
        given(st.integers(0, 1000))(profile(lambda n: prop(n, broken=broken)))()

    def saved() -> list[Path]:
        return sorted(p for p in tmp_path.rglob("*") if p.is_file())

    with pytest.raises(AssertionError):
        run(dev, broken=True)  # found, shrunk to 11, saved
    files = saved()
    assert files

    seen.clear()
    with pytest.raises(AssertionError):
        run(ci, broken=True)
    assert seen[0] == 11  # replayed before anything new is drawn
    seen.clear()
    run(ci, broken=False)
    assert seen[0] == 11
    assert saved() == files  # CI wrote nothing, and dropped nothing

    run(dev, broken=False)  # fixed: a local run drops the examples that pass now
    assert len(saved()) < len(files)
