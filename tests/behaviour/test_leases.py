"""Leases (mutual exclusion across processes) and the follow / unfollow they serialize,
run against every backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aiostream import ConflictError
from aiostream.fanout import FollowChunk
from aiostream.leases import lease
from aiostream.storage.base import FeedStorage
from tests.behaviour.test_manager import PinManager
from tests.helpers import make_activities

pytestmark = pytest.mark.anyio


async def test_a_lease_has_one_holder(storage: FeedStorage) -> None:
    assert await storage.acquire_lease("job:1", "alice", 30)
    assert not await storage.acquire_lease("job:1", "bob", 30)
    assert not await storage.renew_lease("job:1", "bob", 30)
    await storage.release_lease("job:1", "bob")  # not bob's: nothing happens
    assert not await storage.acquire_lease("job:1", "bob", 30)
    assert await storage.acquire_lease("job:2", "bob", 30)  # another name is free
    assert await storage.renew_lease("job:1", "alice", 30)
    await storage.release_lease("job:1", "alice")
    assert await storage.acquire_lease("job:1", "bob", 30)


async def test_a_lease_expires_unless_renewed(storage: FeedStorage) -> None:
    assert await storage.acquire_lease("job:1", "alice", 1)
    await anyio.sleep(1.6)
    assert not await storage.renew_lease("job:1", "alice", 1)
    assert await storage.acquire_lease("job:1", "bob", 30)


async def hold_and_fail(storage: FeedStorage) -> None:
    async with lease(storage, "work"):
        with pytest.raises(ConflictError, match="work"):
            async with lease(storage, "work", wait=0.05):
                pass
        raise ValueError("inside")


async def test_lease_context_excludes_and_passes_errors_on(storage: FeedStorage) -> None:
    with pytest.raises(ValueError, match="inside") as info:
        await hold_and_fail(storage)
    assert type(info.value) is ValueError  # not wrapped in an ExceptionGroup
    async with lease(storage, "work", wait=0):  # given back on the way out
        pass


async def test_lease_is_renewed_while_held(storage: FeedStorage) -> None:
    async with lease(storage, "long", ttl=1.2):
        await anyio.sleep(2.5)  # twice the ttl: only renewals keep it
        assert not await storage.acquire_lease("long", "someone else", 30)


class RecordingManager(PinManager):
    """Records the order in which follow / unfollow jobs got the user's lease."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.order: list[str] = []
        self.applied: list[int] = []  # the versions of the jobs applied, in order
        self.requests: dict[int, str] = {}  # version: operation, of every job run

    async def run_follow(self, job: FollowChunk) -> None:
        assert job.version is not None
        self.requests[job.version] = job.operation
        await super().run_follow(job)

    async def apply_follow(self, job: FollowChunk) -> None:
        assert job.version is not None
        self.order.append(job.operation)
        self.applied.append(job.version)
        await super().apply_follow(job)


async def test_concurrent_follows_and_unfollows_of_one_pair_agree(storage: FeedStorage) -> None:
    manager = RecordingManager(storage=storage)
    pins = make_activities(10, actor=2)
    await manager.batch_import(2, pins, fanout=False)
    feeds = manager.get_feeds(50)
    for _ in range(5):
        manager.order.clear()
        manager.applied.clear()
        manager.requests.clear()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(manager.follow_user, 50, 2)
                tg.start_soon(manager.unfollow_user, 50, 2)
        assert len(manager.requests) == 20
        # A request overtaken by a newer one before its job got the lease does nothing:
        # the jobs applied are in the order of their requests, ending with the newest.
        assert manager.applied == sorted(manager.applied)
        assert manager.applied[-1] == max(manager.requests)
        assert manager.order[-1] == manager.requests[max(manager.requests)]
        # The operations ran one at a time: every feed is as the last one left it.
        followed = manager.order[-1] == "follow"
        assert await feeds["normal"][:] == (list(reversed(pins)) if followed else [])
        groups = await feeds["aggregated"][:]
        assert sorted(a.object_id for g in groups for a in g.activities) == (
            [p.object_id for p in pins] if followed else []
        )
