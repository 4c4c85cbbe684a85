"""aiohttp glue for :mod:`aiostream.web` (the ``aiohttp`` extra).

- :func:`cleanup_ctx`: a :class:`~aiostream.web.FeedApp`'s lifespan as aiohttp's
  ``cleanup_ctx``;
- :func:`error_middleware`: aiostream's exceptions as JSON errors;
- :func:`stream_events`: :func:`~aiostream.web.sse_events` as a ``web.StreamResponse``,
  closed in the handler's task.

Example::

    feeds = FeedApp.connect(PinManager, Settings.from_env(), backends=["redis"])

    async def events(request: web.Request) -> web.StreamResponse:
        user = int(request.match_info["user_id"])
        return await stream_events(request, sse_events(feeds.get().get_feeds(user)))

    app = web.Application(middlewares=[error_middleware])
    app.cleanup_ctx.append(cleanup_ctx(feeds))
    app.router.add_get("/users/{user_id}/events", events)
    web.run_app(app, handler_cancellation=True, shutdown_timeout=2)

``handler_cancellation=True`` makes a client that leaves an event stream cancel its
handler at once, rather than at the stream's next write; a short ``shutdown_timeout``
keeps an open stream from holding a stopping server for a minute.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any

from aiostream.exceptions import requires_extra
from aiostream.web import SSE_HEADERS, SSE_MEDIA_TYPE, FeedApp, error_response

with requires_extra("aiostream.web.aiohttp", "aiohttp", "aiohttp"):
    from aiohttp import web
    from aiohttp.typedefs import Handler

__all__ = ["cleanup_ctx", "error_middleware", "stream_events"]


def cleanup_ctx(
    feed_app: FeedApp[Any],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """``feed_app``'s lifespan as aiohttp wants it: ``app.cleanup_ctx.append(
    cleanup_ctx(feeds))`` opens it at startup and closes it at shutdown."""

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with feed_app.lifespan(app):
            yield

    return lifespan


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiostream's exceptions as JSON errors (:func:`~aiostream.web.error_response`):
    ``ValidationError`` a 400 naming the field, ``ActivityNotFoundError`` a 404, storage
    errors 409 / 503 / 504; any other exception goes on (aiohttp's 500)."""
    try:
        return await handler(request)
    except Exception as exc:
        reply = error_response(exc)
        if reply is None:
            raise
        return web.json_response(reply.body, status=reply.status)


async def stream_events(
    request: web.Request,
    events: AsyncGenerator[str, None],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Send ``events``' chunks as they come, until they end or the client leaves.

    The generator is closed here, in the task that read it, however the loop stops: a
    write to a client that left raises (and is the end of the answer), and with
    ``handler_cancellation`` its departure cancels the handler.

    Args:
        request: The request answered.
        events: The chunks (:func:`~aiostream.web.sse_events`).
        status: The HTTP status (200).
        headers: More headers (added to :data:`~aiostream.web.SSE_HEADERS`).
    """
    response = web.StreamResponse(status=status, headers={**SSE_HEADERS, **(headers or {})})
    response.content_type, _, charset = SSE_MEDIA_TYPE.partition("; charset=")
    response.charset = charset
    try:
        async with aclosing(events):
            await response.prepare(request)
            async for chunk in events:
                await response.write(chunk.encode())
    except ConnectionResetError:
        pass  # the client left between two chunks: nobody to answer
    return response
