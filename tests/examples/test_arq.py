"""Every example service in arq mode: fanout, follow and unfollow wait in Redis as jobs
until a worker of :mod:`examples.web.worker` (real arq ``Worker``, burst mode, in this
event loop) runs them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from arq.worker import create_worker
from redis.asyncio import Redis

from aiostream.tasks import ArqDispatcher
from aiostream.testing import fanout_in_process
from examples.web.service import Config, open_service
from examples.web.worker import QUEUE, QUEUES, WorkerSettings, create_worker_settings
from tests.examples.conftest import fresh_redis_database, serve

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.arq,
    pytest.mark.redis,
    # arq 0.28 closes its pool with redis-py's deprecated close(); not ours to fix.
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]


@pytest.fixture
async def arq_config(servers: Any) -> Config:
    return Config(redis_url=await fresh_redis_database(servers), arq=True)


async def run_worker(url: str) -> int:
    """Run the example's worker until its queue is empty; the number of jobs it ran."""
    worker = create_worker(
        create_worker_settings(url, poll_delay=0.01), burst=True, handle_signals=False
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_failed == 0
    return int(worker.jobs_complete)


async def queued(url: str) -> int:
    client = Redis.from_url(url)
    try:
        return int(await client.zcard(QUEUE))
    finally:
        await client.aclose()


async def feed_ids(client: httpx.AsyncClient, user: int, feed: str = "feed") -> list[str]:
    response = await client.get(f"/api/users/{user}/{feed}")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def unseen(client: httpx.AsyncClient, user: int) -> int:
    response = await client.get(f"/api/users/{user}/notifications/counts")
    return int(response.json()["unseen_count"])


async def pin(client: httpx.AsyncClient, user: int, title: str) -> str:
    response = await client.post(f"/api/users/{user}/pins", json={"board": "B", "title": title})
    assert response.status_code == 201, response.text
    return str(response.json()["pin"]["id"])


async def test_ready_in_arq_mode(framework: str, arq_config: Config) -> None:
    async with serve(framework, arq_config) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/ready")
        assert (response.status_code, response.json()) == (200, {"ready": True})


async def test_the_connection_enqueues_on_the_worker_queues(arq_config: Config) -> None:
    async with open_service(arq_config) as service:
        assert service.connection is not None
        dispatcher = service.connection.dispatcher
        assert isinstance(dispatcher, ArqDispatcher)
        assert dispatcher.queues == QUEUES
        assert service.manager.dispatcher is dispatcher


def test_worker_settings_take_the_example_queue() -> None:
    assert WorkerSettings.queue_name == QUEUE  # type: ignore[attr-defined]


async def test_jobs_run_in_the_worker(framework: str, arq_config: Config) -> None:
    url = arq_config.redis_url
    assert url is not None
    async with serve(framework, arq_config) as base, httpx.AsyncClient(base_url=base) as client:
        earlier = await pin(client, 2, "before")  # no followers yet: nothing to enqueue
        assert await queued(url) == 0

        response = await client.post("/api/users/1/following", json={"target_id": 2})
        assert response.json()["changed"] is True
        assert await queued(url) == 1  # the backfill waits for a worker
        assert await feed_ids(client, 1) == []
        assert await run_worker(url) == 1
        assert await feed_ids(client, 1) == [earlier]
        assert await feed_ids(client, 1, "notifications") == []

        later = await pin(client, 2, "after")
        assert await queued(url) == 3  # one chunk per feed: flat, aggregated, notification
        assert await feed_ids(client, 1) == [earlier]
        assert await unseen(client, 1) == 0
        assert await run_worker(url) == 3
        assert await feed_ids(client, 1) == [later, earlier]
        assert await unseen(client, 1) == 1

        response = await client.delete("/api/users/1/following/2")
        assert response.json()["changed"] is True
        assert await run_worker(url) == 1
        assert await feed_ids(client, 1) == []
        assert await feed_ids(client, 1, "aggregated") == []
        assert await unseen(client, 1) == 0


async def test_its_tests_can_run_the_fanout_in_process(arq_config: Config) -> None:
    """``aiostream.testing.fanout_in_process`` (docs/testing.md) on the arq-configured
    service: its follows and fanout run in the test's process, nothing is queued for a
    worker, and the service enqueues again once the switch is left."""
    url = arq_config.redis_url
    assert url is not None
    async with open_service(arq_config) as service:
        assert service.connection is not None
        with fanout_in_process(service.connection, service.manager):
            earlier = await service.post_pin(2, board="B", title="before")
            assert await service.follow(1, 2) is True
            later = await service.post_pin(2, board="B", title="after")
            assert await queued(url) == 0
            assert await service.feed(1, "normal")[:] == [later, earlier]
            assert (await service.counts(1))["unseen_count"] == 1
        assert isinstance(service.manager.dispatcher, ArqDispatcher)
        await service.post_pin(2, board="B", title="queued")
        assert await queued(url) == 3  # one chunk per feed: flat, aggregated, notification
