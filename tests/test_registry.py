"""The storage registry current per task: entered registries live in a context variable,
with one per-loop fallback for the tasks that entered none (a web server's handlers,
whose lifespan entered the registry in another task)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest

from aiostream import Activity, BaseFeed, ConfigurationError, Love, Settings
from aiostream.storage import registry
from aiostream.storage.base import FeedStorage
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.registry import Storages, current_storages
from tests.helpers import at

pytestmark = pytest.mark.anyio


class NoteFeed(BaseFeed):
    key_format = "note:%(user_id)s"


class ServerFeed(BaseFeed):
    """A feed of a backend that needs a server (the test registers it)."""

    storage_backend: ClassVar[str] = "test-server"


def _server_backend(settings: Settings, server: str) -> FeedStorage:
    return MemoryStorage()


_server_backend.environment_variable = "AIOSTREAM_TEST_SERVER_URL"  # type: ignore[attr-defined]


async def test_two_tasks_each_resolve_feeds_in_their_own_registry() -> None:
    first, second = MemoryStorage(), MemoryStorage()
    both_entered = anyio.Event()
    entered = 0
    seen: dict[str, FeedStorage] = {}

    async def task(name: str, storage: MemoryStorage, user_id: int) -> None:
        nonlocal entered
        async with Storages(storages={"memory": storage}) as own:
            entered += 1
            if entered == 2:
                both_entered.set()
            await both_entered.wait()  # both registries entered at once from here
            assert current_storages() is own
            feed = NoteFeed(user_id)
            seen[name] = feed.storage
            await feed.add(Activity(user_id, Love, 1, time=at(0)))
            await anyio.lowlevel.checkpoint()  # the other task runs while this one is in
            assert NoteFeed(user_id).storage is storage

    async with anyio.create_task_group() as group:
        group.start_soon(task, "first", first, 1)
        group.start_soon(task, "second", second, 2)
    assert seen == {"first": first, "second": second}
    assert [a.actor_id for a in await NoteFeed(1, storage=first)[:]] == [1]
    assert await NoteFeed(2, storage=first)[:] == []
    assert [a.actor_id for a in await NoteFeed(2, storage=second)[:]] == [2]


async def test_tasks_started_inside_inherit_the_registry() -> None:
    storage = MemoryStorage()
    async with Storages(storages={"memory": storage}) as own:

        async def resolve() -> FeedStorage:
            return NoteFeed(1).storage

        assert await asyncio.create_task(resolve()) is storage
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: _expect_current(own))


async def _expect_current(expected: Storages) -> None:
    assert current_storages() is expected


async def test_a_task_without_its_own_sees_the_loops() -> None:
    implicit = current_storages()  # nothing entered: the loop's implicit registry
    assert current_storages() is implicit
    lifespan_entered, served = anyio.Event(), anyio.Event()
    shared = MemoryStorage()
    found: list[Storages] = []

    async def lifespan() -> None:
        # As Starlette runs it: in a task of its own, beside the request handlers.
        async with Storages(storages={"memory": shared}) as app_registry:
            found.append(app_registry)
            lifespan_entered.set()
            await served.wait()

    async def handler() -> None:
        await lifespan_entered.wait()
        # Started by the server, not by the lifespan: it inherited no registry.
        assert current_storages() is found[0]
        assert NoteFeed(1).storage is shared
        served.set()

    async with anyio.create_task_group() as group:
        group.start_soon(lifespan)
        group.start_soon(handler)
    assert current_storages() is implicit  # the lifespan's registry exited


async def test_the_loop_keeps_one_slot_not_a_stack() -> None:
    implicit = current_storages()
    first_in, second_in, first_out, done = (anyio.Event() for _ in range(4))
    regs: dict[str, Storages] = {}

    async def enter(name: str, wait_for: anyio.Event, entered: anyio.Event) -> None:
        async with Storages() as own:
            regs[name] = own
            entered.set()
            await wait_for.wait()

    async def look() -> None:
        await second_in.wait()
        assert current_storages() is regs["first"]  # the first entered holds the slot
        first_out.set()
        await anyio.sleep(0.01)
        # The second one stays current where it was entered, but takes no slot.
        assert current_storages() is implicit
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(enter, "first", first_out, first_in)
        await first_in.wait()
        group.start_soon(enter, "second", done, second_in)
        group.start_soon(look)


async def test_an_exited_registry_is_nobodys_current() -> None:
    outside = current_storages()
    own = Storages()
    async with own:
        context = contextvars.copy_context()  # holds `own`, as a lingering task would
    assert context.run(current_storages) is outside


async def test_a_registry_exited_in_another_task_lets_go() -> None:
    # A test fixture's teardown or arq's shutdown hook exit in another task than the
    # one that entered.
    outside = current_storages()
    own = Storages()
    await asyncio.create_task(own.__aenter__())
    assert current_storages() is own  # through the loop's slot
    await own.__aexit__(None, None, None)
    assert current_storages() is outside
    await asyncio.create_task(own.__aenter__())
    await asyncio.create_task(own.__aexit__(None, None, None))
    assert current_storages() is outside


async def test_memory_needs_nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_settings", None)
    async with Storages():
        assert isinstance(NoteFeed(1).storage, MemoryStorage)
    assert isinstance(Storages().get("memory", "archive"), MemoryStorage)


async def test_a_server_backend_needs_settings_or_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.BACKENDS, "test-server", _server_backend)
    monkeypatch.delenv("AIOSTREAM_TEST_SERVER_URL", raising=False)
    async with Storages():
        with pytest.raises(ConfigurationError) as raised:
            ServerFeed(1)
    message = str(raised.value)
    for advice in (
        "'test-server' storage",
        "storage=",
        "Storages(settings)",
        "aiostream.connect(settings)",
        "configure(settings)",
        "AIOSTREAM_TEST_SERVER_URL",
    ):
        assert advice in message
    async with Storages(Settings()):  # settings given: the backend is built from them
        assert isinstance(ServerFeed(1).storage, MemoryStorage)
    monkeypatch.setenv("AIOSTREAM_TEST_SERVER_URL", "test://server")
    async with Storages():
        assert isinstance(ServerFeed(1).storage, MemoryStorage)


async def test_a_backend_that_names_no_variable_needs_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.BACKENDS, "test-server", lambda settings, server: MemoryStorage())
    with pytest.raises(ConfigurationError, match=r"configure\(settings\)$"):
        Storages().get("test-server")
