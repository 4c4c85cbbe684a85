"""Fixtures shared by the whole suite: the backend matrix and the servers behind it.

``storage`` is parametrised over every backend in ``tests/backends``; a test that takes
it (directly or through ``make_feed``) runs once per backend. Servers start lazily, once
per session, on free loopback ports. Under ``CI=true`` a backend whose server cannot
start fails its tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase

from aiostream.storage.base import FeedStorage
from tests.backends import Backend, discover

# aiostream.testing's fixtures (memory_storages), as docs/testing.md has applications do.
pytest_plugins = ["aiostream.testing"]

BACKENDS = discover()
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


# The arq tests need arq, which pins redis-py 5: they run in the "arq" stack of
# `nox -s tests`; the "newest" stack (without arq) deselects them with -m "not arq" and
# says so with AIOSTREAM_WITHOUT_ARQ. Without arq, tests/arq is not collected at all,
# unless AIOSTREAM_REQUIRE_ARQ is set (the arq stack sets it): then a missing arq fails
# the run instead of dropping its tests. Under CI=true a full run fails whenever a test
# group is not collected (see pytest_collection_modifyitems).
ARQ_INSTALLED = importlib.util.find_spec("arq") is not None
REQUIRE_ARQ = _flag("AIOSTREAM_REQUIRE_ARQ")
WITHOUT_ARQ = _flag("AIOSTREAM_WITHOUT_ARQ")
TESTS = Path(__file__).resolve().parent
collect_ignore = [] if ARQ_INSTALLED else ["arq"]

# Hypothesis: a failure found once is replayed on every later run, everywhere. Property
# tests save the examples that failed in tests/hypothesis-examples/ (committed with the
# suite: .gitignore ignores .hypothesis/, Hypothesis's default place) and replay them
# before drawing new ones (tests/hypothesis-examples/README.md). Locally ("dev") the
# database is written: a failure found is saved there (commit the new files to pin it
# for everyone) and an example that passes again is dropped. Under CI=true ("ci") it is
# read-only: CI replays what is committed and never writes; it still draws new examples
# on every run (Hypothesis's own "ci" profile, loaded whenever a CI variable is set,
# derandomizes and has no database: it would only hide what a new run could find) and
# prints the blob that reproduces a new failure. Example counts are the tests' own.
# HYPOTHESIS_PROFILE=dev or ci chooses; so does pytest --hypothesis-profile.
HYPOTHESIS_EXAMPLES = TESTS / "hypothesis-examples"
_examples = DirectoryBasedExampleDatabase(HYPOTHESIS_EXAMPLES)
settings.register_profile(
    "dev", settings.get_profile("default"), database=_examples, print_blob=True
)
settings.register_profile(
    "ci",
    settings.get_profile("ci"),  # Hypothesis's: no deadline, too_slow allowed, blobs
    derandomize=False,
    database=ReadOnlyDatabase(_examples),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_ARQ and not ARQ_INSTALLED:
        raise pytest.UsageError(
            "AIOSTREAM_REQUIRE_ARQ is set but arq is not installed: the arq tests "
            "(tests/arq) would not run; install the arq extra (pip install -e '.[redis,arq]')"
        )


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under CI=true, a whole-suite run (no paths given) must collect every test group
    (each folder of tests/ holding test modules); only tests/arq may be left out, by a
    stack that says it runs without arq (AIOSTREAM_WITHOUT_ARQ)."""
    if not IN_CI or config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    groups = {p.name for p in TESTS.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    if WITHOUT_ARQ:
        groups.discard("arq")
    collected = {parts[0] for item in items if len(parts := item.path.relative_to(TESTS).parts) > 1}
    missing = sorted(groups - collected)
    if missing:
        raise pytest.UsageError(
            f"CI=true: test group(s) {', '.join(f'tests/{g}' for g in missing)} collected no "
            "test (a missing dependency? tests/arq needs the arq extra)"
        )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


class Servers:
    """Starts each backend's servers on first use and stops them at session end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.handles: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def get(self, backend: Backend) -> Any:
        if backend.start is None:
            return None
        if backend.name in self.errors:
            self._unavailable(backend.name, self.errors[backend.name])
        if backend.name not in self.handles:
            try:
                self.handles[backend.name] = backend.start(self.workdir / backend.name)
            except Exception as exc:
                self.errors[backend.name] = f"{type(exc).__name__}: {exc}"
                self._unavailable(backend.name, self.errors[backend.name])
        return self.handles[backend.name]

    @staticmethod
    def _unavailable(name: str, reason: str) -> None:
        if IN_CI:
            pytest.fail(f"backend {name!r} could not start under CI=true: {reason}", pytrace=False)
        pytest.skip(f"backend {name!r} unavailable: {reason}")

    def stop_all(self) -> None:
        for name, handle in self.handles.items():
            stop = BACKENDS[name].stop
            if stop is not None:
                stop(handle)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    registry = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield registry
    finally:
        registry.stop_all()


StorageFactory = Callable[[], AbstractAsyncContextManager[FeedStorage]]


@pytest.fixture(params=[pytest.param(name, marks=getattr(pytest.mark, name)) for name in BACKENDS])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_factory(backend_name: str, servers: Servers) -> StorageFactory:
    """Opens isolated storages of the current backend (each with its own prefix)."""
    backend = BACKENDS[backend_name]
    handle = servers.get(backend)

    def factory() -> AbstractAsyncContextManager[FeedStorage]:
        return backend.open_storage(handle, f"t{uuid.uuid4().hex[:12]}")

    return factory


@pytest.fixture
async def storage(storage_factory: StorageFactory) -> AsyncIterator[FeedStorage]:
    async with storage_factory() as opened:
        yield opened


@pytest.fixture
def make_feed(storage: FeedStorage) -> Callable[..., Any]:
    """``make_feed(FeedClass, user_id)``: a feed bound to this test's storage."""

    def make(feed_class: type[Any], user_id: int | str = 1) -> Any:
        return feed_class(user_id, storage=storage)

    return make
