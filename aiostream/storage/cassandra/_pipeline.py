"""Many statements in flight, pipelined on the driver's I/O thread.

:func:`~aiostream.storage.cassandra._bridge.execute` crosses from the driver's thread to
the event loop once per request: a ``call_soon_threadsafe`` (a self-pipe write) and a
task wakeup each. For a fanout of 100,000 single-partition writes that hand-off, and the
GIL ping-pong between the two threads, cost more than the requests themselves.

:func:`execute_many` keeps the pipeline going from the driver's side instead, the way
the driver's own ``execute_concurrent`` does, without blocking any thread: up to
``window`` requests are in flight, and the callback of each completed request sends the
next one. The first requests are sent from the driver's I/O thread too (through a
zero-delay reactor timer), so the event loop does no driver work at all: it awaits one
future, resolved once when every statement has settled.

Timeouts are watched by the pipeline, not by the driver: a driver-side timeout costs a
reactor timer per request (an object, a heap entry and a wakeup of the reactor), which
measured a third of the CPU of a fanout write. One watchdog timer per call instead
wakes at the deadline of the oldest request in flight and times out every request past
its deadline the way the driver's own timer would (``ResponseFuture._on_timeout``:
the stream is orphaned, the request fails with ``OperationTimedOut``). Each request
still times out ``request_timeout`` seconds after it was sent.

Errors are kept per statement. The first failure stops the sending of new statements;
those in flight are waited for; then the first failure is raised, with a note counting
what failed out of what was tried. Success means every statement succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cassandra import OperationTimedOut
from cassandra.connection import Connection

from aiostream.storage.cassandra._bridge import Row

Statement = tuple[Any, Sequence[Any] | None]
"""``(statement, parameters)`` as ``Session.execute_async`` takes them."""


class _Pipeline:
    """The state of one :func:`execute_many` call, shared by the threads that run it.

    One thread at a time *pumps* (takes statements and sends them while the window has
    room); a completion on any thread frees a slot and pumps, or leaves that to the
    thread already pumping. ``_lock`` guards the counters and flags, never I/O.
    """

    def __init__(
        self,
        session: Any,
        statements: Iterator[Statement],
        window: int,
        kwargs: dict[str, Any],
        rows: list[Row] | None,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[None],
        timeout: float | None,
        create_timer: Callable[[float, Callable[[], None]], Any] | None,
    ) -> None:
        self._session = session
        self._statements = statements
        self._window = window
        self._kwargs = kwargs
        self._rows = rows
        self._loop = loop
        self._future = future
        self._lock = threading.Lock()
        self._pumping = False
        self._exhausted = False  # every statement has been taken
        self._stopped = False  # a failure, or the awaiting task gave up: send no more
        self._settled = False  # nothing in flight and nothing more to send: reported
        self.in_flight = 0
        self.taken = 0  # statements taken from the iterator (only the pumper writes it)
        self.failures: list[BaseException] = []
        # With a reactor timer to use, the pipeline watches deadlines itself: requests
        # go out without a driver timer, and ``_started`` (send order, so the oldest
        # first) says when each one in flight was sent.
        self._timeout = timeout if create_timer is not None else None
        self._create_timer = create_timer
        self._started: dict[Any, float] = {}
        self._watchdog: Any = None
        if self._timeout is not None:
            kwargs["timeout"] = None  # no per-request driver timer
        elif timeout is not None:
            kwargs["timeout"] = timeout

    def start(self) -> None:
        """Arm the watchdog and send the first window (on the driver's thread if it can).

        Never raises (a reactor timer's callback that raises is called again).
        """
        if self._timeout is not None:
            try:
                self._arm(self._timeout)
            except Exception as exc:  # pragma: no cover - the reactor is shutting down
                with self._lock:
                    self._stopped = True
                    self.failures.append(exc)
        self.pump()

    def stop(self) -> None:
        """Send nothing more (the requests in flight still complete)."""
        with self._lock:
            self._stopped = True

    def pump(self) -> None:
        """Send statements while the window has room, then report if all settled.

        Called from the reactor timer, from completion callbacks (on the driver's I/O
        thread, or inline when the driver fails a request at once) and never raising:
        the driver ignores (callbacks) or loops on (timers) exceptions.
        """
        with self._lock:
            if self._pumping or self._settled:
                return  # the pumping thread will see the room this completion made
            self._pumping = True
        while True:
            with self._lock:
                if self._stopped or self._exhausted or self.in_flight >= self._window:
                    # Deciding to stop and clearing the flag under one lock: a
                    # completion after this finds no pumper and pumps itself.
                    self._pumping = False
                    if self.in_flight or not (self._stopped or self._exhausted):
                        return
                    self._settled = True
                    watchdog, self._watchdog = self._watchdog, None
                    break
                self.in_flight += 1
            try:
                statement, parameters = next(self._statements)
            except StopIteration:
                with self._lock:
                    self.in_flight -= 1
                    self._exhausted = True
                continue
            except BaseException as exc:  # building a statement failed: nothing sent
                with self._lock:
                    self.in_flight -= 1
                    self._stopped = True
                    self.failures.append(exc)
                continue
            self.taken += 1
            self._send(statement, parameters)
        if watchdog is not None:
            with contextlib.suppress(Exception):
                watchdog.cancel()
        self._statements = iter(())  # a cancelled timer may hold us a while: hold little
        self._report()

    def _send(self, statement: Any, parameters: Sequence[Any] | None) -> None:
        response = None
        try:
            response = self._session.execute_async(statement, parameters, **self._kwargs)
            if self._timeout is not None:
                with self._lock:
                    self._started[response] = time.monotonic()
            # May run a callback right here (the driver failed the request at once):
            # it only counts, since this thread is the one pumping.
            response.add_callbacks(
                self._on_page, self._on_error, callback_args=(response,), errback_args=(response,)
            )
        except BaseException as exc:
            self._done(exc, response)

    def _on_page(self, page: Sequence[Row] | None, response: Any) -> None:
        try:
            if self._rows is not None:
                if page:
                    self._rows.extend(page)
                if response.has_more_pages:
                    response.start_fetching_next_page()  # this callback runs again
                    return
            # Break the response's reference cycles (its callbacks and its timeout timer
            # point back at it) so it is freed now, not by a cyclic GC pass that would
            # hold the GIL, and so stall the event loop, for tens of milliseconds.
            response.clear_callbacks()
            response._timer = None  # private, already cancelled by the driver
            self._done(None, response)
        except BaseException as exc:
            self._done(exc, response)
        self.pump()

    def _on_error(self, exc: BaseException, response: Any) -> None:
        with contextlib.suppress(BaseException):
            response.clear_callbacks()
        self._done(exc, response)
        self.pump()

    def _done(self, failure: BaseException | None, response: Any = None) -> None:
        with self._lock:
            watched = self._timeout is not None and response is not None
            if watched and self._started.pop(response, None) is None:
                return  # timed out by the watchdog already, and counted then
            self.in_flight -= 1
            if failure is not None:
                self._stopped = True
                self.failures.append(failure)

    # -- timeouts --------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        assert self._create_timer is not None
        timer = self._create_timer(max(delay, 0.001), self._watch)
        with self._lock:
            if not self._settled:
                self._watchdog = timer
                return
        with contextlib.suppress(Exception):
            timer.cancel()  # settled meanwhile (another reactor thread): not needed

    def _watch(self) -> None:
        """The watchdog timer (driver's thread): time out what is past its deadline.

        Never raises: the driver's timer loop would call it again and again.
        """
        assert self._timeout is not None
        try:
            now = time.monotonic()
            expired: list[Any] = []
            next_check = self._timeout
            with self._lock:
                if self._settled:
                    return
                for response, sent in self._started.items():
                    if sent + self._timeout > now:
                        next_check = sent + self._timeout - now  # the oldest left
                        break
                    expired.append(response)
            for response in expired:
                self._time_out(response)
            with self._lock:
                if self._settled:
                    return
            self._arm(next_check)
        except BaseException as exc:  # pragma: no cover - a driver bug; fail the call
            with self._lock:
                self._stopped = True
                self.failures.append(exc)

    def _time_out(self, response: Any) -> None:
        handler = getattr(response, "_on_timeout", None)
        if handler is not None:
            try:
                # What the driver's own timer calls: the stream id is orphaned (a late
                # answer cannot be mistaken for another request's) and the request
                # fails with OperationTimedOut, through our errback.
                handler()
                return
            except Exception:  # pragma: no cover - fall back to failing it ourselves
                pass
        with contextlib.suppress(Exception):
            response.clear_callbacks()
        host = getattr(response, "coordinator_host", None)
        self._done(OperationTimedOut(f"no answer in {self._timeout}s", host), response)
        self.pump()

    def _report(self) -> None:
        # The one crossing to the event loop of the whole call.
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(_resolve, self._future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled by the awaiting task: nobody waits
        future.set_result(None)


def _reactor_timer(session: Any) -> Callable[[float, Callable[[], None]], Any] | None:
    """The reactor's ``create_timer(delay, callback)``, if its connection class has one.

    Its callbacks run on the driver's I/O thread (libev), or on the reactor's own thread
    or loop for other reactors.
    """
    connection_class = getattr(getattr(session, "cluster", None), "connection_class", None)
    create_timer = getattr(connection_class, "create_timer", None)
    if create_timer is None:
        return None
    if getattr(create_timer, "__func__", None) is Connection.create_timer.__func__:
        return None  # the base class's: NotImplementedError
    return create_timer  # type: ignore[no-any-return]


async def execute_many(
    session: Any,
    statements: Iterable[Statement],
    *,
    window: int,
    profile: Any = None,
    request_timeout: float | None = None,
    rows: list[Row] | None = None,
) -> int:
    """Run every statement, at most ``window`` at a time, pipelined off the event loop.

    Args:
        session: A connected ``cassandra.cluster.Session`` (libev or any reactor whose
            connection class can schedule a timer; otherwise the first window is sent
            from the event loop).
        statements: ``(statement, parameters)`` pairs, taken lazily from the driver's
            I/O thread; building them must be cheap and must not touch the event loop.
        window: Requests in flight at most (at least 1).
        profile: Execution profile (name or object) of every request.
        request_timeout: Seconds each request may take (``None``: the profile's,
            watched by the driver).
        rows: Where to collect the rows of every statement (all pages), in completion
            order; ``None`` for writes.

    Returns:
        How many statements were run.

    Raises:
        BaseException: the first failure, as the driver raised it (callers translate
            it), after every request in flight has settled; a note says how many of
            the statements tried failed. Nothing is reported as written unless every
            statement succeeded.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    kwargs: dict[str, Any] = {} if profile is None else {"execution_profile": profile}
    create_timer = _reactor_timer(session)
    pipeline = _Pipeline(
        session,
        iter(statements),
        max(1, window),
        kwargs,
        rows,
        loop,
        future,
        request_timeout,
        create_timer,
    )
    try:
        if create_timer is None:
            pipeline.start()  # no reactor timer: the loop sends the first window
        else:
            create_timer(0, pipeline.start)
        await future
    except BaseException:
        pipeline.stop()  # cancelled: send nothing more; what is in flight completes
        raise
    if pipeline.failures:
        first = pipeline.failures[0]
        first.add_note(
            f"{len(pipeline.failures)} of the {pipeline.taken} statements tried failed; "
            "none was tried once a failure was seen"
        )
        raise first
    return pipeline.taken
