"""aiostream.web: the error mapping, the SSE generator, the FeedApp holder, and the
Starlette / FastAPI / aiohttp adapters answering over HTTP (in memory)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx
import pytest

from aiostream import (
    Activity,
    ActivityConflictError,
    ActivityNotFoundError,
    BaseFeed,
    ConflictError,
    FanoutError,
    InvalidQueryError,
    Love,
    Manager,
    MemoryStorage,
    SchemaError,
    Settings,
    StorageTimeoutError,
    StorageUnavailableError,
    ValidationError,
)
from aiostream.web import SSE_TASK_NAME, FeedApp, error_response, sse_events
from tests.helpers import TestAggregatedFeed, TestFeed, at, uvicorn_serving

pytestmark = [pytest.mark.anyio, pytest.mark.memory]


# -- error_response ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "field"),
    [
        (ValidationError("limit", "expected an int"), 400, "limit"),
        (InvalidQueryError("before", "expected an id"), 400, "before"),
        (ActivityConflictError("activity", "another activity is stored"), 409, "activity"),
        (ActivityNotFoundError("12 is not in feed 'f:1'"), 404, None),
        (ConflictError("feed:normal:1 at 10.0.0.5"), 409, None),
        (StorageUnavailableError("Redis at 10.0.0.5:6379/0 is unavailable"), 503, None),
        (StorageTimeoutError("Redis at 10.0.0.5:6379/0 did not answer"), 504, None),
    ],
)
def test_errors_become_statuses_and_json_bodies(
    exc: Exception, status: int, field: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "aiostream.web"):
        reply = error_response(exc)
    assert reply is not None
    assert reply.status == status
    error = json.loads(reply.json())["error"]
    assert error["type"] == type(exc).__name__
    assert error["field"] == field
    assert error["message"] and not error["message"].startswith(f"{field}: ")
    if status >= 409 and field is None:
        # Storage errors name internal servers: the client never sees them, the log does.
        assert "10.0.0.5" not in error["message"]
        assert "10.0.0.5" in caplog.text
    else:
        assert caplog.text == ""


@pytest.mark.parametrize(
    "exc", [RuntimeError("bug"), SchemaError("no table"), FanoutError([]), KeyError("x")]
)
def test_other_errors_are_left_to_the_framework(exc: Exception) -> None:
    assert error_response(exc) is None


# -- sse_events -------------------------------------------------------------------------------


@pytest.fixture
async def storage() -> AsyncIterator[MemoryStorage]:
    async with MemoryStorage() as opened:
        yield opened


def tasks_left() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(SSE_TASK_NAME)]


async def test_sse_events_streams_every_feed_s_updates(storage: MemoryStorage) -> None:
    flat, groups = TestFeed(1, storage=storage), TestAggregatedFeed(1, storage=storage)
    chunks = sse_events({"flat": flat, "groups": groups}, keep_alive=0.05, comment="hi")
    assert await anext(chunks) == ": hi\nretry: 3000\n\n"
    assert len(tasks_left()) == 2  # subscribed before the first chunk
    assert await anext(chunks) == ": keep-alive\n\n"
    activity = Activity(1, Love, 42, time=at(0))
    await flat.add(activity)
    await groups.add(activity)
    seen = {}
    while len(seen) < 2:
        chunk = await anext(chunks)
        if chunk.startswith(":"):
            continue
        event, data = chunk.removesuffix("\n\n").split("\n")
        assert event == "event: update"
        update = json.loads(data.removeprefix("data: "))
        seen[update["name"]] = update
        assert update["kind"] == "added"
        assert update["activity_ids"] == [str(activity.serialization_id)]
    assert seen["flat"]["feed"] == flat.key and seen["groups"]["feed"] == groups.key
    await chunks.aclose()
    assert tasks_left() == []


async def test_sse_events_without_retry_or_comment(storage: MemoryStorage) -> None:
    chunks = sse_events({"f": TestFeed(1, storage=storage)}, retry=None)
    assert await anext(chunks) == ":\n\n"
    await chunks.aclose()
    chunks = sse_events({"f": TestFeed(1, storage=storage)}, retry=0)
    assert await anext(chunks) == "retry: 0\n\n"
    await chunks.aclose()


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"feeds": {}}, "feeds"),
        ({"feeds": {"f": "not a feed"}}, "feeds['f']"),
        ({"keep_alive": 0}, "keep_alive"),
        ({"keep_alive": True}, "keep_alive"),
        ({"retry": -1}, "retry"),
        ({"retry": 1.5}, "retry"),
    ],
)
async def test_sse_events_checks_its_arguments_before_the_stream_starts(
    storage: MemoryStorage, arguments: dict[str, Any], field: str
) -> None:
    arguments = {"feeds": {"f": TestFeed(1, storage=storage)}, **arguments}
    with pytest.raises(ValidationError) as caught:
        sse_events(**arguments)  # no await, no anext: raised by the call itself
    assert caught.value.field == field


# -- FeedApp -----------------------------------------------------------------------------------


class WebFeed(BaseFeed):
    key_format = "web:flat:%(user_id)s"


class WebManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"normal": WebFeed}
    user_feed_class = WebFeed

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
        return {}


async def test_feed_app_holds_what_its_lifespan_opened() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def opened() -> AsyncIterator[str]:
        events.append("open")
        yield "service"
        events.append("close")

    feeds = FeedApp(opened)
    with pytest.raises(AttributeError, match="not open"):
        feeds.get()
    async with feeds.lifespan():
        assert feeds.is_open and feeds.get() == "service"
        with pytest.raises(RuntimeError, match="open already"):
            async with feeds.lifespan():
                pass
        assert feeds.get() == "service"  # the refused second entry changed nothing
        with pytest.raises(AttributeError, match="connection"):
            feeds.connection  # noqa: B018 (not a connect() FeedApp)
    assert events == ["open", "close"]
    assert not feeds.is_open
    with pytest.raises(AttributeError):
        feeds.get()  # closed: gone
    with pytest.raises(ValidationError, match="open"):
        FeedApp("not callable")  # type: ignore[arg-type]


async def test_feed_app_connect_builds_the_manager_on_a_connection() -> None:
    storage = MemoryStorage()
    feeds = FeedApp.connect(WebManager, Settings(), storage=storage)
    async with feeds.lifespan():
        manager = feeds.get()
        assert isinstance(manager, WebManager)
        assert manager.dispatcher is feeds.connection.dispatcher
        await feeds.connection.ping()
        await manager.add_user_activity(1, Activity(1, Love, 1, time=at(0)))
        assert len((await manager.get_user_feed(1).page(5)).items) == 1
    with pytest.raises(AttributeError):
        feeds.connection  # noqa: B018
    await storage.aclose()


# -- the adapters, over HTTP --------------------------------------------------------------------


def web_feeds(storage: MemoryStorage) -> FeedApp[WebManager]:
    return FeedApp.connect(WebManager, Settings(), storage=storage)


async def check_api(client: httpx.AsyncClient) -> None:
    """The same answers from every adapter."""
    first = await client.get("/feed", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 2 and first.json()["next"] is not None
    rest = await client.get("/feed", params={"limit": 2, "before": first.json()["next"]})
    assert [len(rest.json()["items"]), rest.json()["next"]] == [1, None]
    for params, field in [({"limit": "-5"}, "limit"), ({"before": "abc"}, "before")]:
        bad = await client.get("/feed", params=params)
        assert bad.status_code == 400, bad.text
        assert bad.headers["content-type"].startswith("application/json")
        assert bad.json()["error"]["field"] == field
    assert (await client.get("/missing")).status_code == 404
    assert (await client.get("/down")).status_code == 503
    async with client.stream("GET", "/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        assert events.headers["cache-control"] == "no-cache"
        assert events.headers["x-accel-buffering"] == "no"
        lines = events.aiter_lines()
        assert await anext(lines) == "retry: 3000"


async def fill(feeds: FeedApp[WebManager]) -> None:
    manager = feeds.get()
    for n in range(3):
        await manager.add_user_activity(1, Activity(1, Love, n, time=at(n)))


async def test_starlette_adapter() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from aiostream.web.starlette import EventStreamResponse, exception_handlers

    async with MemoryStorage() as storage:
        feeds = web_feeds(storage)

        async def feed(request: Request) -> JSONResponse:
            query = request.query_params
            page = (
                await feeds.get()
                .get_user_feed(1)
                .page(query.get("limit", "25"), before=query.get("before"))
            )
            return JSONResponse(page.to_dict())

        async def missing(request: Request) -> JSONResponse:
            raise ActivityNotFoundError("no such pin")

        async def down(request: Request) -> JSONResponse:
            raise StorageUnavailableError("Redis at 10.0.0.5 is unavailable")

        async def events(request: Request) -> EventStreamResponse:
            return EventStreamResponse(sse_events({"f": feeds.get().get_user_feed(1)}))

        routes = [
            Route("/feed", feed),
            Route("/missing", missing),
            Route("/down", down),
            Route("/events", events),
        ]
        handlers = exception_handlers()
        app = Starlette(routes=routes, lifespan=feeds.lifespan, exception_handlers=handlers)
        async with uvicorn_serving(app) as url, httpx.AsyncClient(base_url=url) as client:
            await fill(feeds)
            await check_api(client)
        assert not feeds.is_open


async def test_fastapi_adapter() -> None:
    from fastapi import Depends, FastAPI

    from aiostream.web.starlette import exception_handlers

    async with MemoryStorage() as storage:
        feeds = web_feeds(storage)
        app = FastAPI(lifespan=feeds.lifespan, exception_handlers=exception_handlers())
        manager = Depends(feeds.get)  # (an Annotated alias would be local: not resolvable)

        @app.get("/feed")
        async def feed(
            limit: str = "25", before: str = "", manager: WebManager = manager
        ) -> dict[str, Any]:
            return (await manager.get_user_feed(1).page(limit, before=before)).to_dict()

        async with app.router.lifespan_context(app):
            await fill(feeds)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                first = await client.get("/feed", params={"limit": 2})
                assert len(first.json()["items"]) == 2
                bad = await client.get("/feed", params={"before": "abc"})
                assert (bad.status_code, bad.json()["error"]["field"]) == (400, "before")
        assert not feeds.is_open


async def test_aiohttp_adapter() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from aiostream.web.aiohttp import cleanup_ctx, error_middleware, stream_events

    async with MemoryStorage() as storage:
        feeds = web_feeds(storage)

        async def feed(request: web.Request) -> web.Response:
            query = request.query
            page = (
                await feeds.get()
                .get_user_feed(1)
                .page(query.get("limit", "25"), before=query.get("before"))
            )
            return web.json_response(page.to_dict())

        async def missing(request: web.Request) -> web.Response:
            raise ActivityNotFoundError("no such pin")

        async def down(request: web.Request) -> web.Response:
            raise StorageUnavailableError("Redis at 10.0.0.5 is unavailable")

        async def events(request: web.Request) -> web.StreamResponse:
            stream = sse_events({"f": feeds.get().get_user_feed(1)})
            return await stream_events(request, stream)

        app = web.Application(middlewares=[error_middleware])
        app.cleanup_ctx.append(cleanup_ctx(feeds))
        for path, handler in [
            ("/feed", feed),
            ("/missing", missing),
            ("/down", down),
            ("/events", events),
        ]:
            app.router.add_get(path, handler)
        server = TestServer(app, handler_cancellation=True)
        async with server:
            await fill(feeds)
            async with httpx.AsyncClient(base_url=str(server.make_url(""))) as client:
                await check_api(client)
        assert not feeds.is_open
