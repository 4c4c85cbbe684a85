"""Selective materialization through arq workers: the chunks carry their producer as
JSON, the workers skip inactive followers, and reads in the web process rebuild."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import pytest

from aiostream import Activity
from aiostream.fanout import FanoutChunk
from aiostream.tasks import HIGH_QUEUE, ArqDispatcher
from tests.arq.app import AppFeed, AppManager
from tests.arq.test_tasks import run_burst
from tests.helpers import Pin, at

pytestmark = pytest.mark.anyio


class IdleManager(AppManager):
    inactive_after = dt.timedelta(days=1)
    followers: ClassVar[dict[Any, dict[str, list[int]]]] = {1: {"HIGH": [10, 11]}}
    clock = at(100).timestamp()

    def get_user_following_ids(self, user_id: Any) -> list[int]:
        return [1] if user_id in (10, 11) else []

    def now(self) -> float:
        return self.clock


async def test_workers_skip_inactive_followers_and_reads_rebuild(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    web = IdleManager(dispatcher=dispatcher)
    assert await web.get_feeds(10)["normal"][:] == []  # 10 reads: active; 11 never read
    activity = Activity(1, Pin, 5, time=at(50))
    await web.add_user_activity(1, activity)
    queued = await dispatcher.pool.zrange(HIGH_QUEUE, 0, -1)
    assert queued  # the flat chunk went to the workers with its producer
    worker = await run_burst(app_storage, HIGH_QUEUE, IdleManager)
    assert worker.jobs_failed == 0
    assert await AppFeed(10)[:] == [activity]
    assert await AppFeed(11)[:] == []  # skipped by the worker, marked stale
    assert await web.get_feeds(11)["normal"][:] == [activity]  # rebuilt at the read
    assert await AppFeed(11)[:] == [activity]


def test_a_chunk_carries_its_producer_only_when_set() -> None:
    plain = FanoutChunk("add", "normal", (1, 2), ("{}",))
    assert "producer" not in plain.to_dict()
    tagged = FanoutChunk("add", "normal", (1, 2), ("{}",), producer=7)
    assert FanoutChunk.from_dict(tagged.to_dict()) == tagged
    assert tagged.job_id != plain.job_id
