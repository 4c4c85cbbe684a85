"""One way to reach a storage: a registry of named storages, opened and closed together.

Every feed class names the storage it uses by a backend (``storage_backend``:
``"memory"``, ``"redis"``, ``"cassandra"``) and a server name (``storage_server``,
``"default"`` unless set; ``RedisFeed.redis_server`` is the same thing under Stream
Framework's name). A feed built without ``storage=`` finds its storage in the *current*
:class:`Storages` when it makes a call:

* the one an application entered (``async with Storages(settings):`` in a web app's
  lifespan; arq workers built by :func:`aiostream.tasks.worker_settings` enter one at
  start-up), or
* when none is entered, the running event loop's own registry, built from
  :func:`configure`'s settings or :meth:`Settings.from_env` on first use: the Stream
  Framework way, ``PinFeed(13)`` with ``STREAM_REDIS_URL`` set. Connections belong to
  the loop that opened them, so each loop gets its own; :func:`close_default_storages`
  closes the running loop's.

A registry opens a storage the first time it is asked for one, and closes on exit only
the storages it opened (storages handed to it stay open). A backend is a name in
:data:`BACKENDS` mapped to the dotted path of a function ``(settings, server) ->
storage``; :func:`register_backend` adds one. A factory marked ``process_wide = True``
(the memory backend's: one storage for the whole process) is asked every time, and
what it returns is never closed by a registry. Nothing imports a backend's driver until
a feed of that backend is used.

Example::

    async with Storages(Settings.from_env()):   # in a web app's lifespan
        await PinFeed(13).add(activity)         # PinFeed(RedisFeed) resolves there
"""

from __future__ import annotations

import asyncio
import importlib
import weakref
from collections.abc import Callable, Mapping

from aiostream.exceptions import ConfigurationError
from aiostream.settings import Settings
from aiostream.storage.base import FeedStorage

__all__ = [
    "BACKENDS",
    "Storages",
    "close_default_storages",
    "configure",
    "current_storages",
    "default_storage",
    "register_backend",
]

StorageFactory = Callable[[Settings, str], FeedStorage]

BACKENDS: dict[str, str | StorageFactory] = {
    "memory": "aiostream.storage.memory:storage_from_settings",
    "redis": "aiostream.storage.redis:storage_from_settings",
    "cassandra": "aiostream.storage.cassandra:storage_from_settings",
}
"""Backend name to its storage factory (or the ``module:function`` path of one)."""


def register_backend(name: str, factory: str | StorageFactory) -> None:
    """Make ``storage_backend = name`` resolve through ``factory(settings, server)``."""
    BACKENDS[name] = factory


def _factory(backend: str) -> StorageFactory:
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise ConfigurationError(
            f"no storage backend named {backend!r}; known: {sorted(BACKENDS)}"
        ) from None
    if isinstance(factory, str):
        module, _, function = factory.partition(":")
        found: StorageFactory = getattr(importlib.import_module(module), function)
        return found
    return factory


class Storages:
    """Named storages for feeds, opened on first use and closed together.

    Args:
        settings: Where storages are built from (default: :meth:`Settings.from_env`,
            read when the first storage is built).
        storages: Storages to use as they are, by ``"backend"`` or
            ``"backend:server"`` (e.g. ``{"redis": my_storage}``); left open on exit.

    Use it as an async context manager: while entered it is the current registry of
    the process (:func:`current_storages`).
    """

    def __init__(
        self, settings: Settings | None = None, storages: Mapping[str, FeedStorage] | None = None
    ) -> None:
        self._settings = settings
        self._given = {_key_of(name): storage for name, storage in (storages or {}).items()}
        self._opened: dict[tuple[str, str], FeedStorage] = {}

    @property
    def settings(self) -> Settings:
        """The settings storages are built from."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def get(self, backend: str, server: str = "default") -> FeedStorage:
        """The storage of ``backend`` and ``server`` (built on first use).

        Raises:
            ConfigurationError: unknown backend, or a server the settings do not name.
        """
        key = (backend, server)
        storage = self._given.get(key) or self._opened.get(key)
        if storage is None:
            factory = _factory(backend)
            storage = factory(self.settings, server)
            if not getattr(factory, "process_wide", False):
                self._opened[key] = storage
        return storage

    async def aclose(self) -> None:
        """Close the storages this registry opened (given ones stay open)."""
        opened, self._opened = list(self._opened.values()), {}
        for storage in opened:
            await storage.aclose()

    def _discard(self) -> None:
        opened, self._opened = list(self._opened.values()), {}
        for storage in opened:
            close_nowait = getattr(storage, "close_nowait", None)
            if close_nowait is not None:
                close_nowait()

    async def __aenter__(self) -> Storages:
        _entered.append(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.aclose()
        finally:
            _entered.remove(self)

    def __repr__(self) -> str:
        names = sorted(f"{b}:{s}" for b, s in [*self._given, *self._opened])
        return f"<Storages {names}>"


def _key_of(name: str) -> tuple[str, str]:
    backend, _, server = name.partition(":")
    return backend, server or "default"


# Registries entered (innermost last), and each loop's own when none is.
_entered: list[Storages] = []
_implicit: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Storages] = (
    weakref.WeakKeyDictionary()
)
_no_loop: dict[str, Storages] = {}  # feeds built where no loop runs (sync code)
_settings: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Build the loops' own registries from ``settings`` from now on (None: from the
    environment). Storages already open keep theirs: call
    :func:`close_default_storages` first to replace them."""
    global _settings
    _settings = settings
    _no_loop.clear()


def current_storages() -> Storages:
    """The registry feeds resolve their storage in: the one last entered, or the running
    loop's own (made on first use)."""
    if _entered:
        return _entered[-1]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _no_loop.setdefault("", Storages(_settings))
    registry = _implicit.get(loop)
    if registry is None:
        registry = _implicit[loop] = Storages(_settings)
    return registry


async def close_default_storages() -> None:
    """Close the running loop's own registry (it is rebuilt on demand) and let go of
    those of loops that have closed."""
    for other in [other for other in _implicit if other.is_closed()]:
        # Their connections died with their loop; a driver with threads of its own
        # (Cassandra) is shut down without waiting.
        _implicit.pop(other)._discard()
    registry = _implicit.pop(asyncio.get_running_loop(), None)
    if registry is not None:
        await registry.aclose()


def default_storage(backend: str, server: str = "default") -> FeedStorage:
    """``current_storages().get(backend, server)``: what a feed uses without ``storage=``."""
    return current_storages().get(backend, server)
