"""arq workers shared with the user's own jobs and hooks, the dispatcher's safety checks
(JSON pools only, clear connect errors, requeue that never loses a record) and the
worker's log lines."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import func

from aiostream import Activity, Settings
from aiostream.exceptions import ConfigurationError, StorageUnavailableError
from aiostream.tasks import DEFAULT_QUEUE, ArqDispatcher, json_serializer, worker_settings
from tests.arq.app import AppFeed, AppManager
from tests.arq.test_tasks import enqueue_flaky_fanout, run_burst
from tests.helpers import Pin, at

pytestmark = pytest.mark.anyio

SECRET = "text only its author should see"


@pytest.fixture(autouse=True)
def followers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: {"other": [30, 31]}})


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as opened:
        yield opened


def secret_activity() -> Activity:
    return Activity(1, Pin, 5, time=at(10), extra_context={"text": SECRET})


async def test_user_jobs_and_hooks_run_beside_aiostreams(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    events: list[Any] = []

    def make_manager(ctx: dict[str, Any]) -> AppManager:
        events.append(("factory", "redis" in ctx, "aiostream_storages" in ctx))
        return AppManager()

    async def send_digest(ctx: dict[str, Any], user_id: int) -> int:
        events.append(("digest", user_id, type(ctx["aiostream"].manager).__name__))
        return user_id

    async def on_startup(ctx: dict[str, Any]) -> None:
        events.append(("startup", type(ctx["aiostream"].manager).__name__))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        # Runs before aiostream's own shutdown: the storages are still open.
        events.append(("shutdown", await AppFeed(30).count()))

    activity = secret_activity()
    await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
    await dispatcher.pool.enqueue_job("send_digest", 7, _queue_name=DEFAULT_QUEUE)
    worker = await run_burst(
        app_storage,
        DEFAULT_QUEUE,
        make_manager,
        functions=[func(send_digest, name="send_digest")],
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    # The fanout's three jobs (one per feed class) and the digest.
    assert worker.jobs_complete == 4 and worker.jobs_failed == 0
    assert events == [
        ("factory", True, True),
        ("startup", "AppManager"),
        ("digest", 7, "AppManager"),
        ("shutdown", 1),
    ]
    assert await AppFeed(30)[:] == [activity]
    assert await AppFeed(31)[:] == [activity]


async def test_an_async_manager_factory_is_awaited(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    async def make_manager() -> AppManager:
        return AppManager()

    activity = secret_activity()
    await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
    worker = await run_burst(app_storage, DEFAULT_QUEUE, make_manager)
    assert worker.jobs_complete == 3  # one job per feed class
    assert await AppFeed(31)[:] == [activity]


def test_a_user_function_named_like_aiostreams_is_refused() -> None:
    async def send_digest(ctx: dict[str, Any]) -> None: ...

    with pytest.raises(ConfigurationError, match="'fanout_operation'"):
        worker_settings(AppManager, functions=[func(send_digest, name="fanout_operation")])


def test_worker_settings_without_settings_needs_the_queue_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not Settings()'s 127.0.0.1: nothing configured is said so, when the class is built.
    for name in ("STREAM_REDIS_URL", "STREAM_ARQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="worker_settings\\(\\) needs the queue Redis"):
        worker_settings(AppManager)
    monkeypatch.setenv("STREAM_ARQ_REDIS_URL", "redis://queue.invalid:6379/3")
    settings = worker_settings(AppManager)
    assert (settings.redis_settings.host, settings.redis_settings.database) == ("queue.invalid", 3)


def test_worker_settings_keeps_the_users_other_arq_options() -> None:
    async def on_job_start(ctx: dict[str, Any]) -> None: ...

    settings = worker_settings(
        AppManager,
        settings=Settings(redis_url="redis://unused.invalid/0"),
        on_job_start=on_job_start,
        max_jobs=4,
    )
    assert settings.__dict__["on_job_start"] is on_job_start
    assert settings.max_jobs == 4
    assert settings.queue_name == DEFAULT_QUEUE


async def test_a_pickle_pool_is_refused(app_storage: str) -> None:
    pool = await create_pool(RedisSettings.from_dsn(app_storage))
    try:
        with pytest.raises(ConfigurationError, match="pickle"):
            ArqDispatcher(pool)
    finally:
        await pool.aclose()


async def test_a_pool_that_does_not_write_json_is_refused(app_storage: str) -> None:
    pool = await create_pool(
        RedisSettings.from_dsn(app_storage),
        job_serializer=lambda data: repr(data).encode(),
        job_deserializer=lambda raw: raw,
    )
    try:
        with pytest.raises(ConfigurationError, match="does not write JSON"):
            ArqDispatcher(pool)
    finally:
        await pool.aclose()


async def test_a_json_pool_made_by_the_user_is_accepted(app_storage: str) -> None:
    from aiostream.tasks import json_deserializer

    pool = await create_pool(
        RedisSettings.from_dsn(app_storage),
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
    )
    async with ArqDispatcher(pool, own_pool=True) as dispatcher:
        await dispatcher.ping()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connect_to_a_down_redis_names_it(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port}/0"):
        await ArqDispatcher.connect(f"redis://127.0.0.1:{port}/0")
    # No retries by default, so none of arq's "retries remaining" warnings.
    assert [r for r in caplog.records if "retries remaining" in r.getMessage()] == []


async def test_connect_takes_redis_settings(app_storage: str) -> None:
    async with await ArqDispatcher.connect(RedisSettings.from_dsn(app_storage)) as dispatcher:
        await dispatcher.ping()
        assert await dispatcher.failed_jobs() == []


async def test_requeue_keeps_the_record_of_a_job_that_is_already_waiting(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 100, (50,))
    await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager, max_tries=1)
    (failed,) = await dispatcher.failed_jobs()
    # The same work enqueued again meanwhile: requeueing must not drop the record
    # of a job it did not enqueue.
    await dispatcher.dispatch([flaky.chunk], run=AppManager().run)
    assert await dispatcher.requeue_failed() == 0
    assert await dispatcher.failed_jobs() == [failed]


async def test_retries_and_failures_are_logged_without_payloads(
    dispatcher: ArqDispatcher,
    app_storage: str,
    stack: AsyncExitStack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 100, (50,))
    await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager, max_tries=2)
    ours = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "aiostream.tasks"]
    job = flaky.chunk.job_id
    assert ours[0][0] == "INFO"
    assert ours[0][1].startswith(
        f"aiostream worker started: queue {DEFAULT_QUEUE}, managers FlakyManager, storages "
    )
    assert "RedisStorage standalone" in ours[0][1]
    assert ours[1:] == [
        (
            "WARNING",
            f"job {job} (fanout_operation) try 1 of 2 failed with StorageUnavailableError: "
            "redis://flaky: connection refused; retrying in 0.0 s",
        ),
        (
            "WARNING",
            f"job {job} (fanout_operation) on {DEFAULT_QUEUE} failed (tries exhausted) "
            "after 2 tries: StorageUnavailableError",
        ),
        (
            "INFO",
            f"aiostream worker stopped: queue {DEFAULT_QUEUE}, jobs done 0, retried 1, failed 1",
        ),
    ]


async def test_arq_job_lines_do_not_show_activities(
    dispatcher: ArqDispatcher, app_storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    activity = secret_activity()
    await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
    await run_burst(app_storage, DEFAULT_QUEUE)
    assert await AppFeed(30)[:] == [activity]
    started = [r.getMessage() for r in caplog.records if "→" in r.getMessage()]
    # One job per feed class, each line without its arguments.
    assert len(started) == 3 and all(m.endswith(":fanout_operation(…)") for m in started)
    assert [r.getMessage() for r in caplog.records if SECRET in r.getMessage()] == []


async def test_fanout_is_summarized_at_debug(
    dispatcher: ArqDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiostream.manager")
    activity = secret_activity()
    await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
    (summary,) = [r for r in caplog.records if r.name == "aiostream.manager"]
    assert summary.levelno == logging.DEBUG
    assert summary.getMessage() == (
        f"fanout add of activity {activity.serialization_id} by user 1: 2 followers "
        "(other: 2) into 3 feed classes, 3 chunks"
    )


def test_without_logging_of_their_own_aiostreams_lines_go_where_arqs_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiostream._arq_worker import _log_beside_arq

    ours, arq, root = (logging.getLogger(n) for n in ("aiostream", "arq", ""))
    handler = logging.StreamHandler()
    monkeypatch.setattr(arq, "handlers", [handler])
    monkeypatch.setattr(ours, "handlers", [])
    monkeypatch.setattr(root, "handlers", [])  # as under `python -m arq`
    monkeypatch.setattr(ours, "level", logging.NOTSET)
    _log_beside_arq()
    assert (ours.handlers, ours.level) == ([handler], logging.INFO)
    # Configured logging is left alone.
    other = logging.StreamHandler()
    monkeypatch.setattr(ours, "handlers", [other])
    _log_beside_arq()
    assert ours.handlers == [other]
