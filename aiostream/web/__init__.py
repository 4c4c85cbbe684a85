"""What every web app around aiostream writes, once and framework-neutral.

Four pieces, each a plain function or class that any framework can call:

- :meth:`BaseFeed.page <aiostream.feeds.base.BaseFeed.page>` (on the feeds themselves):
  ``?limit=&before=`` straight from the query string to ``{"items", "next"}``;
- :func:`sse_events`: Server-Sent Events of a user's feeds as text chunks, for a
  streaming response (``EventSource`` in the browser);
- :func:`error_response`: aiostream's exceptions as an HTTP status and a JSON body
  (``ValidationError`` a 400 naming the field, not a 500);
- :class:`FeedApp`: what the lifespan opens (``aiostream.connect`` and the Manager),
  held for the handlers with its type, instead of an ``Any`` on ``app.state``.

:mod:`aiostream.web.starlette` (Starlette and FastAPI) and :mod:`aiostream.web.aiohttp`
adapt them; this module imports no web framework.

Example::

    feeds = FeedApp.connect(PinManager, Settings.from_env(), backends=["redis"])
    app = Starlette(routes=routes, lifespan=feeds.lifespan)

    async def feed(request):
        manager = feeds.get()                       # a PinManager, not Any
        page = await manager.get_feeds(1)["normal"].page(
            request.query_params.get("limit", 25), before=request.query_params.get("before")
        )
        return JSONResponse(page.to_dict())
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aiostream.connection import Connection, connect
from aiostream.exceptions import (
    ActivityConflictError,
    ActivityNotFoundError,
    AiostreamError,
    ConflictError,
    StorageTimeoutError,
    StorageUnavailableError,
    ValidationError,
)
from aiostream.feeds.base import BaseFeed
from aiostream.manager import Manager
from aiostream.realtime import FeedUpdate
from aiostream.settings import Settings

__all__ = [
    "ERROR_STATUSES",
    "ErrorResponse",
    "FeedApp",
    "KEEP_ALIVE",
    "RETRY_MS",
    "SSE_HEADERS",
    "SSE_MEDIA_TYPE",
    "SSE_TASK_NAME",
    "error_response",
    "sse_events",
]

logger = logging.getLogger("aiostream.web")

T = TypeVar("T")
M = TypeVar("M", bound=Manager)

# -- Server-Sent Events --------------------------------------------------------------------

#: Seconds without an update before :func:`sse_events` sends a comment: proxies close idle
#: connections, and a write is how a server notices a client that left without a word.
KEEP_ALIVE = 15.0
#: Milliseconds the browser's ``EventSource`` waits before reconnecting a dropped stream.
RETRY_MS = 3000
#: The media type of an event stream.
SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"
#: Headers of an event stream: never cached, nor buffered by a proxy (nginx reads
#: ``X-Accel-Buffering``), or the events would arrive late, all at once.
SSE_HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: The tasks reading the subscriptions are named ``events of <feed key>`` (in a dump of
#: the tasks, and for tests that check none is left behind).
SSE_TASK_NAME = "events of"

_Tagged = tuple[str, FeedUpdate]  # (the feed's name in the stream, its update)


def sse_events(
    feeds: Mapping[str, BaseFeed[Any]],
    *,
    keep_alive: float = KEEP_ALIVE,
    retry: int | None = RETRY_MS,
    comment: str | None = None,
) -> AsyncGenerator[str, None]:
    """The updates of ``feeds`` as Server-Sent Events, in text chunks to stream.

    The first chunk (a ``comment`` line if given, a ``retry:`` line if ``retry`` is not
    None) is sent once every subscription is open, so a write made after it reaches
    the stream. Then one chunk per update::

        event: update
        data: {"feed": "...", "kind": "added", "activity_ids": ["7"], ..., "name": "feed"}

    (:meth:`FeedUpdate.to_dict <aiostream.realtime.FeedUpdate.to_dict>` plus ``"name"``,
    the feed's key in ``feeds``), and a ``: keep-alive`` comment after ``keep_alive``
    seconds without one. An update is a notice, not the data: the client reads the feed
    it names; a ``"gap"`` says updates were lost (read everything again). The stream
    ends only when every subscription ends (the storage closed). It has no ``id:``
    lines: a reconnecting client reads its feeds again rather than replaying.

    Each feed's subscription is read by a task of its own (named :data:`SSE_TASK_NAME`
    and the feed's key), which passes its updates on through an unbuffered memory
    stream: a client that reads slowly leaves them in the subscriptions' buffers, which
    overflow into one ``gap`` instead of growing.

    Leaving the generator (``aclose()``, a cancellation) closes the subscriptions and
    ends the tasks. Close it in the task that iterates it, as every async generator
    holding a task group: the adapters' responses
    (:class:`aiostream.web.starlette.EventStreamResponse`,
    :func:`aiostream.web.aiohttp.stream_events`) do.

    Args:
        feeds: The feeds to follow, by the name their events carry.
        keep_alive: Seconds of silence before a keep-alive comment (> 0).
        retry: The client's reconnection delay in ms; None sends no ``retry:`` line.
        comment: A comment for the first chunk (``": updates of user 1"``).

    Raises:
        ValidationError: naming ``feeds``, ``keep_alive`` or ``retry``, here and not at
            the first chunk, so a bad call fails before a response has started.
    """
    if not feeds:
        raise ValidationError("feeds", "give at least one feed to follow")
    for name, feed in feeds.items():
        if not isinstance(feed, BaseFeed):
            raise ValidationError(f"feeds[{name!r}]", f"expected a feed, got {feed!r}")
    if isinstance(keep_alive, bool) or not isinstance(keep_alive, int | float) or keep_alive <= 0:
        raise ValidationError("keep_alive", f"expected seconds > 0, got {keep_alive!r}")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0):
        raise ValidationError("retry", f"expected milliseconds >= 0 or None, got {retry!r}")
    first = f": {comment}\n" if comment is not None else ""
    first += f"retry: {retry}\n" if retry is not None else ""
    return _events(dict(feeds), keep_alive, (first or ":\n") + "\n")


async def _events(
    feeds: dict[str, BaseFeed[Any]], keep_alive: float, first: str
) -> AsyncGenerator[str, None]:
    send, receive = anyio.create_memory_object_stream[_Tagged]()
    with receive:
        async with anyio.create_task_group() as tasks:
            try:
                async with send:
                    for name, feed in feeds.items():
                        task = f"{SSE_TASK_NAME} {feed.key}"
                        await tasks.start(_forward, feed, name, send.clone(), name=task)
                yield first
                while (chunk := await _next_chunk(receive, keep_alive)) is not None:
                    yield chunk
            except GeneratorExit:
                # aclose(): leave quietly. Let out of the task group, GeneratorExit
                # would come back wrapped in an exception group.
                pass
            finally:
                tasks.cancel_scope.cancel()


async def _forward(
    feed: BaseFeed[Any],
    name: str,
    send: MemoryObjectSendStream[_Tagged],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Pass ``feed``'s updates on, tagged with ``name``; started once subscribed."""
    async with send, feed.subscribe() as updates:
        task_status.started()
        async for update in updates:
            await send.send((name, update))


async def _next_chunk(receive: MemoryObjectReceiveStream[_Tagged], keep_alive: float) -> str | None:
    """The next update as an event, a keep-alive comment after ``keep_alive`` seconds
    without one, or None once every subscription has ended.

    Its own function so that the timeout's cancel scope never spans a ``yield``.
    """
    with anyio.move_on_after(keep_alive):
        try:
            name, update = await receive.receive()
        except anyio.EndOfStream:
            return None
        data = json.dumps({**update.to_dict(), "name": name}, ensure_ascii=False)
        return f"event: update\ndata: {data}\n\n"
    return ": keep-alive\n\n"


# -- errors --------------------------------------------------------------------------------

#: The HTTP status of each aiostream exception a request can cause, most specific first
#: (the first ``isinstance`` match wins). Any other exception is the framework's 500.
ERROR_STATUSES: tuple[tuple[type[AiostreamError], int], ...] = (
    (ActivityConflictError, 409),  # an add naming a stored id with other content
    (ValidationError, 400),  # bad input, named: nothing was written
    (ActivityNotFoundError, 404),
    (ConflictError, 409),  # an optimistic update given up under contention: retry
    (StorageUnavailableError, 503),
    (StorageTimeoutError, 504),
)
# 5xx messages would name internal servers ("Redis at 10.0.0.5:6379 is unavailable"): the
# client gets these, the log gets the exception.
_HIDDEN = {
    409: "the feed is busy: try again",
    503: "a storage server is unavailable: try again later",
    504: "a storage server did not answer in time: try again later",
}


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An HTTP error answer: a status and a JSON body.

    ``body`` is ``{"error": {"type": ..., "field": ..., "message": ...}}``: ``type`` the
    exception's class name, ``field`` the input at fault (a
    :class:`~aiostream.exceptions.ValidationError`'s, else None) and ``message`` what is
    wrong, without the field's prefix.
    """

    status: int
    body: dict[str, Any] = field(default_factory=dict)

    def json(self) -> bytes:
        """The body as UTF-8 JSON."""
        return json.dumps(self.body, ensure_ascii=False).encode()


def error_response(exc: BaseException) -> ErrorResponse | None:
    """The HTTP answer of ``exc`` (:data:`ERROR_STATUSES`), or None when it has none (a
    bug or an outage the framework answers with a 500).

    A :class:`~aiostream.exceptions.ValidationError` is a 400 naming its field, so
    ``feed.page(limit="abc")`` answers ``{"error": {"field": "limit", ...}}``. The
    messages of storage errors (409, 503, 504) name internal servers and keys: the
    client gets a fixed message, and the exception is logged at WARNING on the
    ``aiostream.web`` logger.

    Example::

        >>> from aiostream import ValidationError
        >>> reply = error_response(ValidationError("limit", "expected an int, got 'abc'"))
        >>> reply.status, reply.body["error"]["field"], reply.body["error"]["message"]
        (400, 'limit', "expected an int, got 'abc'")
    """
    status = next((status for cls, status in ERROR_STATUSES if isinstance(exc, cls)), None)
    if status is None:
        return None
    name = type(exc).__name__
    if status in _HIDDEN and not isinstance(exc, ActivityConflictError):
        logger.warning("answered %d for %s: %s", status, name, exc)
        return ErrorResponse(status, _body(name, None, _HIDDEN[status]))
    field = getattr(exc, "field", None)
    message = str(exc)
    if isinstance(field, str):
        message = message.removeprefix(f"{field}: ")
    return ErrorResponse(status, _body(name, field, message))


def _body(kind: str, field: str | None, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "field": field, "message": message}}


# -- the application's feeds -----------------------------------------------------------------


class FeedApp(Generic[T]):
    """What an application's lifespan opens for its handlers, with its type.

    Created once with the application; its :meth:`lifespan` opens the value (the
    Manager, or a service of your own around it) at startup and closes it at shutdown,
    and handlers get it from :meth:`get` typed as it is, where ``app.state.manager``
    is ``Any``. :meth:`connect` builds the usual one, a Manager on
    :func:`aiostream.connect`.

    Args:
        open: Opens the value: an async context manager factory, entered once per
            lifespan.

    Example::

        feeds = FeedApp.connect(PinManager, Settings.from_env(), backends=["redis"])
        app = FastAPI(lifespan=feeds.lifespan)
        Manager = Annotated[PinManager, Depends(feeds.get)]   # FastAPI
        manager = feeds.get()                                  # anywhere else
    """

    def __init__(self, open: Callable[[], AbstractAsyncContextManager[T]]) -> None:
        if not callable(open):
            raise ValidationError("open", f"expected a callable, got {open!r}")
        self._open = open
        self._value: T | None = None
        self._entered = False  # the lifespan is running (opening, open or closing)
        self._is_open = False  # and the value is there
        self._connection: Connection | None = None

    @classmethod
    def connect(
        cls,
        manager_class: type[M],
        settings: Settings | None = None,
        *,
        backends: Iterable[str] = (),
        arq: bool = False,
        dispatcher_options: dict[str, Any] | None = None,
        ping: bool = True,
        **manager_options: Any,
    ) -> FeedApp[M]:
        """A Manager on :func:`aiostream.connect`: the lifespan enters ``connect(
        settings, backends=..., arq=..., dispatcher_options=...)``, pings it (a wrong URL
        stops the application at startup, not at its first request; ``ping=False``
        skips it) and builds ``manager_class(dispatcher=..., **manager_options)``.
        :attr:`connection` is the entered connection (``await
        feeds.connection.ping()`` is a readiness probe).
        """
        holder: FeedApp[M]

        @asynccontextmanager
        async def open_manager() -> AsyncIterator[M]:
            opened = connect(
                settings, backends=backends, arq=arq, dispatcher_options=dispatcher_options
            )
            async with opened as connection:
                if ping:
                    await connection.ping()
                holder._connection = connection
                try:
                    yield connection.manager(manager_class, **manager_options)
                finally:
                    holder._connection = None

        holder = FeedApp(open_manager)
        return holder

    @property
    def is_open(self) -> bool:
        """Whether the lifespan is running (:meth:`get` answers)."""
        return self._is_open

    def get(self) -> T:
        """The value the lifespan opened (a FastAPI dependency as it is:
        ``Depends(feeds.get)``).

        Raises:
            AttributeError: the lifespan is not running (not started yet, or shut down:
                a closed Manager must not serve requests), as ``app.state.manager``
                would be missing.
        """
        if not self._is_open:
            raise AttributeError(
                "the FeedApp is not open: pass its lifespan to the application "
                "(lifespan=feeds.lifespan), or enter `async with feeds.lifespan():`"
            )
        return self._value  # type: ignore[return-value]

    @property
    def connection(self) -> Connection:
        """The entered connection of a :meth:`connect` FeedApp.

        Raises:
            AttributeError: not open, or not made by :meth:`connect`.
        """
        if self._connection is None:
            raise AttributeError("no connection: the FeedApp is not open, or not a connect()")
        return self._connection

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Open the value for the application's lifetime, close it on exit.

        Takes the application and yields nothing, so it is a Starlette or FastAPI
        ``lifespan=`` as it is; :func:`aiostream.web.aiohttp.cleanup_ctx` adapts it to
        aiohttp.

        Raises:
            RuntimeError: it is open already (one lifespan at a time: a second would
                replace what the first one's handlers use).
        """
        if self._entered:
            raise RuntimeError("this FeedApp is open already: one lifespan at a time")
        self._entered = True  # before the await: a concurrent second entry fails too
        try:
            async with self._open() as value:
                self._value, self._is_open = value, True
                try:
                    yield
                finally:
                    self._value, self._is_open = None, False
        finally:
            self._entered = False

    def __repr__(self) -> str:
        state = "open" if self._is_open else "closed"
        return f"<FeedApp {state}: {self._value!r}>"
