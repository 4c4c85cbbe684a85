"""The example service on Starlette (runs as is under FastAPI's Starlette too).

Start it with::

    python -m examples.web.starlette_app --port 8000      # in memory
    python -m examples.web.starlette_app --port 8000 --redis-url redis://127.0.0.1:6379/0

then open http://127.0.0.1:8000/users/1. ``uvicorn --factory
examples.web.starlette_app:create_app`` works too (configured by ``AIOSTREAM_REDIS_URL`` /
``AIOSTREAM_ARQ``). The endpoints are those of :mod:`examples.web.api`; this module only
routes them. aiostream's connections are opened in the lifespan and closed at shutdown.
:func:`to_response` (FastAPI's too) sends an event stream as a ``StreamingResponse``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

from examples.web.api import ROUTES, SHUTDOWN_GRACE, ApiRequest, ApiResponse, dispatch
from examples.web.api import Route as ApiRoute
from examples.web.service import Config, FeedService, open_service, parse_args

__all__ = ["create_app", "main", "to_response"]


class State(TypedDict):
    """What the lifespan hands every request (``request.state``)."""

    service: FeedService


class _EventStream(StreamingResponse):
    """A ``StreamingResponse`` that closes its stream in the task that read it.

    Starlette only stops iterating: a disconnect that cancels a write while the stream
    waits at a ``yield`` would leave its subscriptions open until garbage collection,
    which then closes it from another task (and its task group cannot exit there).
    """

    def __init__(self, reply: ApiResponse, stream: AsyncGenerator[str, None]) -> None:
        super().__init__(
            stream, reply.status, headers=dict(reply.headers), media_type=reply.content_type
        )
        self._stream = stream

    async def stream_response(self, send: Send) -> None:
        async with aclosing(self._stream):
            await super().stream_response(send)


def to_response(reply: ApiResponse) -> Response:
    """The Starlette response of ``reply`` (an event stream is streamed)."""
    if reply.stream is not None:
        return _EventStream(reply, reply.stream)
    return Response(
        reply.body, reply.status, headers=dict(reply.headers), media_type=reply.content_type
    )


def _endpoint(route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        service: FeedService = request.state.service
        reply = await dispatch(
            service,
            route,
            ApiRequest(dict(request.path_params), dict(request.query_params), await request.body()),
        )
        return to_response(reply)

    return endpoint


def create_app(config: Config | None = None) -> Starlette:
    """The Starlette application (``config`` defaults to :meth:`Config.from_env`)."""
    config = config if config is not None else Config.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with open_service(config) as service:
            yield {"service": service}

    routes = [Route(r.path, _endpoint(r), methods=[r.method], name=r.name) for r in ROUTES]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the application with uvicorn."""
    import uvicorn

    config, host, port = parse_args(
        argv, description="aiostream example service (Starlette)", default_port=8000
    )
    uvicorn.run(create_app(config), host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_GRACE)


if __name__ == "__main__":
    main()
