"""Redis's states: a renewal is one step on the server, so of many processes renewing a
timestamp at once exactly one writes it (selective materialization's read record)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.redis.conftest import StorageOpener

pytestmark = pytest.mark.anyio


async def test_of_renewals_at_once_one_writes_and_the_others_see_its_time(
    open_storage: StorageOpener, raw: Any
) -> None:
    seen: dict[float, dict[str, str]] = {}
    async with open_storage() as first, open_storage() as second:

        async def renew(storage: Any, time: float) -> None:
            seen[time] = await storage.renew_states({"read:7": time}, 50.0, ["stale:7"])

        async with anyio.create_task_group() as group:
            for index in range(20):
                group.start_soon(renew, (first, second)[index % 2], 100.0 + index)
        stored = await first.load_states(["read:7"])
    writers = [time for time, found in seen.items() if found == {}]
    assert len(writers) == 1
    assert stored == {"read:7": repr(writers[0])}
    assert all(found == stored for time, found in seen.items() if time != writers[0])


async def test_a_renewal_reaches_states_of_many_slots_at_once(
    open_storage: StorageOpener,
) -> None:
    async with open_storage() as storage:
        names = [f"read:{n}" for n in range(12)]
        await storage.store_states({f"stale:{n}": "1" for n in range(12)})
        first = await storage.renew_states(dict.fromkeys(names, 10.0), 0.0, ["stale:3", "x"])
        assert first == {"stale:3": "1"}
        again = await storage.renew_states(dict.fromkeys(names, 20.0), 5.0, ["stale:4"])
        assert again == {**dict.fromkeys(names, "10.0"), "stale:4": "1"}
        assert await storage.load_states(names) == dict.fromkeys(names, "10.0")
