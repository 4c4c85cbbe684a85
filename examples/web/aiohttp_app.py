"""The example service on aiohttp.

Start it with::

    python -m examples.web.aiohttp_app --port 8001      # in memory
    python -m examples.web.aiohttp_app --port 8001 --redis-url redis://127.0.0.1:6379/0

then open http://127.0.0.1:8001/users/1. The endpoints are those of
:mod:`examples.web.api`; this module only routes them (an event stream as a
``web.StreamResponse``). aiostream's connections are opened and closed by a
``cleanup_ctx`` (the application's lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing

from aiohttp import web

from examples.web.api import ROUTES, SHUTDOWN_GRACE, ApiRequest, ApiResponse, Route, dispatch
from examples.web.service import Config, FeedService, open_service, parse_args

__all__ = ["SERVICE", "create_app", "main"]

SERVICE = web.AppKey("service", FeedService)


def _handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        reply = await dispatch(
            request.app[SERVICE],
            route,
            ApiRequest(dict(request.match_info), dict(request.query), await request.read()),
        )
        if reply.stream is not None:
            return await _stream(request, reply, reply.stream)
        content_type, charset = _content_type(reply)
        return web.Response(
            body=reply.body,
            status=reply.status,
            headers=reply.headers,
            content_type=content_type,
            charset=charset,
        )

    return handler


def _content_type(reply: ApiResponse) -> tuple[str, str | None]:
    # aiohttp takes the charset apart from the media type.
    content_type, _, charset = reply.content_type.partition("; charset=")
    return content_type, charset or None


async def _stream(
    request: web.Request, reply: ApiResponse, stream: AsyncGenerator[str, None]
) -> web.StreamResponse:
    """Send ``stream``'s chunks as they come, until it ends or the client leaves.

    The stream is closed here, in the task that read it, however the loop stops: a
    write to a client that left raises, and with ``handler_cancellation`` (see
    :func:`main`) its departure cancels the handler.
    """
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_type, response.charset = _content_type(reply)
    await response.prepare(request)
    try:
        async with aclosing(stream):
            async for chunk in stream:
                await response.write(chunk.encode())
    except ConnectionResetError:
        pass  # the client left between two chunks: nobody to answer
    return response


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
