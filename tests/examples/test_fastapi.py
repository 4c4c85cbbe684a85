"""What the FastAPI service adds to the shared API: its OpenAPI description (``/docs``)
and the dependency that hands endpoints the service."""

from __future__ import annotations

import httpx
import pytest

from examples.web.api import ROUTES
from examples.web.service import Config
from tests.examples.conftest import serve

pytestmark = [pytest.mark.anyio, pytest.mark.memory]


async def test_openapi_lists_every_route_with_its_parameters() -> None:
    async with serve("fastapi", Config()) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        paths = response.json()["paths"]
        for route in ROUTES:
            operation = paths[route.path][route.method.lower()]
            names = [p["name"] for p in operation.get("parameters", [])]
            expected = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
            assert names == expected, route.path
            assert ("requestBody" in operation) == (route.method in ("POST", "PATCH")), route
        assert len({(p, m) for p, ops in paths.items() for m in ops}) == len(ROUTES)


async def test_endpoints_need_the_lifespan_service() -> None:
    from fastapi import Request

    from examples.web.fastapi_app import create_app, get_service

    app = create_app(Config())
    request = Request({"type": "http", "app": app})
    with pytest.raises(AttributeError):
        get_service(request)  # not started: no service on app.state
    async with app.router.lifespan_context(app):
        service = get_service(request)
        assert service.backend == "memory"
        await service.ready()
    with pytest.raises(AttributeError):
        get_service(request)  # shut down: the closed service is gone
