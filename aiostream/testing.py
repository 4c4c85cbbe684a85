"""Testing an application's feeds: every backend in memory, fanout in this process, and
queued fanout waited for.

An application's feed classes name their backend (``RedisFeed``, ``CassandraFeed``)
and its Manager may hand fanout to arq workers. Its unit tests need neither a server
nor a worker, and should not change those classes to get there:

* :func:`memory_storages` enters a storage registry where every backend and server is
  a fresh :class:`~aiostream.storage.memory.MemoryStorage` of its own, so the feeds run
  unchanged, in memory, and no test sees another's data. As a pytest fixture:
  ``pytest_plugins = ["aiostream.testing"]`` in the top ``conftest.py``, then a test
  asks for ``memory_storages``;
* :func:`fanout_in_process` runs a Manager's (or a connection's) fanout in this process
  while it is entered, whatever dispatcher the application configured, so a follower's
  feed holds the activity as soon as ``add_user_activity`` returns;
* :func:`drain` waits until the fanout a Manager dispatched is done, for integration
  tests that run real arq workers (:meth:`aiostream.tasks.ArqDispatcher.drain`).

Importing this module imports neither pytest (the fixture is defined only when pytest
is installed) nor arq; ``import aiostream`` never imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from aiostream.connection import Connection
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import Dispatcher, InProcessDispatcher
from aiostream.manager import ManagerCore
from aiostream.storage.base import FeedStorage
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.registry import BACKENDS, Storages

__all__ = ["MemoryStorages", "drain", "fanout_in_process", "memory_storages"]


class MemoryStorages(Storages):
    """A storage registry that holds every backend's storages in memory.

    Each ``(backend, server)`` a feed class names gets a
    :class:`~aiostream.storage.memory.MemoryStorage` of its own on first use, as each
    server is a storage of its own in production: a feed of a ``"redis"`` class and a
    feed of a ``"cassandra"`` class with the same key stay apart, and the Manager stores
    each activity in every storage its feeds read, as it does with real servers. The
    ``"memory"`` backend gets a fresh one too, instead of the process-wide storage, so
    that tests do not share data.

    Attributes:
        memory: The storages made so far, by ``(backend, server)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.memory: dict[tuple[str, str], MemoryStorage] = {}

    def get(self, backend: str, server: str = "default") -> FeedStorage:
        """The in-memory storage standing in for ``backend`` and ``server``.

        Raises:
            ConfigurationError: ``backend`` is not a registered backend (a typo in a
                feed class fails in tests as it would in production).
        """
        storage = self.memory.get((backend, server))
        if storage is None:
            if backend not in BACKENDS:
                raise ConfigurationError(
                    f"no storage backend named {backend!r}; known: {sorted(BACKENDS)}"
                )
            storage = self.memory[backend, server] = MemoryStorage()
        return storage

    def __repr__(self) -> str:
        names = sorted(f"{b}:{s}" for b, s in self.memory)
        return f"<MemoryStorages {names}>"


@contextlib.asynccontextmanager
async def memory_storages() -> AsyncIterator[MemoryStorages]:
    """Enter a :class:`MemoryStorages`: feeds without ``storage=`` of every backend run
    in memory while it is entered (in the entering task and the tasks it starts, and on
    its event loop unless another registry was entered there first).

    Feeds and Managers given ``storage=`` keep theirs. ``registry.get("redis")`` is the
    storage the ``"redis"`` feeds use, for a test that looks inside it.

    Example::

        async with memory_storages():
            await PinManager().add_user_activity(1, activity)   # RedisFeed classes
    """
    registry = MemoryStorages()
    async with registry:
        yield registry


@contextlib.contextmanager
def fanout_in_process(
    *targets: ManagerCore | Connection, max_concurrency: int = 8
) -> Iterator[InProcessDispatcher]:
    """Run the fanout of ``targets`` (Managers, or a :class:`~aiostream.Connection`
    whose ``manager()`` builds the application's Managers) in this process while
    entered, then give them back the dispatchers they had.

    An application configured for arq keeps its configuration; its tests see every
    follower's feed written when the call that fans out returns, with no worker
    running. The jobs are the same ones arq workers would run, carried out by an
    :class:`~aiostream.fanout.InProcessDispatcher` (a failed job raises
    :class:`~aiostream.exceptions.FanoutError` from the call that dispatched it).

    Yields:
        The dispatcher the targets use while entered.

    Raises:
        ConfigurationError: a connection that is not entered (it has no dispatcher yet).
    """
    dispatcher = InProcessDispatcher(max_concurrency)
    saved = [(target, _dispatcher_of(target)) for target in targets]  # (checked first)
    for target in targets:
        _set_dispatcher(target, dispatcher)
    try:
        yield dispatcher
    finally:
        for target, previous in reversed(saved):
            _set_dispatcher(target, previous)


async def drain(target: ManagerCore | Connection | Dispatcher, max_wait: float = 30.0) -> None:
    """Wait until the fanout ``target`` dispatched is done: its dispatcher's ``drain()``
    (:meth:`aiostream.tasks.ArqDispatcher.drain`: no job of aiostream's left on its
    queues) when it has one; an in-process dispatcher has nothing to wait for (a call
    returns once its fanout ran).

    Raises:
        TimeoutError: jobs were still queued after ``max_wait`` seconds (the message
            says where; a caller's own deadline could not).
    """
    if isinstance(target, ManagerCore | Connection):
        target = _dispatcher_of(target)
    wait = getattr(target, "drain", None)
    if wait is not None:
        await wait(max_wait)


def _dispatcher_of(target: ManagerCore | Connection) -> Dispatcher:
    """The dispatcher of a Manager or an entered connection (ConfigurationError if not)."""
    return target.dispatcher


def _set_dispatcher(target: ManagerCore | Connection, dispatcher: Dispatcher) -> None:
    if isinstance(target, Connection):
        target._dispatcher = dispatcher  # what its manager() hands the Managers it builds
    else:
        target.dispatcher = dispatcher


# -- the pytest plugin: pytest_plugins = ["aiostream.testing"] ---------------------------------

try:
    import pytest
except ImportError:  # pytest is not a dependency: the helpers above work without it
    pass
else:

    @pytest.fixture(name="memory_storages")
    async def _memory_storages_fixture() -> AsyncIterator[MemoryStorages]:
        """Every backend's storages in memory for one test (:func:`memory_storages`).
        An async fixture: run the test with anyio's pytest plugin (``pytest.mark.anyio``,
        which anyio installs) or pytest-asyncio."""
        async with memory_storages() as registry:
            yield registry
