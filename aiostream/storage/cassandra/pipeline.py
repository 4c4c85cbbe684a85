"""Many statements in flight, pipelined on the driver's I/O thread.

:func:`~aiostream.storage.cassandra.bridge.execute` crosses from the driver's thread to
the event loop once per request: a ``call_soon_threadsafe`` (a self-pipe write) and a
task wakeup each. For a fanout of 100,000 single-partition writes that hand-off, and the
GIL ping-pong between the two threads, cost more than the requests themselves.

:func:`execute_many` keeps the pipeline going from the driver's side instead, the way
the driver's own ``execute_concurrent`` does, without blocking any thread: up to
``window`` requests are in flight, and the callback of each completed request sends the
next one. The first requests are sent from the driver's I/O thread too (through a
zero-delay reactor timer), so the event loop does no driver work at all: it awaits one
future, resolved once when every statement has settled.

Errors are kept per statement. The first failure stops the sending of new statements;
those in flight are waited for; then the first failure is raised, with a note counting
what failed out of what was tried. Success means every statement succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from aiostream.storage.cassandra.bridge import Row

__all__ = ["Statement", "execute_many"]

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
        self._report()

    def _send(self, statement: Any, parameters: Sequence[Any] | None) -> None:
        try:
            response = self._session.execute_async(statement, parameters, **self._kwargs)
            # May run a callback right here (the driver failed the request at once):
            # it only counts, since this thread is the one pumping.
            response.add_callbacks(
                self._on_page, self._on_error, callback_args=(response,), errback_args=(response,)
            )
        except BaseException as exc:
            self._done(exc)

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
            self._done(None)
        except BaseException as exc:
            self._done(exc)
        self.pump()

    def _on_error(self, exc: BaseException, response: Any) -> None:
        with contextlib.suppress(BaseException):
            response.clear_callbacks()
        self._done(exc)
        self.pump()

    def _done(self, failure: BaseException | None) -> None:
        with self._lock:
            self.in_flight -= 1
            if failure is not None:
                self._stopped = True
                self.failures.append(failure)

    def _report(self) -> None:
        # The one crossing to the event loop of the whole call.
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(_resolve, self._future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled by the awaiting task: nobody waits
        future.set_result(None)


def _start_on_driver_thread(session: Any, pipeline: _Pipeline) -> bool:
    """Have the driver's I/O thread send the first window (False: no way to)."""
    connection_class = getattr(getattr(session, "cluster", None), "connection_class", None)
    create_timer = getattr(connection_class, "create_timer", None)
    if create_timer is None:
        return False
    try:
        create_timer(0, pipeline.pump)
    except NotImplementedError:
        return False
    return True


async def execute_many(
    session: Any,
    statements: Iterable[Statement],
    *,
    window: int,
    profile: Any = None,
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
    pipeline = _Pipeline(session, iter(statements), max(1, window), kwargs, rows, loop, future)
    try:
        if not _start_on_driver_thread(session, pipeline):
            pipeline.pump()
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
