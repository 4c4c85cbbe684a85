"""Follow and unfollow jobs delivered late, twice or out of order (a retried job, one
whose worker was killed, a duplicate): every feed ends as the newest follow / unfollow
request of each (follower, target) pair asked, run against every backend."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest

from aiostream.activity import Activity
from aiostream.fanout import Job, JobRunner
from aiostream.storage.base import FeedStorage
from tests.behaviour.test_manager import PinManager
from tests.helpers import make_activities

pytestmark = pytest.mark.anyio

FOLLOWER = 50


class QueueDispatcher:
    """Keeps the jobs instead of running them: the test delivers them, in the order it
    likes and as often as it likes, through the Manager's run path."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def dispatch(self, jobs: Sequence[Job], run: JobRunner) -> None:
        self.jobs.extend(jobs)


class Setup:
    def __init__(self, storage: FeedStorage) -> None:
        self.dispatcher = QueueDispatcher()
        self.manager = PinManager(storage=storage, dispatcher=self.dispatcher)

    async def post(self, user: int, activities: list[Activity]) -> None:
        await self.manager.batch_import(user, activities, fanout=False)

    async def request(self, call: Awaitable[None]) -> list[Job]:
        """The jobs of one follow / unfollow request (queued, not run)."""
        before = len(self.dispatcher.jobs)
        await call
        return self.dispatcher.jobs[before:]

    async def deliver(self, *jobs: Job) -> None:
        for job in jobs:
            await self.manager.run(job)

    async def shown(self, user: int = FOLLOWER) -> tuple[set[Any], set[Any]]:
        """The objects in the user's flat feed and in their aggregated feed."""
        feeds = self.manager.get_feeds(user)
        flat = {a.object_id for a in await feeds["normal"][:]}
        groups = await feeds["aggregated"][:]
        return flat, {a.object_id for g in groups for a in g.activities}


def objects(activities: list[Activity]) -> tuple[set[Any], set[Any]]:
    ids = {a.object_id for a in activities}
    return ids, ids


NOTHING: tuple[set[Any], set[Any]] = (set(), set())


@pytest.mark.parametrize("follow_ran_before", [True, False], ids=["retried", "late"])
async def test_a_follow_delivered_after_a_newer_unfollow_does_nothing(
    storage: FeedStorage, follow_ran_before: bool
) -> None:
    """The follow's worker was killed mid-job (or the job waited); the user unfollowed
    meanwhile; then the follow is retried."""
    setup = Setup(storage)
    await setup.post(2, make_activities(5, actor=2))
    (follow,) = await setup.request(setup.manager.follow_user(FOLLOWER, 2))
    if follow_ran_before:
        await setup.deliver(follow)  # the try whose worker died after writing
    (unfollow,) = await setup.request(setup.manager.unfollow_user(FOLLOWER, 2))
    await setup.deliver(unfollow)
    assert await setup.shown() == NOTHING
    await setup.deliver(follow)  # the retry
    assert await setup.shown() == NOTHING


async def test_an_unfollow_delivered_after_a_newer_follow_does_nothing(
    storage: FeedStorage,
) -> None:
    setup = Setup(storage)
    pins = make_activities(5, actor=2)
    await setup.post(2, pins)
    (unfollow,) = await setup.request(setup.manager.unfollow_user(FOLLOWER, 2))
    (follow,) = await setup.request(setup.manager.follow_user(FOLLOWER, 2))
    await setup.deliver(follow)
    assert await setup.shown() == objects(pins)
    await setup.deliver(unfollow)  # late, or retried
    assert await setup.shown() == objects(pins)


@pytest.mark.parametrize(
    "requests",
    [
        ["follow", "unfollow"],
        ["unfollow", "follow"],
        ["follow", "unfollow", "follow", "unfollow"],
        ["unfollow", "follow", "unfollow", "follow"],
    ],
    ids="-".join,
)
async def test_duplicates_in_any_order_leave_the_newest_request(
    storage: FeedStorage, requests: list[str]
) -> None:
    setup = Setup(storage)
    pins = make_activities(4, actor=2)
    await setup.post(2, pins)
    shuffled = random.Random(f"{requests}")
    for follower in range(100, 104):
        jobs: list[Job] = []
        for operation in requests:
            call = getattr(setup.manager, f"{operation}_user")
            jobs += await setup.request(call(follower, 2))
        deliveries = jobs * 2  # every job delivered twice
        shuffled.shuffle(deliveries)
        await setup.deliver(*deliveries)
        expected = objects(pins) if requests[-1] == "follow" else NOTHING
        assert await setup.shown(follower) == expected, [j.operation for j in deliveries]


async def test_each_pair_of_a_chunk_keeps_its_own_newest_request(storage: FeedStorage) -> None:
    """A follow of two users, then an unfollow of one: the follow's retry copies only the
    user still followed."""
    setup = Setup(storage)
    twos, threes = make_activities(3, actor=2), make_activities(3, actor=3, start=10)
    await setup.post(2, twos)
    await setup.post(3, threes)
    (follow,) = await setup.request(setup.manager.follow_many_users(FOLLOWER, [2, 3]))
    assert follow.target_ids == (2, 3)  # type: ignore[union-attr]
    (unfollow,) = await setup.request(setup.manager.unfollow_user(FOLLOWER, 2))
    await setup.deliver(follow, unfollow, follow)
    assert await setup.shown() == objects(threes)


async def test_a_follow_retried_after_an_unfollow_keeping_history_copies_nothing_more(
    storage: FeedStorage,
) -> None:
    """An unfollow that keeps history leaves the feeds as they are: a follow retried
    after it adds nothing, not even what the target posted since."""
    setup = Setup(storage)
    pins = make_activities(3, actor=2)
    await setup.post(2, pins)
    (follow,) = await setup.request(setup.manager.follow_user(FOLLOWER, 2))
    await setup.deliver(follow)
    await setup.post(2, make_activities(2, actor=2, start=3))
    assert await setup.request(setup.manager.unfollow_user(FOLLOWER, 2, keep_history=True)) == []
    await setup.deliver(follow)  # the retry
    assert await setup.shown() == objects(pins)
