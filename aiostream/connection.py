"""An application's aiostream resources in one ``async with``: storages, dispatcher, ping.

A web app or a worker needs three things around its feeds: a storage registry entered
for its lifetime (so feeds find their storages), a dispatcher for the Manager's fanout
(in this process, or arq jobs), and a readiness check. :func:`connect` opens all three
and closes what it opened on exit::

    async with aiostream.connect(Settings.from_env(), backends=["redis"], arq=True) as feeds:
        await feeds.ping()                    # readiness: every backend and the queue Redis
        manager = feeds.manager(PinManager)   # PinManager(dispatcher=feeds.dispatcher)
        await manager.add_user_activity(1, activity)

In a Starlette or FastAPI lifespan, ``yield`` inside the block (and keep the
:class:`Connection` on ``app.state``); in aiohttp, enter it in a ``cleanup_ctx``.

Without settings, a connection builds each server from the environment only where its
variable is set (``STREAM_REDIS_URL``, ``STREAM_CASSANDRA_HOSTS``; the queue Redis from
``STREAM_ARQ_REDIS_URL`` or ``STREAM_REDIS_URL``), and raises
:class:`~aiostream.exceptions.ConfigurationError` on entry for a named backend or the
queue Redis that nothing configures: a connection never reaches a server on 127.0.0.1
that nobody named. The memory backend needs nothing.

This module is the top of the package: it imports the storage registry and, lazily
(arq is an optional extra), :mod:`aiostream.tasks`; nothing below imports it back.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aiostream._jobs import queue_redis_url
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import Dispatcher, InProcessDispatcher
from aiostream.settings import Settings
from aiostream.storage.base import FeedStorage
from aiostream.storage.registry import Storages

if TYPE_CHECKING:
    from aiostream.manager import Manager

__all__ = ["Connection", "connect"]

M = TypeVar("M", bound="Manager")


class Connection:
    """The storages and the dispatcher of one application, opened and closed together.

    Built by :func:`connect`; use it as an async context manager. While entered, its
    :attr:`storages` is the registry feeds without ``storage=`` resolve theirs in.

    Attributes:
        settings: What storages (and the arq pool) are built from; None when none was
            given (each server from its environment variable, when set).
        storages: The registry entered for the connection's lifetime.
        dispatcher: The Manager's dispatcher: an
            :class:`~aiostream.tasks.ArqDispatcher` when connected with ``arq=True``,
            else an :class:`~aiostream.fanout.InProcessDispatcher`. Set on entry.
        backends: The ``"backend"`` / ``"backend:server"`` names :meth:`ping` checks.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backends: Iterable[str] = (),
        arq: bool = False,
        storages: Storages | None = None,
        dispatcher_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(backends, str):
            raise ConfigurationError(
                f"backends is a list of names, got the string {backends!r} (say [{backends!r}])"
            )
        # No Settings.from_env() here: its defaults would name 127.0.0.1 for servers
        # nobody configured. The registry reads each backend's variable when it is set.
        self.settings = settings
        self.backends = tuple(backends)
        self.storages = storages if storages is not None else Storages(settings)
        self._arq = arq
        self._dispatcher_options = dict(dispatcher_options or {})
        self._dispatcher: Dispatcher | None = None
        self._entered = False

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher opened on entry.

        Raises:
            ConfigurationError: the connection has not been entered.
        """
        if self._dispatcher is None:
            raise ConfigurationError(
                "enter the connection first: async with aiostream.connect(...) as feeds"
            )
        return self._dispatcher

    def storage(self, backend: str, server: str = "default") -> FeedStorage:
        """The storage of ``backend`` and ``server`` (opened on first use)."""
        return self.storages.get(backend, server)

    def manager(self, manager_class: type[M], **options: Any) -> M:
        """``manager_class(dispatcher=self.dispatcher, **options)``."""
        return manager_class(dispatcher=self.dispatcher, **options)

    async def ping(self) -> None:
        """Check that every named backend and the queue Redis answer (a readiness probe).

        Raises:
            StorageUnavailableError: a server is down or refused the connection (the
                message names it).
            StorageTimeoutError: a server did not answer in time.
            SchemaError: Cassandra answers but the keyspace or a table is missing.
        """
        for storage in self._named_storages():
            await storage.ping()
        ping = getattr(self.dispatcher, "ping", None)
        if ping is not None:
            await ping()

    async def __aenter__(self) -> Connection:
        if self._entered:
            raise ConfigurationError("this connection is already entered")
        self._named_storages()  # unknown backends or servers fail here, not later
        if self._arq:
            self._queue_url()  # and so does a queue Redis nothing configures
        await self.storages.__aenter__()
        try:
            self._dispatcher = await self._open_dispatcher()
        except BaseException:
            await self.storages.__aexit__(None, None, None)
            raise
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the dispatcher and the storages this connection opened."""
        dispatcher, self._dispatcher = self._dispatcher, None
        try:
            close = getattr(dispatcher, "aclose", None)
            if close is not None:
                await close()
        finally:
            if self._entered:
                self._entered = False
                await self.storages.__aexit__(None, None, None)

    def _named_storages(self) -> list[FeedStorage]:
        """The storages of :attr:`backends` (``"backend"`` or ``"backend:server"``)."""
        storages = []
        for name in self.backends:
            backend, _, server = name.partition(":")
            storages.append(self.storages.get(backend, server or "default"))
        return storages

    async def _open_dispatcher(self) -> Dispatcher:
        if not self._arq:
            return InProcessDispatcher(**self._dispatcher_options)
        # Imported here: arq is an extra, and `import aiostream` never imports it.
        tasks = importlib.import_module("aiostream.tasks")
        dispatcher: Dispatcher = await tasks.ArqDispatcher.connect(
            self._queue_url(), **self._dispatcher_options
        )
        return dispatcher

    def _queue_url(self) -> str:
        return queue_redis_url(self.settings, "aiostream.connect(..., arq=True)")

    def __repr__(self) -> str:
        kind = "arq" if self._arq else "in-process"
        return f"<Connection backends={list(self.backends)} dispatcher={kind}>"


def connect(
    settings: Settings | None = None,
    *,
    backends: Iterable[str] = (),
    arq: bool = False,
    storages: Storages | None = None,
    dispatcher_options: dict[str, Any] | None = None,
) -> Connection:
    """Everything an application needs around its feeds, for ``async with``.

    Args:
        settings: Where storages and the arq pool are built from. None: each server
            from the environment, only when its variable is set (``STREAM_REDIS_URL``,
            ``STREAM_CASSANDRA_HOSTS``; the queue Redis ``STREAM_ARQ_REDIS_URL`` or
            ``STREAM_REDIS_URL``), else a
            :class:`~aiostream.exceptions.ConfigurationError` on entry (for the
            ``backends`` named and the queue) or at a feed's first use of it.
        backends: The storages your feeds use, as ``"redis"``, ``"cassandra"``,
            ``"redis:analytics"`` (a named server): checked on entry (an unknown name is
            a :class:`~aiostream.exceptions.ConfigurationError` at once) and by
            :meth:`Connection.ping`. Feeds may use other storages too; those open on
            first use and close with the connection as well.
        arq: Dispatch fanout as arq jobs (an
            :class:`~aiostream.tasks.ArqDispatcher` to ``settings.arq_redis_url`` or
            ``settings.redis_url``; needs the ``arq`` extra) instead of in-process.
        storages: A registry to enter instead of a new one built from ``settings``.
        dispatcher_options: Keyword arguments of the dispatcher (``job_size``,
            ``max_in_flight``, ... for arq; ``max_concurrency`` in-process).

    Example::

        async with aiostream.connect(settings, backends=["redis"], arq=True) as feeds:
            await feeds.ping()
            manager = feeds.manager(PinManager)
    """
    return Connection(
        settings,
        backends=backends,
        arq=arq,
        storages=storages,
        dispatcher_options=dispatcher_options,
    )
