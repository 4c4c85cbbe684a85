"""The example service on Starlette (runs as is under FastAPI's Starlette too).

Start it with::

    python -m examples.web.starlette_app --port 8000      # in memory
    python -m examples.web.starlette_app --port 8000 --redis-url redis://127.0.0.1:6379/0

then open http://127.0.0.1:8000/users/1. ``uvicorn --factory
examples.web.starlette_app:create_app`` works too (configured by ``AIOSTREAM_REDIS_URL`` /
``AIOSTREAM_ARQ``). The endpoints are those of :mod:`examples.web.api`; this module only
routes them. The service is opened in the lifespan and closed at shutdown (a
:class:`~aiostream.web.FeedApp`); :mod:`aiostream.web.starlette` answers aiostream's
errors and streams the events (:func:`to_response`, FastAPI's too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiostream.web import FeedApp
from aiostream.web.starlette import EventStreamResponse, exception_handlers
from examples.web.api import ROUTES, SHUTDOWN_GRACE, ApiRequest, ApiResponse
from examples.web.api import Route as ApiRoute
from examples.web.service import Config, FeedService, open_service, parse_args

__all__ = ["api_request", "create_app", "main", "to_response"]


def to_response(reply: ApiResponse) -> Response:
    """The Starlette response of ``reply`` (an event stream is streamed)."""
    if reply.stream is not None:
        return EventStreamResponse(reply.stream, reply.status, reply.headers)
    return Response(
        reply.body, reply.status, headers=dict(reply.headers), media_type=reply.content_type
    )


async def api_request(request: Request) -> ApiRequest:
    """What the handlers of :mod:`examples.web.api` read of ``request``."""
    return ApiRequest(dict(request.path_params), dict(request.query_params), await request.body())


def _endpoint(
    route: ApiRoute, feeds: FeedApp[FeedService]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return to_response(await route.handler(feeds.get(), await api_request(request)))

    return endpoint


def create_app(config: Config | None = None) -> Starlette:
    """The Starlette application (``config`` defaults to :meth:`Config.from_env`)."""
    config = config if config is not None else Config.from_env()
    feeds = FeedApp(lambda: open_service(config))
    routes = [Route(r.path, _endpoint(r, feeds), methods=[r.method], name=r.name) for r in ROUTES]
    handlers = exception_handlers()  # aiostream's errors as JSON (400 naming the field...)
    return Starlette(routes=routes, lifespan=feeds.lifespan, exception_handlers=handlers)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the application with uvicorn."""
    import uvicorn

    config, host, port = parse_args(
        argv, description="aiostream example service (Starlette)", default_port=8000
    )
    uvicorn.run(create_app(config), host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_GRACE)


if __name__ == "__main__":
    main()
