"""The example service on FastAPI.

Start it with::

    nox -s serve -- fastapi --port 8000
    python -m examples.web.fastapi_app --port 8000      # in memory
    python -m examples.web.fastapi_app --port 8000 --redis-url redis://127.0.0.1:6379/0

(without ``--port`` it listens on 8002, beside the Starlette and aiohttp services), then
open http://127.0.0.1:8000/users/1, or http://127.0.0.1:8000/docs for the endpoints.
``uvicorn --factory examples.web.fastapi_app:create_app`` works too (configured by
``AIOSTREAM_REDIS_URL`` / ``AIOSTREAM_ARQ``).

The lifespan opens the service (:func:`~examples.web.service.open_service`: one
:func:`aiostream.connect` for storages and dispatcher, pinged at startup) in a
:class:`~aiostream.web.FeedApp` kept on ``app.state``; the :func:`get_service` dependency
hands it to every endpoint, typed. The endpoints are those of :mod:`examples.web.api`, as
on Starlette and aiohttp, so the three services answer their API alike (the same tests
run against all three); their replies become responses as on Starlette
(:func:`~examples.web.starlette_app.to_response`, which streams ``GET
/api/users/{id}/events``), and :func:`aiostream.web.starlette.exception_handlers`
answers aiostream's errors.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from aiostream.web import FeedApp
from aiostream.web.starlette import exception_handlers
from examples.web.api import ROUTES, SHUTDOWN_GRACE, Route
from examples.web.service import Config, FeedService, open_service, parse_args
from examples.web.starlette_app import api_request, to_response

__all__ = ["Service", "create_app", "get_service", "main"]

_PLACEHOLDER = re.compile(r"{(\w+)}")


def get_service(request: Request) -> FeedService:
    """The service the lifespan opened: a dependency, ``Depends(get_service)``.

    Args:
        request: The request (FastAPI passes it).

    Returns:
        The application's :class:`~examples.web.service.FeedService`.

    Raises:
        AttributeError: the lifespan is not running (:meth:`FeedApp.get
            <aiostream.web.FeedApp.get>`).
    """
    feeds: FeedApp[FeedService] = request.app.state.feeds
    return feeds.get()


Service = Annotated[FeedService, Depends(get_service)]
"""An endpoint parameter that receives the :class:`~examples.web.service.FeedService`."""


def _openapi(route: Route) -> dict[str, Any]:
    # The handlers read their input themselves (so that errors keep the shared
    # {"error": {"field", "message"}} shape), so FastAPI cannot infer it: describe the
    # path parameters and JSON bodies for /docs by hand.
    extra: dict[str, Any] = {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PLACEHOLDER.findall(route.path)
        ]
    }
    if route.method in ("POST", "PATCH"):
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return extra


def _endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    async def endpoint(request: Request, service: Service) -> Response:
        # FastAPI's responses are Starlette's.
        return to_response(await route.handler(service, await api_request(request)))

    return endpoint


def create_app(config: Config | None = None) -> FastAPI:
    """The FastAPI application (``config`` defaults to :meth:`Config.from_env`).

    Args:
        config: Memory, Redis or Redis with arq workers.

    Returns:
        The application; its lifespan opens the service and closes it at shutdown.
    """
    config = config if config is not None else Config.from_env()
    feeds = FeedApp(lambda: open_service(config))  # get() fails once it is closed
    app = FastAPI(
        title="aiostream example service",
        lifespan=feeds.lifespan,
        exception_handlers=exception_handlers(),
    )
    app.state.feeds = feeds
    for route in ROUTES:
        app.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            name=route.name,
            description=route.handler.__doc__ or "",
            openapi_extra=_openapi(route),
        )
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the application with uvicorn (``--host``, ``--port``, ``--redis-url``, ``--arq``).

    Args:
        argv: The command line (default: ``sys.argv[1:]``).
    """
    import uvicorn

    config, host, port = parse_args(
        argv, description="aiostream example service (FastAPI)", default_port=8002
    )
    uvicorn.run(create_app(config), host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_GRACE)


if __name__ == "__main__":
    main()
