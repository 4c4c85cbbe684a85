"""Redis-bound feed classes: default storages from the environment, named servers, loops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis

from aiostream import Activity, ConfigurationError, FanoutPriority, Love, Manager, Settings
from aiostream.feeds.redis import (
    RedisAggregatedFeed,
    RedisFeed,
    RedisNotificationFeed,
    RedisUserBaseFeed,
)
from aiostream.metrics import NoopMetrics
from aiostream.storage.redis import RedisStorage, get_default_storage
from aiostream.storage.registry import Storages, close_default_storages, configure
from tests.helpers import at
from tests.servers import RedisServer, start_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    first = start_redis(tmp_path / "a")
    try:
        second = start_redis(tmp_path / "b")
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture
async def clean_defaults() -> AsyncIterator[None]:
    configure(None)
    try:
        yield
    finally:
        await close_default_storages()
        configure(None)


async def all_keys(url: str) -> set[str]:
    async with Redis.from_url(url, decode_responses=True) as client:
        return {key async for key in client.scan_iter(count=1000)}


class PinFeed(RedisFeed):
    key_format = "feed:normal:%(user_id)s"


@pytest.mark.anyio
@pytest.mark.usefixtures("clean_defaults")
async def test_seed_example_with_stream_redis_url(
    two_servers: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = two_servers
    monkeypatch.setenv("STREAM_REDIS_URL", server.url)
    activity = Activity(1, Love, 42, time=at(0))
    await PinFeed(13).add(activity)
    assert await PinFeed(13)[:10] == [activity]
    storage = PinFeed(13).storage
    assert isinstance(storage, RedisStorage)
    assert storage is PinFeed(14).storage is RedisFeed.default_storage()
    assert storage.server == f"{server.host}:{server.port}"
    assert "{feed:normal:13}:t" in await all_keys(server.url)


class OtherFeed(RedisFeed):
    key_format = "other:flat:%(user_id)s"
    redis_server: ClassVar[str] = "other"


class OtherUserFeed(RedisUserBaseFeed):
    key_format = "other:user:%(user_id)s"
    redis_server: ClassVar[str] = "other"


class OtherAggregated(RedisAggregatedFeed):
    key_format = "other:aggregated:%(user_id)s"
    redis_server: ClassVar[str] = "other"


class OtherNotification(RedisNotificationFeed):
    key_format = "other:notification:%(user_id)s"
    redis_server: ClassVar[str] = "other"


class OtherManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": OtherFeed, "notification": OtherNotification}
    user_feed_class = OtherUserFeed

    def get_user_follower_ids(self, user_id: Any) -> dict[FanoutPriority, list[int]]:
        return {FanoutPriority.HIGH: [2, 3]}


@pytest.mark.anyio
@pytest.mark.usefixtures("clean_defaults")
async def test_named_server_holds_everything_of_its_feeds(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    default, other = two_servers
    configure(Settings(redis_url=default.url, redis_servers={"other": other.url}))
    activity = Activity(1, Love, 42, time=at(0))
    await OtherFeed.insert_activity(activity)
    await OtherFeed(1).add(activity)
    await OtherUserFeed(1).add(activity)
    await OtherAggregated(1).add(activity)
    notifications = OtherNotification(1)
    await notifications.add(activity)
    await notifications.mark_all(seen=True)
    await OtherManager().add_user_activity(1, Activity(1, Love, 43, time=at(1)))

    assert await all_keys(default.url) == set()
    keys = await all_keys(other.url)
    for expected in (
        "{other:flat:1}:t",
        "{other:user:1}:t",
        "{other:aggregated:1}:g",
        "{other:aggregated:1}:gd",
        "{other:notification:1}:g",
        "{other:notification:1}:gd",
        "{other:notification:1}:ur",
        "{other:flat:2}:t",
        "{other:notification:3}:us",
    ):
        assert expected in keys
    assert any(key.startswith("{act:") for key in keys)
    assert OtherFeed(1).storage is not PinFeed(1).storage
    assert await OtherFeed(2)[:] == [Activity(1, Love, 43, time=at(1))]

    class Unknown(RedisFeed):
        redis_server: ClassVar[str] = "nowhere"

    with pytest.raises(ConfigurationError, match="nowhere"):
        Unknown(1)


def test_feeds_made_outside_a_loop_follow_the_running_loop(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    server, _ = two_servers
    configure(Settings(redis_url=server.url))
    try:
        feed = PinFeed(5)  # no event loop running here
        activities = [Activity(1, Love, i, time=at(i)) for i in range(3)]
        used: list[RedisStorage] = []

        async def use(activity: Activity) -> list[Activity]:
            try:
                assert feed.storage is get_default_storage()  # this loop's own
                used.append(get_default_storage())
                await feed.add(activity)
                return list(await feed[:])
            finally:
                await close_default_storages()

        # Two loops one after the other, each with its own connections.
        assert asyncio.run(use(activities[0])) == activities[:1]
        assert asyncio.run(use(activities[1])) == [activities[1], activities[0]]
        assert used[0] is not used[1]
    finally:
        configure(None)


class StorageCalls(NoopMetrics):
    def __init__(self) -> None:
        self.operations: list[str] = []

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        self.operations.append(operation)


class PinAggregated(RedisAggregatedFeed):
    key_format = "feed:aggregated:%(user_id)s"


def test_aggregated_feeds_made_outside_a_loop_merge_on_the_server(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    # A feed made where no loop runs used to get a proxy storage without merge_groups,
    # and silently fell back to reading the groups and writing them back.
    server, _ = two_servers
    configure(Settings(redis_url=server.url))
    calls = StorageCalls()
    try:
        feed = PinAggregated(5, metrics=calls)

        async def add() -> int:
            try:
                await feed.add(Activity(1, Love, 1, time=at(0)))
                return await feed.count()
            finally:
                await close_default_storages()

        assert asyncio.run(add()) == 1
    finally:
        configure(None)
    assert calls.operations[0] == "merge_groups"
    assert "write_groups" not in calls.operations and "get_groups" not in calls.operations


@pytest.fixture
def no_redis_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREAM_REDIS_URL", "STREAM_REDIS_SERVERS", "STREAM_ARQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.anyio
@pytest.mark.usefixtures("clean_defaults", "no_redis_variables")
async def test_nothing_configured_is_an_error_not_a_server_on_localhost() -> None:
    # The decision: the library never falls back silently to 127.0.0.1:6379.
    with pytest.raises(ConfigurationError, match="STREAM_REDIS_URL") as raised:
        PinFeed(13)
    message = str(raised.value)
    for advice in ("storage=", "Storages(settings)", "configure(settings)"):
        assert advice in message
    with pytest.raises(ConfigurationError, match="STREAM_REDIS_SERVERS"):
        OtherFeed(1)
    async with Storages():
        with pytest.raises(ConfigurationError, match="STREAM_REDIS_URL"):
            PinFeed(13)


def test_nothing_configured_outside_a_loop_is_an_error_too(
    no_redis_variables: None,
) -> None:
    configure(None)
    try:
        with pytest.raises(ConfigurationError, match="STREAM_REDIS_URL"):
            PinFeed(13)
    finally:
        configure(None)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_redis_variables")
async def test_a_redis_storage_without_url_needs_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="STREAM_REDIS_URL not set"):
        RedisStorage()


@pytest.mark.anyio
@pytest.mark.usefixtures("clean_defaults", "no_redis_variables")
async def test_named_servers_come_from_their_variable_alone(
    two_servers: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # STREAM_REDIS_SERVERS configures the named server; the default one stays unset.
    _, other = two_servers
    monkeypatch.setenv("STREAM_REDIS_SERVERS", f"other={other.url}")
    activity = Activity(1, Love, 42, time=at(0))
    await OtherFeed(1).add(activity)
    assert await OtherFeed(1)[:] == [activity]
    with pytest.raises(ConfigurationError, match="STREAM_REDIS_URL"):
        PinFeed(1)
