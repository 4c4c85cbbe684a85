"""Live updates: ``GET /api/users/{id}/events`` (Server-Sent Events) of every example
service over real HTTP, on memory and on Redis, and :func:`examples.web.api.events` itself.

Users: 2 is carol, 3 dave; carol follows dave, so dave's pins reach carol's feeds.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

from aiostream import MemoryStorage
from examples.web import api
from examples.web.service import Config, FeedService, open_service
from tests.examples.conftest import serve

pytestmark = pytest.mark.anyio

WAIT = 5.0  # seconds an update, or the end of a subscription, may take


@dataclass
class Event:
    """One message of an event stream: its ``event:`` and ``data:`` fields, comments."""

    event: str = "message"
    data: str = ""
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def messages(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """The messages of an event stream, read line by line (a blank line ends one)."""
    message = Event()
    async for line in lines:
        if not line:
            yield message
            message = Event()
        elif line.startswith(":"):
            message.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                message.event = value
            elif name == "data":
                message.data = f"{message.data}\n{value}" if message.data else value
            elif name == "retry":
                message.retry = int(value)


def open_channels(service: FeedService) -> dict[str, Any]:
    """The feeds this process's storage delivers updates to (a channel per subscribed
    feed), on memory or on Redis."""
    storage: Any = service.manager.storage
    if storage is None:  # on Redis the feeds find theirs in the connection's registry
        assert service.connection is not None
        storage = service.connection.storages.get("redis")
    if isinstance(storage, MemoryStorage):
        return storage._hub.channels
    state = storage._realtime_state
    return {} if state is None else state.hub.channels


def forwarders() -> list[asyncio.Task[Any]]:
    """The tasks reading a subscription for an event stream, in this event loop (where
    the services run)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(api.TASK_NAME)]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (the server notices a closed stream asynchronously)."""
    with anyio.move_on_after(WAIT):
        while not condition():  # noqa: ASYNC110 (server internals: no event to wait for)
            await anyio.sleep(0.01)
    assert condition(), f"after {WAIT}s: {what}"


@dataclass
class Live:
    client: httpx.AsyncClient
    service: FeedService


@pytest.fixture
async def live(
    framework: str, config: Config, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    """A client on the service of ``framework``, and the service its lifespan opened."""
    module = importlib.import_module(f"examples.web.{framework}_app")
    opened: list[FeedService] = []

    @asynccontextmanager
    async def recording(config: Config) -> AsyncIterator[FeedService]:
        async with open_service(config) as service:
            opened.append(service)
            yield service

    monkeypatch.setattr(module, "open_service", recording)
    async with serve(framework, config) as url, httpx.AsyncClient(base_url=url) as client:
        (service,) = opened
        yield Live(client, service)


def stream(client: httpx.AsyncClient, user: int) -> AbstractAsyncContextManager[httpx.Response]:
    return client.stream("GET", f"/api/users/{user}/events", timeout=httpx.Timeout(WAIT))


async def test_a_pin_reaches_the_follower_s_stream_which_leaves_nothing_behind(
    live: Live,
) -> None:
    client = live.client
    response = await client.post("/api/users/2/following", json={"target_id": 3})
    assert response.status_code == 200, response.text

    async with stream(client, 2) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = messages(response.aiter_lines())
        first = await anext(events)
        assert first.retry == api.RETRY_MS and first.comments == ["updates of user 2"]
        # The subscriptions are open once the first message is out: nothing is missed.
        assert len(open_channels(live.service)) == 3
        assert len(forwarders()) == 3

        posted = await client.post("/api/users/3/pins", json={"board": "B", "title": "Dune"})
        assert posted.status_code == 201, posted.text
        pin_id = posted.json()["pin"]["id"]

        updates: dict[str, dict[str, Any]] = {}
        with anyio.fail_after(WAIT):
            async for message in events:
                assert message.event == "update", message
                update = message.json()
                updates[update["name"]] = update
                if updates.keys() == set(api.EVENT_FEEDS):
                    break
        flat = updates["feed"]
        assert (flat["kind"], flat["activity_ids"]) == ("added", [pin_id])
        assert flat["feed"].endswith(":2")
        note = updates["notifications"]
        assert (note["kind"], note["unseen"], note["unread"]) == ("added", 1, 1)
        assert updates["aggregated"]["kind"] == "added"

    await until(lambda: not open_channels(live.service), "the subscriptions are closed")
    await until(lambda: not forwarders(), "the forwarding tasks are done")


# Neither depends on the backend.
IN_MEMORY = pytest.mark.parametrize(
    "config", [pytest.param(Config(), id="memory", marks=pytest.mark.memory)]
)


@IN_MEMORY
async def test_events_needs_a_valid_user_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/users/abc/events")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "user_id"


@IN_MEMORY
async def test_the_page_listens_instead_of_polling(client: httpx.AsyncClient) -> None:
    page = (await client.get("/users/1")).text
    assert "new EventSource(`/api/users/${userId}/events`)" in page
    assert "setInterval" not in page and "setTimeout" not in page


# -- the generator itself ---------------------------------------------------------------------


@pytest.fixture
async def service() -> AsyncIterator[FeedService]:
    async with open_service(Config()) as service:
        await service.follow(2, 3)
        yield service


@pytest.mark.memory
async def test_events_keeps_alive_and_closes_its_subscriptions(service: FeedService) -> None:
    chunks = api.events(service, 2, keep_alive=0.05)
    assert await anext(chunks) == f": updates of user 2\nretry: {api.RETRY_MS}\n\n"
    assert await anext(chunks) == ": keep-alive\n\n"  # nothing happened
    pin = await service.post_pin(3, board="B", title="Dune")
    chunk = await anext(chunks)
    event, data = chunk.removesuffix("\n\n").split("\n")
    assert event == "event: update"
    update = json.loads(data.removeprefix("data: "))
    assert update["activity_ids"] == [str(pin.serialization_id)]
    assert update["name"] in api.EVENT_FEEDS
    assert len(open_channels(service)) == 3

    await chunks.aclose()
    assert open_channels(service) == {}
    assert forwarders() == []


@pytest.mark.memory
async def test_cancelling_a_reader_of_events_closes_its_subscriptions(
    service: FeedService,
) -> None:
    read: list[str] = []

    async def reader() -> None:
        async for chunk in api.events(service, 2):
            read.append(chunk)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        await until(lambda: len(read) == 1, "the first chunk")
        assert len(open_channels(service)) == 3
        tasks.cancel_scope.cancel()
    assert open_channels(service) == {}
    assert forwarders() == []
