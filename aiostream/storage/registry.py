"""One way to reach a storage: a registry of named storages, opened and closed together.

Every feed class names the storage it uses by a backend (``storage_backend``:
``"memory"``, ``"redis"``, ``"cassandra"``) and a server name (``storage_server``,
``"default"`` unless set; ``RedisFeed.redis_server`` is the same thing under Stream
Framework's name). A feed built without ``storage=`` finds its storage in the *current*
:class:`Storages` when it makes a call (:func:`current_storages`):

* the one the calling task entered (``async with Storages(settings):``, or
  :func:`aiostream.connect`; arq workers built by :func:`aiostream.tasks.worker_settings`
  enter one at start-up). It is held in a context variable, so two tasks that enter a
  registry each see their own, and tasks started inside the ``async with`` inherit it;
* else the running event loop's own. A web server enters its registry in a lifespan
  that runs in another task than the request handlers (Starlette and uvicorn do), so
  the first registry entered on a loop is also the loop's while it stays entered: one
  slot per loop, not a stack (a registry entered while the slot is taken is current
  only where it was entered, and does not take the slot when the first one exits);
* else the loop's implicit registry, built from :func:`configure`'s settings on first
  use. Connections belong to the loop that opened them, so each loop gets its own;
  :func:`close_default_storages` closes the running loop's.

Settings are never made up. A registry with no settings (``Storages()``, or an implicit
one while :func:`configure` has none) builds a server backend only from the environment,
and only when the backend's own variable is set (``STREAM_REDIS_URL`` for the default
Redis server, ``STREAM_REDIS_SERVERS`` for a named one, ``STREAM_CASSANDRA_HOSTS`` for
Cassandra): without it, asking for that storage raises
:class:`~aiostream.exceptions.ConfigurationError` saying what to do, rather than connect
to a server on 127.0.0.1 that nobody named. The memory backend needs no server and works
with nothing configured.

A registry opens a storage the first time it is asked for one, and closes on exit only
the storages it opened (storages handed to it stay open). A backend is a name in
:data:`BACKENDS` mapped to the dotted path of a function ``(settings, server) ->
storage``; :func:`register_backend` adds one. A factory marked ``process_wide = True``
(the memory backend's: one storage for the whole process, no server) is asked every
time, what it returns is never closed by a registry, and it may be built without
settings (from :meth:`Settings.from_env`). Any other factory says which variable
configures it by ``environment_variable`` (a name, or a function of the server name),
or it needs settings given. Nothing imports a backend's driver until a feed of that
backend is used.

Example::

    async with Storages(Settings.from_env()):   # in a web app's lifespan
        await PinFeed(13).add(activity)         # PinFeed(RedisFeed) resolves there
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import os
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


def _settings_from_environment(factory: StorageFactory, backend: str, server: str) -> Settings:
    """Settings for ``factory`` when none were given: the environment's, but only where
    the backend's own variable is set, so that no server is reached that nobody named
    (:class:`Settings`' defaults point at 127.0.0.1)."""
    if getattr(factory, "process_wide", False):
        return Settings.from_env()  # a backend without a server (memory)
    variable = getattr(factory, "environment_variable", None)
    if callable(variable):
        variable = variable(server)
    if isinstance(variable, str) and os.environ.get(variable):
        return Settings.from_env()
    set_it = f", or set {variable}" if isinstance(variable, str) else ""
    raise ConfigurationError(
        f"no settings for the {backend!r} storage (server {server!r}): pass storage= to "
        "the feed or Manager, enter `async with Storages(settings)` or "
        "aiostream.connect(settings), call aiostream.storage.registry.configure(settings)"
        f"{set_it}"
    )


class Storages:
    """Named storages for feeds, opened on first use and closed together.

    Args:
        settings: Where storages are built from. None: each server backend from the
            environment, and only when its variable is set (``STREAM_REDIS_URL``,
            ``STREAM_CASSANDRA_HOSTS``, ...; read when that storage is first built),
            else :class:`~aiostream.exceptions.ConfigurationError`.
        storages: Storages to use as they are, by ``"backend"`` or
            ``"backend:server"`` (e.g. ``{"redis": my_storage}``); left open on exit.

    Use it as an async context manager: while entered it is the current registry of
    the entering task and of the tasks it starts (:func:`current_storages`), and of its
    event loop too when it is the first entered there.
    """

    def __init__(
        self, settings: Settings | None = None, storages: Mapping[str, FeedStorage] | None = None
    ) -> None:
        self._settings = settings
        self._given = {_key_of(name): storage for name, storage in (storages or {}).items()}
        self._opened: dict[tuple[str, str], FeedStorage] = {}
        # One token per entry still open (innermost last), to restore the entering
        # task's previous registry on exit.
        self._tokens: list[contextvars.Token[Storages | None]] = []

    @property
    def settings(self) -> Settings | None:
        """The settings storages are built from (None: each server backend from its
        environment variable, when set)."""
        return self._settings

    @property
    def entered(self) -> bool:
        """Whether the registry is entered (an exited one is nobody's current)."""
        return bool(self._tokens)

    def get(self, backend: str, server: str = "default") -> FeedStorage:
        """The storage of ``backend`` and ``server`` (built on first use).

        Raises:
            ConfigurationError: unknown backend, a server the settings do not name, or
                a server backend with no settings and no environment variable set.
        """
        key = (backend, server)
        storage = self._given.get(key) or self._opened.get(key)
        if storage is None:
            factory = _factory(backend)
            settings = self._settings
            if settings is None:
                settings = _settings_from_environment(factory, backend, server)
            storage = factory(settings, server)
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
        self._tokens.append(_current.set(self))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: the context variable alone says it
            return self
        _loop_entered.setdefault(loop, self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.aclose()
        finally:
            token = self._tokens.pop()
            try:
                _current.reset(token)
            except ValueError:
                # Exited in another context than it was entered in (a test fixture's
                # teardown, arq's shutdown hook): that context's variable is not ours
                # to restore, and this one shows the registry only if it inherited it.
                if _current.get() is self:
                    _current.set(None)
            if not self._tokens:
                for loop in [loop for loop, entered in _loop_entered.items() if entered is self]:
                    del _loop_entered[loop]

    def __repr__(self) -> str:
        names = sorted(f"{b}:{s}" for b, s in [*self._given, *self._opened])
        return f"<Storages {names}>"


def _key_of(name: str) -> tuple[str, str]:
    backend, _, server = name.partition(":")
    return backend, server or "default"


# The registry the running task entered (inherited by the tasks it starts).
_current: contextvars.ContextVar[Storages | None] = contextvars.ContextVar(
    "aiostream_storages", default=None
)
# Per loop: the first registry entered on it while it stays entered, then the loop's own.
_loop_entered: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Storages] = (
    weakref.WeakKeyDictionary()
)
_implicit: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Storages] = (
    weakref.WeakKeyDictionary()
)
_no_loop: dict[str, Storages] = {}  # feeds built where no loop runs (sync code)
_settings: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Build the loops' implicit registries from ``settings`` from now on (None: server
    backends only from their environment variables, when set). Storages already open
    keep theirs: call :func:`close_default_storages` first to replace them."""
    global _settings
    _settings = settings
    _no_loop.clear()


def current_storages() -> Storages:
    """The registry feeds resolve their storage in: the one the running task entered (or
    inherited), else the first one entered on the running loop while it stays entered,
    else the loop's implicit registry (made on first use)."""
    entered = _current.get()
    if entered is not None and entered.entered:
        return entered
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _no_loop.setdefault("", Storages(_settings))
    registry = _loop_entered.get(loop)
    if registry is not None:
        return registry
    registry = _implicit.get(loop)
    if registry is None:
        registry = _implicit[loop] = Storages(_settings)
    return registry


async def close_default_storages() -> None:
    """Close the running loop's implicit registry (it is rebuilt on demand) and let go
    of those of loops that have closed."""
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
