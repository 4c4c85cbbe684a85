"""The HTTP API of the example services, written once for every framework.

Each :class:`Route` is a method, a path (``{name}`` placeholders, a syntax Starlette and
aiohttp share) and a handler taking an :class:`ApiRequest` (path parameters, query
string, raw body) and returning an :class:`ApiResponse`. The framework modules (Starlette,
aiohttp, FastAPI) only turn their requests into ``ApiRequest`` and ``ApiResponse`` into
theirs; errors are aiostream's exceptions, which :mod:`aiostream.web`'s adapters answer
(a :class:`~aiostream.ValidationError` is a 400 naming its field).

Endpoints (``{id}`` is a user id, a positive integer):

=============================================== ============================================
``GET  /``                                       redirects to ``/users/1``
``GET  /users/{id}``                             the HTML page of a user's feeds
``GET  /healthz``                                ``{"status": "ok", "backend": "memory"}``
``GET  /ready``                                  ``{"ready": true}``; 503 when a server is down
``GET  /api/users/{id}``                         the user, whom they follow, their followers
``POST /api/users/{id}/pins``                    pin ``{"board": str, "title": str}`` (201)
``GET  /api/users/{id}/pins``                    the user's own pins
``PATCH /api/users/{id}/pins/{pin_id}``          edit ``{"board": str, "title": str}``
``DELETE /api/users/{id}/pins/{pin_id}``         delete a pin from every feed
``POST /api/users/{id}/following``               follow ``{"target_id": int}``
``DELETE /api/users/{id}/following/{target_id}`` unfollow
``GET  /api/users/{id}/feed``                    flat feed: pins of the people followed
``GET  /api/users/{id}/aggregated``              the same, grouped per verb and day
``GET  /api/users/{id}/notifications``           notification groups, with the counts
``GET  /api/users/{id}/notifications/counts``    ``{"unseen_count": n, "unread_count": m}``
``POST /api/users/{id}/notifications/mark``      ``{"seen": bool, "read": bool, "ids": [...]}``
``GET  /api/users/{id}/events``                  live updates of the three feeds (SSE, below)
=============================================== ============================================

Feed reads take ``?limit=`` (1-100, default 10) and ``?before=<cursor>``; they answer
``{"items": [...], "next": cursor or null}`` (:meth:`feed.page
<aiostream.feeds.base.BaseFeed.page>`). Ids and cursors are strings of digits. Errors are
``{"error": {"type": ..., "field": ..., "message": ...}}`` with a 4xx status
(:func:`aiostream.web.error_response`).

``/events`` is a ``text/event-stream`` (Server-Sent Events, for the browser's
``EventSource``) that never ends by itself: a ``retry:`` line first, then one ``update``
event per write to the user's flat, aggregated or notification feed, whose data is
:meth:`FeedUpdate.to_dict <aiostream.realtime.FeedUpdate.to_dict>` plus ``"name"``, the
feed's name in the URLs above::

    event: update
    data: {"feed": "...", "kind": "added", "activity_ids": ["7"], "groups": [], "name": "feed"}

(notification updates also carry ``"unseen"`` and ``"unread"``; a ``"gap"`` says updates
were lost: read everything again), and a ``: keep-alive`` comment after 15 s without one.
An update is a notice: the page reads the feed it names (:func:`aiostream.web.sse_events`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiostream import ActivityNotFoundError, StorageError, ValidationError
from aiostream.ids import MAX_ID
from aiostream.web import KEEP_ALIVE, RETRY_MS, SSE_MEDIA_TYPE, SSE_TASK_NAME, sse_events
from examples.web.render import activity_json, group_json, notification_json, user_json
from examples.web.service import FEED_NAMES, FeedService

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "EVENT_FEEDS",
    "KEEP_ALIVE",
    "NotFound",
    "RETRY_MS",
    "ROUTES",
    "Route",
    "SHUTDOWN_GRACE",
    "events",
]

MAX_USER_ID = 2**53 - 1  # the largest integer a JavaScript number holds exactly
MAX_PAGE = 100
DEFAULT_PAGE = 10
#: The feeds an event stream follows, by their names in the URLs (and in its events).
EVENT_FEEDS = ("feed", "aggregated", "notifications")
#: The tasks of event streams are named ``events of <feed key>``.
TASK_NAME = SSE_TASK_NAME
#: Seconds a server stopping waits for requests in progress before it cancels them: an
#: event stream never ends by itself, so without a limit a page left open would hold the
#: shutdown forever (uvicorn) or for a minute (aiohttp).
SHUTDOWN_GRACE = 2


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A request, as the handlers see it."""

    path_params: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A response, for the framework to send."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Instead of ``body``: chunks to send as they come (an event stream), which the
    #: adapters of :mod:`aiostream.web` send and close.
    stream: AsyncGenerator[str, None] | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200) -> ApiResponse:
        """A JSON response."""
        return cls(status, json.dumps(data, ensure_ascii=False).encode())

    @classmethod
    def html(cls, text: str) -> ApiResponse:
        """An HTML page."""
        return cls(200, text.encode(), "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str) -> ApiResponse:
        """A 303 redirect."""
        return cls(303, b"", "text/plain", {"Location": location})

    @classmethod
    def event_stream(cls, stream: AsyncGenerator[str, None]) -> ApiResponse:
        """Server-Sent Events (their headers are the adapters')."""
        return cls(200, b"", SSE_MEDIA_TYPE, stream=stream)


class NotFound(ActivityNotFoundError):
    """A 404 naming the path parameter at fault (``{"error": {"field": "pin_id", ...}}``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


Handler = Callable[[FeedService, ApiRequest], Awaitable[ApiResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: ``method path`` handled by ``handler``."""

    method: str
    path: str
    handler: Handler

    @property
    def name(self) -> str:
        """The handler's name (route names in both frameworks)."""
        return self.handler.__name__


# -- input ------------------------------------------------------------------------------------


def _int(value: object, name: str, *, low: int, high: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ValidationError(name, f"must be between {low} and {high}, got {value}")
    return value


def _user_id(request: ApiRequest, name: str = "user_id") -> int:
    return _int(request.path_params.get(name), name, low=1, high=MAX_USER_ID)


def _body(request: ApiRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise ValidationError("body", "is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("body", f"expected a JSON object, got {type(data).__name__}")
    return data


def _text(data: Mapping[str, Any], name: str, *, required: bool, max_length: int) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(name, "is required")
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, f"expected a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ValidationError(name, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(name, f"at most {max_length} characters, got {len(value)}")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(name, f"expected true or false, got {value!r}")
    return value


# -- handlers ---------------------------------------------------------------------------------


@functools.cache
def _page_html() -> str:
    return Path(__file__).with_name("page.html").read_text(encoding="utf-8")


async def index(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Redirect to the page of user 1."""
    return ApiResponse.redirect("/users/1")


async def page(service: FeedService, request: ApiRequest) -> ApiResponse:
    """The HTML page (static: its script reads the user id from the URL)."""
    _user_id(request)
    return ApiResponse.html(_page_html())


async def health(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Liveness and the backend in use."""
    return ApiResponse.json({"status": "ok", "backend": service.backend})


async def ready(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Readiness: ``{"ready": true}`` when every server answers a ping, else a 503
    ``{"ready": false, "error": ...}`` naming the one that did not."""
    try:
        await service.ready()
    except StorageError as exc:
        # A probe's answer, not a failed request: the error is the body, never raised.
        error = f"{type(exc).__name__}: {exc}"
        return ApiResponse.json({"ready": False, "error": error}, status=503)
    return ApiResponse.json({"ready": True})


async def profile(service: FeedService, request: ApiRequest) -> ApiResponse:
    """The user, whom they follow and who follows them."""
    user_id = _user_id(request)
    following = await service.graph.following(user_id)
    followers = await service.graph.followers(user_id)
    return ApiResponse.json(
        {
            "user": user_json(user_id),
            "following": [user_json(u) for u in following],
            "followers": [user_json(u) for u in followers],
        }
    )


async def post_pin(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Pin something; it fans out to the followers' feeds."""
    user_id = _user_id(request)
    data = _body(request)
    board = _text(data, "board", required=True, max_length=60)
    title = _text(data, "title", required=False, max_length=200)
    pin = await service.post_pin(user_id, board=board, title=title)
    return ApiResponse.json({"pin": activity_json(pin)}, status=201)


def _pin_id(request: ApiRequest) -> int:
    return _int(request.path_params.get("pin_id"), "pin_id", low=0, high=MAX_ID)


async def edit_pin(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Change a pin's board and / or title; every feed showing it shows the change."""
    user_id, pin_id = _user_id(request), _pin_id(request)
    data = _body(request)
    changes = {}
    if data.get("board") is not None:
        changes["board"] = _text(data, "board", required=True, max_length=60)
    if data.get("title") is not None:
        changes["title"] = _text(data, "title", required=False, max_length=200)
    if not changes:
        raise ValidationError("title", "give a new title or board")
    pin = await service.edit_pin(user_id, pin_id, changes)
    if pin is None:
        raise NotFound("pin_id", f"user {user_id} has no pin {pin_id}")
    return ApiResponse.json({"pin": activity_json(pin)})


async def delete_pin(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Delete a pin: it leaves the user's feed and every feed it was fanned out to."""
    user_id, pin_id = _user_id(request), _pin_id(request)
    if not await service.delete_pin(user_id, pin_id):
        raise NotFound("pin_id", f"user {user_id} has no pin {pin_id}")
    return ApiResponse.json({"deleted": str(pin_id)})


async def follow(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Follow ``target_id`` (idempotent: ``changed`` tells whether anything happened)."""
    user_id = _user_id(request)
    target_id = _int(_body(request).get("target_id"), "target_id", low=1, high=MAX_USER_ID)
    if target_id == user_id:
        raise ValidationError("target_id", "a user cannot follow themselves")
    changed = await service.follow(user_id, target_id)
    return ApiResponse.json(
        {
            "user": user_json(user_id),
            "target": user_json(target_id),
            "following": True,
            "changed": changed,
        }
    )


async def unfollow(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Unfollow ``target_id``; their pins leave the user's feeds."""
    user_id = _user_id(request)
    target_id = _user_id(request, "target_id")
    changed = await service.unfollow(user_id, target_id)
    return ApiResponse.json(
        {
            "user": user_json(user_id),
            "target": user_json(target_id),
            "following": False,
            "changed": changed,
        }
    )


async def _read(
    service: FeedService, request: ApiRequest, name: str, render: Callable[[Any], Any]
) -> dict[str, Any]:
    feed = service.feed(_user_id(request), name)
    limit, before = request.query.get("limit", DEFAULT_PAGE), request.query.get("before")
    return (await feed.page(limit, before=before, max_limit=MAX_PAGE)).to_dict(render)


async def own_pins(service: FeedService, request: ApiRequest) -> ApiResponse:
    """The user's own pins, newest first."""
    return ApiResponse.json(await _read(service, request, FEED_NAMES["pins"], activity_json))


async def flat_feed(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Pins of the people the user follows, newest first."""
    return ApiResponse.json(await _read(service, request, FEED_NAMES["feed"], activity_json))


async def aggregated_feed(service: FeedService, request: ApiRequest) -> ApiResponse:
    """The same pins grouped per verb and day, newest group first."""
    name = FEED_NAMES["aggregated"]
    return ApiResponse.json(await _read(service, request, name, group_json))


async def notifications(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Notification groups, newest first, with the unseen and unread counts."""
    name = FEED_NAMES["notifications"]
    data = await _read(service, request, name, notification_json)
    data.update(await service.counts(_user_id(request)))
    return ApiResponse.json(data)


async def notification_counts(service: FeedService, request: ApiRequest) -> ApiResponse:
    """``{"unseen_count": n, "unread_count": m}``."""
    return ApiResponse.json(await service.counts(_user_id(request)))


async def mark_notifications(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Mark groups (``ids``, or all when absent) seen and / or read; the new counts."""
    user_id = _user_id(request)
    data = _body(request)
    seen, read = _flag(data, "seen"), _flag(data, "read")
    if not (seen or read):
        raise ValidationError("seen", "set seen or read (or both) to true")
    raw_ids = data.get("ids")
    ids: list[int] | None = None
    if raw_ids is not None:
        if not isinstance(raw_ids, list):
            raise ValidationError("ids", f"expected a list of ids, got {type(raw_ids).__name__}")
        ids = [_int(i, f"ids[{n}]", low=0, high=MAX_ID) for n, i in enumerate(raw_ids)]
    return ApiResponse.json(await service.mark(user_id, ids, seen=seen, read=read))


# -- live updates (Server-Sent Events) --------------------------------------------------------


async def live_updates(service: FeedService, request: ApiRequest) -> ApiResponse:
    """Updates of the user's flat, aggregated and notification feeds as they happen
    (``text/event-stream``: :func:`events`)."""
    return ApiResponse.event_stream(events(service, _user_id(request)))


def events(
    service: FeedService, user_id: int, *, keep_alive: float = KEEP_ALIVE
) -> AsyncGenerator[str, None]:
    """The Server-Sent Events of ``user_id``'s feeds (:data:`EVENT_FEEDS`), as text chunks
    (:func:`aiostream.web.sse_events`: the subscriptions are open before the first one)."""
    feeds = {name: service.feed(user_id, FEED_NAMES[name]) for name in EVENT_FEEDS}
    return sse_events(feeds, keep_alive=keep_alive, comment=f"updates of user {user_id}")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", index),
    Route("GET", "/healthz", health),
    Route("GET", "/ready", ready),
    Route("GET", "/users/{user_id}", page),
    Route("GET", "/api/users/{user_id}", profile),
    Route("POST", "/api/users/{user_id}/pins", post_pin),
    Route("GET", "/api/users/{user_id}/pins", own_pins),
    Route("PATCH", "/api/users/{user_id}/pins/{pin_id}", edit_pin),
    Route("DELETE", "/api/users/{user_id}/pins/{pin_id}", delete_pin),
    Route("POST", "/api/users/{user_id}/following", follow),
    Route("DELETE", "/api/users/{user_id}/following/{target_id}", unfollow),
    Route("GET", "/api/users/{user_id}/feed", flat_feed),
    Route("GET", "/api/users/{user_id}/aggregated", aggregated_feed),
    Route("GET", "/api/users/{user_id}/notifications", notifications),
    Route("GET", "/api/users/{user_id}/notifications/counts", notification_counts),
    Route("POST", "/api/users/{user_id}/notifications/mark", mark_notifications),
    Route("GET", "/api/users/{user_id}/events", live_updates),
)
