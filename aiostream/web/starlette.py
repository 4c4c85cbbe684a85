"""Starlette and FastAPI glue for :mod:`aiostream.web` (the ``starlette`` or ``fastapi``
extra).

- :func:`exception_handlers`: aiostream's exceptions as JSON errors
  (``Starlette(exception_handlers=...)``, ``FastAPI(exception_handlers=...)``);
- :class:`EventStreamResponse`: :func:`~aiostream.web.sse_events` streamed, and closed
  in the task that read it;
- the lifespan is :meth:`FeedApp.lifespan <aiostream.web.FeedApp.lifespan>` as it is
  (``lifespan=feeds.lifespan``), and FastAPI's dependency ``Depends(feeds.get)``.

Example::

    feeds = FeedApp.connect(PinManager, Settings.from_env(), backends=["redis"])

    async def events(request: Request) -> EventStreamResponse:
        user = int(request.path_params["user_id"])
        return EventStreamResponse(sse_events(feeds.get().get_feeds(user)))

    app = Starlette(
        routes=[Route("/users/{user_id}/events", events)],
        lifespan=feeds.lifespan,
        exception_handlers=exception_handlers(),
    )
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from contextlib import aclosing
from typing import Any

from aiostream.exceptions import requires_extra
from aiostream.web import ERROR_STATUSES, SSE_HEADERS, SSE_MEDIA_TYPE, error_response

with requires_extra("aiostream.web.starlette", "Starlette", "starlette"):
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.types import Send

__all__ = ["EventStreamResponse", "error_json", "exception_handlers"]

# What FastAPI's exception_handlers= takes (Starlette takes any awaitable).
_Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response of an async generator of text chunks
    (:func:`~aiostream.web.sse_events`), with :data:`~aiostream.web.SSE_HEADERS`.

    It closes the generator in the task that read it, however the response ends:
    Starlette only stops iterating, so a client leaving while the stream waits at a
    ``yield`` would leave its subscriptions open until garbage collection, which then
    closes it from another task (where its task group cannot exit).

    Args:
        events: The chunks to send.
        status_code: The HTTP status (200).
        headers: More headers (added to :data:`~aiostream.web.SSE_HEADERS`).
    """

    def __init__(
        self,
        events: AsyncGenerator[str, None],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            events,
            status_code,
            headers={**SSE_HEADERS, **(headers or {})},
            media_type=SSE_MEDIA_TYPE,
        )
        self._events = events

    async def stream_response(self, send: Send) -> None:
        async with aclosing(self._events):
            await super().stream_response(send)


def error_json(exc: BaseException) -> JSONResponse | None:
    """The JSON error response of ``exc`` (:func:`~aiostream.web.error_response`), or
    None when it is no error of a request (let it be a 500)."""
    reply = error_response(exc)
    if reply is None:
        return None
    return JSONResponse(reply.body, reply.status)


async def _handle(request: Request, exc: Exception) -> Response:
    reply = error_json(exc)
    if reply is None:  # (only the classes of ERROR_STATUSES are registered)
        raise exc
    return reply


def exception_handlers() -> dict[Any, _Handler]:
    """Handlers of every exception of :data:`~aiostream.web.ERROR_STATUSES` (a new dict):
    ``ValidationError`` a 400 naming the field, ``ActivityNotFoundError`` a 404, storage
    errors 409 / 503 / 504. Pass it to ``Starlette(exception_handlers=...)`` or
    ``FastAPI(exception_handlers=...)``; Starlette picks the most specific class.
    """
    return {cls: _handle for cls, _ in ERROR_STATUSES}
