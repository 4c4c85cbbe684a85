"""Activity factories and feed classes shared by the tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio

from aiostream import (
    Activity,
    AggregatedActivity,
    AggregatedFeed,
    BaseFeed,
    NotificationActivity,
    NotificationFeed,
    RecentVerbAggregator,
    UserBaseFeed,
    Verb,
)
from examples.pinterest_demo import PinVerb

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


# The demo's verb (id 5, "pin"): one class per id in a process, and the example services
# under test use the demo's.
Pin = PinVerb


def at(seconds: float) -> dt.datetime:
    """T0 plus ``seconds``."""
    return T0 + dt.timedelta(seconds=seconds)


def make_activities(
    n: int, *, actor: int = 1, verb: type[Verb] = Pin, start: int = 0, step: float = 1.0, **kw: Any
) -> list[Activity]:
    """``n`` activities of one actor, one second apart, objects ``start..start+n-1``."""
    return [Activity(actor, verb, start + i, time=at((start + i) * step), **kw) for i in range(n)]


class CustomActivity(Activity):
    """An Activity subclass with a method, as in the seed's "Extend the activity class"."""

    def mymethod(self) -> str:
        return f"custom {self.object_id}"


class CustomAggregated(AggregatedActivity):
    """A custom aggregated activity class."""


class CustomNotification(NotificationActivity):
    """A custom notification activity class."""


class TestFeed(BaseFeed):
    __test__ = False
    key_format = "test:flat:%(user_id)s"


class TestUserFeed(UserBaseFeed):
    __test__ = False
    key_format = "test:user:%(user_id)s"


class TestAggregatedFeed(AggregatedFeed):
    __test__ = False
    key_format = "test:aggregated:%(user_id)s"
    aggregator_class = RecentVerbAggregator


class TestNotificationFeed(NotificationFeed):
    __test__ = False
    key_format = "test:notification:%(user_id)s"


class CustomFeed(TestFeed):
    activity_class: ClassVar[type[Activity]] = CustomActivity


class CustomAggregatedFeed(TestAggregatedFeed):
    activity_class: ClassVar[type[Activity]] = CustomActivity
    aggregated_activity_class: ClassVar[type[AggregatedActivity]] = CustomAggregated


FeedOf = Callable[[Any], Any]


async def feeds_not_holding_once(
    users: Iterable[Any],
    activity: Activity,
    *,
    flat: FeedOf,
    aggregated: FeedOf,
    notification: FeedOf,
    concurrency: int = 32,
) -> list[str]:
    """What is wrong with the users' feeds after ``activity`` was fanned out to them:
    empty when each flat feed is ``[activity]``, each aggregated and notification feed
    one group of exactly that activity, and each notification feed has 1 unseen."""
    problems: list[str] = []
    limiter = anyio.CapacityLimiter(concurrency)

    async def check(user: Any) -> None:
        async with limiter:
            items = await flat(user)[:]
            groups = await aggregated(user)[:]
            notifications = notification(user)
            notes = await notifications[:]
            unseen = await notifications.count_unseen()
        if items != [activity]:
            problems.append(f"flat feed of {user}: {items}")
        if [(g.activities, g.activity_count) for g in groups] != [([activity], 1)]:
            problems.append(f"aggregated feed of {user}: {groups}")
        if [(n.activities, n.activity_count) for n in notes] != [([activity], 1)] or unseen != 1:
            problems.append(f"notification feed of {user}: {notes}, unseen {unseen}")

    async with anyio.create_task_group() as tg:
        for user in users:
            tg.start_soon(check, user)
    return problems


@asynccontextmanager
async def uvicorn_serving(app: Any, *, graceful_shutdown: float = 1.0) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` under uvicorn on a free 127.0.0.1 port, in this event loop,
    its lifespan included (startup before the first request, shutdown on exit); yield its
    base URL. An event stream needs a real server (httpx's ASGI transport reads a body to
    its end); ``graceful_shutdown`` bounds how long an open stream holds the shutdown."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            ws="none",
            timeout_graceful_shutdown=graceful_shutdown,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("uvicorn stopped during startup")
                await asyncio.sleep(0.01)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            await task
