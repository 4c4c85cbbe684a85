"""The example service on aiohttp.

Start it with::

    python -m examples.web.aiohttp_app --port 8001      # in memory
    python -m examples.web.aiohttp_app --port 8001 --redis-url redis://127.0.0.1:6379/0

then open http://127.0.0.1:8001/users/1. The endpoints are those of
:mod:`examples.web.api`; this module only routes them. aiostream's connections are
opened and closed by a ``cleanup_ctx`` (the application's lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from examples.web.api import ROUTES, ApiRequest, Route, dispatch
from examples.web.service import Config, FeedService, open_service, parse_args

__all__ = ["SERVICE", "create_app", "main"]

SERVICE = web.AppKey("service", FeedService)


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        reply = await dispatch(
            request.app[SERVICE],
            route,
            ApiRequest(dict(request.match_info), dict(request.query), await request.read()),
        )
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

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with open_service(config) as service:
            app[SERVICE] = service
            yield

    app = web.Application()
    app.cleanup_ctx.append(lifespan)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _handler(route), name=route.name)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the application with aiohttp's runner."""
    config, host, port = parse_args(
        argv, description="aiostream example service (aiohttp)", default_port=8001
    )
    web.run_app(create_app(config), host=host, port=port)


if __name__ == "__main__":
    main()
