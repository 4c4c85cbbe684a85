"""Three example web services on aiostream: on Starlette, on aiohttp and on FastAPI.

All serve the same JSON API and HTML page over one shared core, so the framework
modules only route:

- :mod:`examples.web.feeds` — feed classes, the Manager, the follow graph (memory);
- :mod:`examples.web.redis_backend` — the same on Redis;
- :mod:`examples.web.render` — JSON of activities, aggregated groups and notifications;
- :mod:`examples.web.service` — configuration, the lifespan (one :func:`aiostream.connect`
  for storages, dispatcher and readiness ping), the operations;
- :mod:`examples.web.api` — the endpoints, written once, among them the live updates
  (Server-Sent Events: :func:`examples.web.api.events`), and ``page.html``;
- :mod:`examples.web.starlette_app`, :mod:`examples.web.aiohttp_app`,
  :mod:`examples.web.fastapi_app` — the routing, on the adapters of :mod:`aiostream.web`
  (errors, event streams, the lifespan);
- :mod:`examples.web.worker` — arq workers for arq mode.

Start one with ``python -m examples.web.starlette_app --port 8000``,
``python -m examples.web.aiohttp_app --port 8001`` or
``python -m examples.web.fastapi_app --port 8002`` (or ``nox -s serve -- fastapi --port
8000``) and open ``/users/1``.
"""
