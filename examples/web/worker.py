"""arq workers for the example services in arq mode.

With ``--arq`` (or ``AIOSTREAM_ARQ=1``) the services enqueue every fanout chunk and
follow / unfollow job on Redis instead of running them in the web process; a worker
runs them::

    AIOSTREAM_REDIS_URL=redis://127.0.0.1:6379/0 python -m arq examples.web.worker.WorkerSettings

(start as many as you like). The worker rebuilds the services' Manager
(:func:`make_manager`) and uses the same Redis for feeds and queue. Every job of this
example goes to one queue, ``aiostream:web``, so one kind of worker runs them all; a
service that puts inactive followers in ``FanoutPriority.LOW`` would give them a queue
and workers of their own (:class:`aiostream.tasks.Queues`).

Needs ``pip install "aiostream-feeds[redis,arq]"``.
"""

from __future__ import annotations

from typing import Any

from aiostream import Settings
from aiostream.tasks import Queues, worker_settings
from examples.web.redis_backend import RedisGraph, RedisPinManager
from examples.web.service import Config

__all__ = ["QUEUE", "QUEUES", "WorkerSettings", "create_worker_settings", "make_manager"]

QUEUE = "aiostream:web"
QUEUES = Queues(high=QUEUE, low=QUEUE, default=QUEUE)


def make_manager() -> RedisPinManager:
    """The Manager the jobs run with: the services' own, without a dispatcher (a worker
    carries out the jobs it is handed)."""
    return RedisPinManager(RedisGraph())


def create_worker_settings(redis_url: str | None = None, **options: Any) -> type:
    """arq worker settings for the example's queue on ``redis_url`` (default:
    ``AIOSTREAM_REDIS_URL``, then aiostream's ``STREAM_REDIS_URL``); ``options`` go to
    ``arq.Worker``."""
    redis_url = redis_url or Config.from_env().redis_url
    settings = Settings(redis_url=redis_url) if redis_url else Settings.from_env()
    return worker_settings(make_manager, queue=QUEUE, queues=QUEUES, settings=settings, **options)


WorkerSettings = create_worker_settings()
