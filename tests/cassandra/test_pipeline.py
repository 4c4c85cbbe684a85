"""``execute_many`` against a fake driver session whose "reactor" is a thread of its own.

The fake completes requests out of order from its reactor thread, the way scylla-driver's
libev thread does, so the pipeline's hand-offs between threads are exercised without a
server: every statement runs exactly once, the window is never exceeded, a failure in the
middle is reported only after everything in flight has settled, and cancelling stops
the sending. The same runs against the real node are in ``test_storage.py``.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from cassandra import OperationTimedOut

from aiostream.storage.cassandra import _pipeline as pipeline_module
from aiostream.storage.cassandra._pipeline import execute_many

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra]


class Boom(Exception):
    """The failure the fake session injects."""


class FakeResponse:
    """Just the part of ``ResponseFuture`` the pipeline uses."""

    has_more_pages = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcome: tuple[bool, Any] | None = None
        self._callbacks: tuple[Callable[..., None], tuple[Any, ...]] | None = None
        self._errbacks: tuple[Callable[..., None], tuple[Any, ...]] | None = None
        self._timer: object = object()

    def add_callbacks(
        self,
        callback: Callable[..., None],
        errback: Callable[..., None],
        callback_args: tuple[Any, ...] = (),
        errback_args: tuple[Any, ...] = (),
    ) -> None:
        with self._lock:
            self._callbacks = (callback, callback_args)
            self._errbacks = (errback, errback_args)
            outcome = self._outcome
        if outcome is not None:  # already complete: the driver calls back at once
            self._call(*outcome)

    def clear_callbacks(self) -> None:
        with self._lock:
            self._callbacks = self._errbacks = None

    def complete(self, ok: bool, value: Any) -> None:
        with self._lock:
            self._outcome = (ok, value)
        self._call(ok, value)

    def _call(self, ok: bool, value: Any) -> None:
        with self._lock:
            target = self._callbacks if ok else self._errbacks
        if target is not None:
            func, args = target
            func(value, *args)


class FakeClock:
    """Stands in for ``time`` in the pipeline module: deadlines follow the test, not the
    wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeTimer:
    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due, self.callback, self.cancelled = due, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeSession:
    """Records what is sent; a reactor thread completes requests in random order.

    Args:
        fail_at: Index of the statement whose request fails (errback, as from a server).
        raise_at: Index of the statement whose ``execute_async`` raises.
        inline: Complete every request before ``execute_async`` returns.
        timer: Offer ``cluster.connection_class.create_timer`` (the libev path).
        hold: Keep requests in flight until :meth:`release` (for cancellation).
        lost: Indexes of statements whose requests never get an answer.
        driver_timeout: Give responses the driver's ``_on_timeout`` handler.
    """

    def __init__(
        self,
        *,
        fail_at: int = -1,
        raise_at: int = -1,
        inline: bool = False,
        timer: bool = True,
        hold: bool = False,
        lost: frozenset[int] = frozenset(),
        driver_timeout: bool = False,
    ) -> None:
        self.fail_at, self.raise_at, self.inline = fail_at, raise_at, inline
        self.lost, self.driver_timeout = lost, driver_timeout
        self.timeouts: list[Any] = []  # the ``timeout`` argument of each request
        self.clock = FakeClock()
        self._timers: list[FakeTimer] = []
        self.only_lost_left = threading.Event()  # every answered request has completed
        self.sent: list[Any] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.after_failure = 0  # statements sent after the failure was delivered
        self._failure_delivered = False
        self._lock = threading.Lock()
        self._pending: list[tuple[FakeResponse, int]] = []
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._rng = random.Random(1)
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self.holding = threading.Event()  # the reactor waits for release()
        self.idle = threading.Event()  # nothing in flight (after a completion)
        self.reactor_threads: set[str] = set()
        if timer:
            session = self

            class ConnectionClass:
                @staticmethod
                def create_timer(delay: float, callback: Callable[[], None]) -> FakeTimer:
                    # ``callback`` runs on the reactor thread once the fake clock says so.
                    timer = FakeTimer(session.clock.now + delay, callback)
                    if delay <= 0:
                        session._work.put(callback)
                    else:
                        with session._lock:
                            session._timers.append(timer)
                    return timer

            self.cluster = type("Cluster", (), {"connection_class": ConnectionClass})()
        self._thread = threading.Thread(target=self._reactor, name="fake-reactor", daemon=True)
        self._thread.start()

    def execute_async(self, statement: Any, parameters: Any, **kwargs: Any) -> FakeResponse:
        index = parameters[0]
        self.reactor_threads.add(threading.current_thread().name)
        if index == self.raise_at:
            raise Boom(f"cannot send {index}")
        response = FakeResponse()
        self.timeouts.append(kwargs.get("timeout", "unset"))
        if self.driver_timeout:
            response._on_timeout = lambda: response.complete(False, Boom(f"{index} timed out"))  # type: ignore[attr-defined]
        with self._lock:
            self.sent.append(index)
            if self._failure_delivered:
                self.after_failure += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.inline:
            self._finish(response, index)
        elif index in self.lost:
            pass
        else:
            with self._lock:
                self._pending.append((response, index))
            self._work.put(self._complete_one)
        return response

    def _finish(self, response: FakeResponse, index: int) -> None:
        with self._lock:
            self.in_flight -= 1
            if index == self.fail_at:
                self._failure_delivered = True
            if not self.in_flight:
                self.idle.set()
            if self.lost and self.in_flight == len(self.lost) and self.lost <= set(self.sent):
                self.only_lost_left.set()
        if index == self.fail_at:
            response.complete(False, Boom(f"statement {index} failed"))
        else:
            response.complete(True, [])

    def _complete_one(self) -> None:
        if not self._released.is_set():
            self.holding.set()
            self._released.wait()
        with self._lock:
            response, index = self._pending.pop(self._rng.randrange(len(self._pending)))
        self._finish(response, index)

    def _reactor(self) -> None:
        while (work := self._work.get()) is not None:
            work()

    def release(self) -> None:
        self._released.set()

    def advance(self, seconds: float) -> None:
        """Move the fake clock on; timers now due run on the reactor thread."""
        with self._lock:
            self.clock.now += seconds
            due = [t for t in self._timers if t.due <= self.clock.now and not t.cancelled]
            self._timers = [t for t in self._timers if t not in due]
        for timer in due:
            self._work.put(timer.callback)

    def close(self) -> None:
        self._released.set()
        self._work.put(None)
        self._thread.join()


def numbered(n: int) -> Iterator[tuple[str, tuple[int]]]:
    return (("INSERT", (i,)) for i in range(n))


@pytest.mark.parametrize("timer", [True, False], ids=["driver-thread-start", "loop-start"])
async def test_every_statement_runs_once_within_the_window(timer: bool) -> None:
    session = FakeSession(timer=timer)
    try:
        assert await execute_many(session, numbered(5000), window=16) == 5000
    finally:
        session.close()
    assert sorted(session.sent) == list(range(5000))
    assert session.max_in_flight <= 16
    assert session.in_flight == 0
    if timer:  # the event loop sent nothing itself
        assert session.reactor_threads == {"fake-reactor"}


async def test_a_failure_in_the_middle_is_reported_after_in_flight_settles() -> None:
    session = FakeSession(fail_at=2500)
    try:
        with pytest.raises(Boom, match="statement 2500 failed") as caught:
            await execute_many(session, numbered(5000), window=32)
        assert session.in_flight == 0  # nothing was still being written when it raised
    finally:
        session.close()
    assert 2500 in session.sent
    assert len(session.sent) < 5000
    assert session.after_failure == 0  # nothing new was sent once the failure was seen
    assert any("1 of the" in note and "failed" in note for note in caught.value.__notes__)


async def test_execute_async_raising_is_reported() -> None:
    session = FakeSession(raise_at=700)
    try:
        with pytest.raises(Boom, match="cannot send 700"):
            await execute_many(session, numbered(2000), window=8)
    finally:
        session.close()
    assert 700 not in session.sent
    assert session.in_flight == 0


async def test_a_failing_statement_builder_is_reported() -> None:
    def statements() -> Iterator[tuple[str, tuple[int]]]:
        yield from numbered(300)
        raise ValueError("bad row")

    session = FakeSession()
    try:
        with pytest.raises(ValueError, match="bad row"):
            await execute_many(session, statements(), window=8)
    finally:
        session.close()
    assert sorted(session.sent) == list(range(300))


@pytest.mark.parametrize("fail_at", [-1, 40_000])
async def test_requests_completing_at_once_do_not_recurse(fail_at: int) -> None:
    """Like a driver failing each request before ``execute_async`` returns."""
    session = FakeSession(inline=True, timer=False, fail_at=fail_at)
    try:
        if fail_at < 0:
            assert await execute_many(session, numbered(50_000), window=128) == 50_000
        else:
            with pytest.raises(Boom):
                await execute_many(session, numbered(50_000), window=128)
    finally:
        session.close()
    assert len(session.sent) == (50_000 if fail_at < 0 else fail_at + 1)


async def test_cancelling_stops_sending() -> None:
    session = FakeSession(hold=True)

    async def run() -> None:
        await execute_many(session, numbered(10_000), window=50)

    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                # The reactor sent the first window, then started holding its requests.
                await anyio.to_thread.run_sync(session.holding.wait)
                assert len(session.sent) == 50
                scope.cancel()
        session.release()
        await anyio.to_thread.run_sync(session.idle.wait)
    finally:
        session.close()
    assert len(session.sent) == 50  # completions after the cancel sent nothing new


@pytest.mark.parametrize("driver_timeout", [False, True], ids=["own-error", "driver-handler"])
async def test_requests_without_an_answer_time_out(
    driver_timeout: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One watchdog timer, not a driver timer per request, times out what is stuck."""
    session = FakeSession(lost=frozenset({30, 31}), driver_timeout=driver_timeout)
    monkeypatch.setattr(pipeline_module, "time", session.clock)
    outcome: list[BaseException] = []

    async def run() -> None:
        try:
            await execute_many(session, numbered(2000), window=16, request_timeout=5.0)
        except (Boom, OperationTimedOut) as exc:
            outcome.append(exc)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            # Everything else was answered; the two lost requests hold the call open.
            await anyio.to_thread.run_sync(session.only_lost_left.wait)
            assert not outcome
            session.advance(4.9)  # not yet
            session.advance(0.2)  # past their deadline: the watchdog times them out
    finally:
        session.close()
    (error,) = outcome
    if driver_timeout:  # the driver's own handler failed the requests
        assert isinstance(error, Boom)
        assert "timed out" in str(error)
    else:
        assert isinstance(error, OperationTimedOut)
    assert any("2 of the 2000" in note for note in error.__notes__)
    assert set(session.timeouts) == {None}  # no request carried a driver timer


async def test_without_a_reactor_timer_the_driver_times_requests_out() -> None:
    session = FakeSession(timer=False)
    try:
        await execute_many(session, numbered(100), window=8, request_timeout=2.5)
    finally:
        session.close()
    assert set(session.timeouts) == {2.5}


async def test_a_watched_pipeline_that_succeeds_reports_once() -> None:
    session = FakeSession()
    try:
        assert await execute_many(session, numbered(3000), window=64, request_timeout=30) == 3000
    finally:
        session.close()
    assert sorted(session.sent) == list(range(3000))
    assert set(session.timeouts) == {None}
