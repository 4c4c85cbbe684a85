"""aiostream.connect(): the registry and dispatcher of an application in one ``async with``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aiostream
from aiostream import ConfigurationError, InProcessDispatcher, Settings
from aiostream.connection import Connection
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.registry import current_storages
from tests.helpers import TestFeed, TestUserFeed, make_activities

pytestmark = pytest.mark.anyio


class PinManager(aiostream.Manager):
    feed_classes = {"normal": TestFeed}  # noqa: RUF012
    user_feed_class = TestUserFeed

    def get_user_follower_ids(self, user_id: object) -> dict[str, list[int]]:
        return {aiostream.FanoutPriority.HIGH: [2, 3]}


async def test_connect_enters_a_registry_and_an_in_process_dispatcher() -> None:
    outside = current_storages()
    async with aiostream.connect(Settings(), backends=["memory"]) as feeds:
        assert isinstance(feeds, Connection)
        assert current_storages() is feeds.storages
        assert isinstance(feeds.dispatcher, InProcessDispatcher)
        assert isinstance(feeds.storage("memory"), MemoryStorage)
        await feeds.ping()
        manager = feeds.manager(PinManager)
        assert manager.dispatcher is feeds.dispatcher
        (activity,) = make_activities(1)
        await manager.add_user_activity(1, activity)
        assert await manager.get_feeds(3)["normal"][:] == [activity]
    assert current_storages() is outside
    with pytest.raises(ConfigurationError, match="enter the connection first"):
        feeds.dispatcher  # noqa: B018


async def test_dispatcher_options_reach_the_dispatcher() -> None:
    async with aiostream.connect(dispatcher_options={"max_concurrency": 3}) as feeds:
        assert isinstance(feeds.dispatcher, InProcessDispatcher)
        assert feeds.dispatcher.max_concurrency == 3


async def test_a_connection_is_entered_once() -> None:
    async with aiostream.connect() as feeds:
        with pytest.raises(ConfigurationError, match="already entered"):
            await feeds.__aenter__()


async def test_an_unknown_backend_fails_on_entry_and_enters_nothing() -> None:
    outside = current_storages()
    with pytest.raises(ConfigurationError, match="no storage backend named 'mongo'"):
        async with aiostream.connect(backends=["memory", "mongo"]):
            pass
    assert current_storages() is outside


def test_backends_must_be_a_list_of_names() -> None:
    with pytest.raises(ConfigurationError, match=r"say \['redis'\]"):
        aiostream.connect(backends="redis")


async def test_an_unknown_server_fails_on_entry() -> None:
    with pytest.raises(ConfigurationError, match="no Redis server named 'analytics'"):
        async with aiostream.connect(Settings(), backends=["redis:analytics"]):
            pass


@pytest.fixture
def no_server_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "STREAM_REDIS_URL",
        "STREAM_REDIS_SERVERS",
        "STREAM_ARQ_REDIS_URL",
        "STREAM_CASSANDRA_HOSTS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_server_variables")
async def test_without_settings_a_server_nothing_configures_fails_on_entry() -> None:
    # No silent 127.0.0.1: the memory backend needs nothing, a server backend its variable.
    outside = current_storages()
    async with aiostream.connect(backends=["memory"]) as feeds:
        assert feeds.settings is None
    with pytest.raises(ConfigurationError, match="STREAM_REDIS_URL"):
        async with aiostream.connect(backends=["redis"]):
            pass
    with pytest.raises(ConfigurationError, match="STREAM_CASSANDRA_HOSTS"):
        async with aiostream.connect(backends=["cassandra"]):
            pass
    with pytest.raises(
        ConfigurationError, match=r"queue Redis.*STREAM_ARQ_REDIS_URL or STREAM_REDIS_URL"
    ):
        async with aiostream.connect(arq=True):
            pass
    assert current_storages() is outside


def test_the_worker_side_does_not_import_the_connection() -> None:
    # connection.py imports aiostream.tasks (lazily), which imports _arq_worker: the
    # worker enters its own storage registry instead of importing the connection back.
    root = Path(__file__).resolve().parents[1] / "aiostream"
    for name in ("tasks.py", "_arq_worker.py", "_jobs.py"):
        tree = ast.parse((root / name).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert "aiostream.connection" not in imported, name
