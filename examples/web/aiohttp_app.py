"""The example service on aiohttp.

Start it with::

    python -m examples.web.aiohttp_app --port 8001      # in memory
    python -m examples.web.aiohttp_app --port 8001 --redis-url redis://127.0.0.1:6379/0

then open http://127.0.0.1:8001/users/1. The endpoints are those of
:mod:`examples.web.api`; this module only routes them, with :mod:`aiostream.web.aiohttp`:
the service is opened and closed by a ``cleanup_ctx`` (the application's lifespan, a
:class:`~aiostream.web.FeedApp`), aiostream's errors become JSON errors, and an event
stream a ``web.StreamResponse``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from aiostream.web import FeedApp
from aiostream.web.aiohttp import cleanup_ctx, error_middleware, stream_events
from examples.web.api import ROUTES, SHUTDOWN_GRACE, ApiRequest, Route
from examples.web.service import Config, FeedService, open_service, parse_args

__all__ = ["create_app", "main"]


def _handler(
    route: Route, feeds: FeedApp[FeedService]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        query = ApiRequest(dict(request.match_info), dict(request.query), await request.read())
        reply = await route.handler(feeds.get(), query)
        if reply.stream is not None:
            return await stream_events(request, reply.stream, headers=reply.headers)
        # aiohttp takes the charset apart from the media type.
        content_type, _, charset = reply.content_type.partition("; charset=")
        return web.Response(
            body=reply.body,
            status=reply.status,
            headers=reply.headers,
            content_type=content_type,
            charset=charset or None,
        )

    return handler


def create_app(config: Config | None = None) -> web.Application:
    """The aiohttp application (``config`` defaults to :meth:`Config.from_env`)."""
    config = config if config is not None else Config.from_env()
    feeds = FeedApp(lambda: open_service(config))
    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(cleanup_ctx(feeds))
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _handler(route, feeds), name=route.name)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the application with aiohttp's runner."""
    config, host, port = parse_args(
        argv, description="aiostream example service (aiohttp)", default_port=8001
    )
    # handler_cancellation (as in aiohttp's TestServer): a client that leaves an event
    # stream cancels its handler at once, rather than at the stream's next write.
    web.run_app(
        create_app(config),
        host=host,
        port=port,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_GRACE,
    )


if __name__ == "__main__":
    main()
