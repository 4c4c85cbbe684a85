"""Fixtures for the example web services: each framework served over real HTTP on a free
loopback port (in this event loop), on memory or on the session's private redis-server.

``serve(framework, config)`` runs the Starlette or the FastAPI app under uvicorn, or the
aiohttp app under ``aiohttp.test_utils.TestServer``; the tests talk to all of them
through one httpx client, so one test body checks that the services behave the same.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from examples.web.api import SHUTDOWN_GRACE
from examples.web.service import Config
from tests.backends.redis import BACKENDS as REDIS_BACKENDS
from tests.helpers import uvicorn_serving

# The arq-mode tests need arq (the "arq" stack of `nox -s tests`, with redis-py 5).
collect_ignore_glob = [] if importlib.util.find_spec("arq") else ["test_arq*.py"]

FRAMEWORKS = ["starlette", "aiohttp", "fastapi"]
# The frameworks whose app is an ASGI application (served under uvicorn).
ASGI_APPS = {
    "starlette": "examples.web.starlette_app",
    "fastapi": "examples.web.fastapi_app",
}
BACKENDS = [
    pytest.param("memory", marks=pytest.mark.memory),
    pytest.param("redis", marks=pytest.mark.redis),
]
# Each Redis test gets a database of its own on the session's private server.
_databases = itertools.cycle(range(1, 16))
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, for fixtures that act on failure."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def failed(node: pytest.Item) -> bool:
    """Whether the test's setup or call phase failed (read in fixture teardown)."""
    reports = node.stash.get(REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def fresh_redis_database(servers: Any) -> str:
    """URL of an emptied database of the session's private redis-server (never a server
    the suite did not start)."""
    from redis.asyncio import Redis

    handle = servers.get(REDIS_BACKENDS["redis"])
    url = f"redis://{handle.host}:{handle.port}/{next(_databases)}"
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


@pytest.fixture(params=BACKENDS)
async def config(request: pytest.FixtureRequest, servers: Any) -> Config:
    """In memory, or on a fresh database of the private redis-server."""
    if request.param == "memory":
        return Config()
    return Config(redis_url=await fresh_redis_database(servers))


@asynccontextmanager
async def serve(framework: str, config: Config) -> AsyncIterator[str]:
    """Serve the example app of ``framework`` on a free 127.0.0.1 port; yield its base URL.

    The lifespan runs as in production: startup before the first request, shutdown (which
    closes aiostream's connections) on exit.
    """
    if framework in ASGI_APPS:
        create_app = importlib.import_module(ASGI_APPS[framework]).create_app
        # As in main(): an event stream still open does not hold the shutdown.
        async with uvicorn_serving(create_app(config), graceful_shutdown=SHUTDOWN_GRACE) as base:
            yield base
    else:
        from aiohttp.test_utils import TestServer

        from examples.web.aiohttp_app import create_app as create_aiohttp_app

        test_server = TestServer(create_aiohttp_app(config), host="127.0.0.1")
        await test_server.start_server()
        try:
            yield str(test_server.make_url("")).rstrip("/")
        finally:
            await test_server.close()


@pytest.fixture
async def client(framework: str, config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the example service of ``framework`` (real HTTP)."""
    async with serve(framework, config) as url, httpx.AsyncClient(base_url=url) as http:
        yield http
