"""Fixtures for the arq tests: a private Redis database per test, dispatchers, workers.

Every test here gets its own database number on the session's redis-server, so arq's
queues and the feeds of one test never meet another's.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aiostream.settings import Settings
from aiostream.storage.registry import close_default_storages, configure
from aiostream.tasks import ArqDispatcher
from tests.backends.redis import BACKENDS

_databases = itertools.cycle(range(1, 16))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/arq/" in item.path.as_posix():
            item.add_marker(pytest.mark.arq)
            item.add_marker(pytest.mark.redis)
            # arq 0.28 closes its pool with redis-py's deprecated close(); not ours to fix.
            item.add_marker(
                pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
            )


@pytest.fixture
async def redis_url(servers: Any) -> AsyncIterator[str]:
    """URL of an emptied database of the session's redis-server, for this test only."""
    from redis.asyncio import Redis

    handle = servers.get(BACKENDS["redis"])
    url = f"redis://{handle.host}:{handle.port}/{next(_databases)}"
    client = Redis.from_url(url)
    try:
        await client.flushdb()  # our own private server, our own database
    finally:
        await client.aclose()
    return url


@pytest.fixture
async def app_storage(redis_url: str) -> AsyncIterator[str]:
    """Points the Redis feeds' default storage at this test's database."""
    configure(Settings(redis_url=redis_url))
    try:
        yield redis_url
    finally:
        await close_default_storages()
        configure(None)


@pytest.fixture
async def dispatcher(app_storage: str) -> AsyncIterator[ArqDispatcher]:
    # One job per Manager chunk (no joining): the tests place faults between jobs.
    async with await ArqDispatcher.connect(app_storage, job_size=None) as opened:
        yield opened


WorkerRunner = Callable[..., Any]
