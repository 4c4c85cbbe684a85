"""aiostream.testing: feeds of every backend in memory, fanout in process, drain, and the
pytest plugin (``pytest_plugins = ["aiostream.testing"]``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import aiostream
from aiostream import Activity, ConfigurationError, InProcessDispatcher, Love, Manager
from aiostream.fanout import Job, JobRunner
from aiostream.feeds.cassandra import CassandraAggregatedFeed, CassandraFeed
from aiostream.feeds.redis import RedisFeed, RedisNotificationFeed, RedisUserBaseFeed
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.registry import current_storages
from aiostream.testing import (
    MemoryStorages,
    drain,
    fanout_in_process,
    memory_storages,
)
from tests.helpers import at

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class AppFeed(RedisFeed):
    key_format = "testing:flat:%(user_id)s"


class AppNotificationFeed(RedisNotificationFeed):
    key_format = "testing:notification:%(user_id)s"


class AppUserFeed(RedisUserBaseFeed):
    key_format = "testing:user:%(user_id)s"


class ArchiveFeed(CassandraFeed):
    key_format = "testing:archive:%(user_id)s"
    storage_server = "archive"


class GroupsFeed(CassandraAggregatedFeed):
    key_format = "testing:groups:%(user_id)s"


class AppManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": AppFeed,
        "notification": AppNotificationFeed,
        "archive": ArchiveFeed,
        "groups": GroupsFeed,
    }
    user_feed_class = AppUserFeed

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
        return {"HIGH": [10, 11]} if user_id == 1 else {}


class HeldDispatcher:
    """An arq stand-in: keeps the jobs, runs none (until :meth:`drain`)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Job, JobRunner]] = []
        self.drained: list[float] = []

    async def dispatch(self, jobs: Sequence[Job], run: JobRunner) -> None:
        self.jobs += [(job, run) for job in jobs]

    async def drain(self, max_wait: float) -> None:
        self.drained.append(max_wait)
        held, self.jobs = self.jobs, []
        for job, run in held:
            await run(job)


def pin(n: int = 0) -> Activity:
    return Activity(1, Love, 100 + n, time=at(n))


# -- memory_storages ----------------------------------------------------------------------


async def test_feeds_of_every_backend_run_in_memory() -> None:
    async with memory_storages() as registry:
        assert current_storages() is registry
        manager = AppManager()
        await manager.add_user_activity(1, pin())
        for follower in (10, 11):
            feeds = manager.get_feeds(follower)
            assert await feeds["normal"][:] == [pin()]
            assert await feeds["archive"][:] == [pin()]
            (group,) = await feeds["groups"][:]
            assert group.activities == [pin()]
            assert await feeds["notification"].count_unseen() == 1
        # One storage per backend and server, as in production.
        assert set(registry.memory) == {
            ("redis", "default"),
            ("cassandra", "archive"),
            ("cassandra", "default"),
        }
        assert all(type(s) is MemoryStorage for s in registry.memory.values())
        assert registry.get("redis") is registry.memory["redis", "default"]
    assert current_storages() is not registry


async def test_each_entry_starts_empty_and_the_memory_backend_too() -> None:
    class Plain(aiostream.BaseFeed):
        key_format = "testing:plain:%(user_id)s"

    async with memory_storages():
        await AppFeed(1).add(pin())
        await Plain(1).add(pin())
        assert await AppFeed(1).count() == await Plain(1).count() == 1
    async with memory_storages():
        assert await AppFeed(1).count() == await Plain(1).count() == 0


async def test_an_unknown_backend_fails_as_in_production() -> None:
    class Typo(RedisFeed):
        key_format = "testing:typo:%(user_id)s"
        storage_backend = "rediss"

    async with memory_storages() as registry:
        with pytest.raises(ConfigurationError, match="'rediss'"):
            await Typo(1).count()
        assert registry.memory == {}


async def test_storages_given_to_a_feed_stay_its_own() -> None:
    own = MemoryStorage()
    async with memory_storages() as registry:
        await AppFeed(1, storage=own).add(pin())
        assert await AppFeed(1).count() == 0
        assert isinstance(registry, MemoryStorages) and await AppFeed(1, storage=own).count() == 1


# -- fanout_in_process ----------------------------------------------------------------------


async def test_fanout_in_process_swaps_a_managers_dispatcher_while_entered() -> None:
    held = HeldDispatcher()
    async with memory_storages():
        manager = AppManager(dispatcher=held)
        with fanout_in_process(manager) as dispatcher:
            assert manager.dispatcher is dispatcher
            assert isinstance(dispatcher, InProcessDispatcher)
            await manager.add_user_activity(1, pin(0))
            assert await AppFeed(10).count() == 1  # written when the call returned
        assert manager.dispatcher is held
        await manager.add_user_activity(1, pin(1))
        assert await AppFeed(10).count() == 1 and len(held.jobs) > 0  # held, not run
        await drain(manager)
        assert held.drained == [30.0] and await AppFeed(10).count() == 2


async def test_fanout_in_process_of_a_connection_reaches_the_managers_it_builds() -> None:
    # An application's lifespan given the in-memory registry (its ping checks memory).
    async with aiostream.connect(storages=MemoryStorages(), backends=["redis"]) as feeds:
        await feeds.ping()
        original = feeds.dispatcher
        with fanout_in_process(feeds, max_concurrency=2) as dispatcher:
            manager = feeds.manager(AppManager)
            assert manager.dispatcher is dispatcher and dispatcher.max_concurrency == 2
            await manager.add_user_activity(1, pin())
            assert await AppFeed(11)[:] == [pin()]
        assert feeds.dispatcher is original


async def test_fanout_in_process_restores_on_error_and_refuses_a_closed_connection() -> None:
    held = HeldDispatcher()
    manager = AppManager(dispatcher=held)
    with pytest.raises(RuntimeError), fanout_in_process(manager):
        raise RuntimeError("the test failed")
    assert manager.dispatcher is held
    closed = aiostream.connect()
    with (
        pytest.raises(ConfigurationError, match="enter the connection"),
        fanout_in_process(manager, closed),
    ):
        pass
    assert manager.dispatcher is held  # nothing was swapped


# -- drain ----------------------------------------------------------------------------------


async def test_drain_of_an_in_process_dispatcher_returns_at_once() -> None:
    dispatcher = InProcessDispatcher()
    await drain(dispatcher)
    await drain(AppManager(dispatcher=dispatcher), max_wait=0)
    held = HeldDispatcher()
    await drain(held, max_wait=2.5)
    assert held.drained == [2.5]


# -- the pytest plugin ------------------------------------------------------------------------


def test_the_plugin_gives_tests_a_memory_storages_fixture(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["aiostream.testing"]\n')
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            import pytest

            from aiostream.feeds.redis import RedisFeed
            from aiostream.storage.registry import current_storages
            from aiostream.testing import MemoryStorages
            from tests.helpers import make_activities

            pytestmark = pytest.mark.anyio


            class PinFeed(RedisFeed):
                key_format = "plugin:%(user_id)s"


            @pytest.fixture
            def anyio_backend():
                return "asyncio"


            async def test_first(memory_storages):
                assert isinstance(memory_storages, MemoryStorages)
                assert current_storages() is memory_storages
                await PinFeed(1).add_many(make_activities(2))
                assert await PinFeed(1).count() == 2


            async def test_second_starts_empty(memory_storages):
                assert await PinFeed(1).count() == 0
            """
        )
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    env_path = {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**_environ(), **env_path},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}


def test_importing_aiostream_imports_neither_pytest_nor_this_module() -> None:
    code = (
        "import sys, aiostream; print('pytest' in sys.modules, 'aiostream.testing' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.stdout.split() == ["False", "False"], result.stderr
