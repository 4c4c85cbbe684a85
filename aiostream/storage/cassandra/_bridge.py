"""Awaiting the Cassandra driver from asyncio, and translating its errors.

scylla-driver has no awaitable API. ``Session.execute_async`` returns a
``ResponseFuture`` that completes on the driver's own I/O thread (the libev reactor), so
:func:`execute` hands each result to the event loop with ``call_soon_threadsafe``.
Many statements at once go through :mod:`~aiostream.storage.cassandra._pipeline`
instead, which crosses to the loop once per call. The loop never blocks on the driver:
paging continues from the driver's callback thread, and everything that does block
(``Cluster.connect``, ``Session.prepare``, ``Cluster.shutdown``) runs in a worker thread
through :func:`run_blocking`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from cassandra import (
    AuthenticationFailed,
    DriverException,
    InvalidRequest,
    OperationTimedOut,
    Timeout,
    Unavailable,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

from aiostream.exceptions import (
    SchemaError,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
)

T = TypeVar("T")
Row = tuple[Any, ...]

# Phrases of Cassandra's InvalidRequest messages that mean "the schema is not there".
_SCHEMA_PHRASES = ("unconfigured table", "does not exist", "undefined column name")


def translate_error(
    exc: BaseException, server: str, *, schema_hint: str = ""
) -> StorageError | None:
    """aiostream's exception for a driver one (None: already aiostream's, let it through).

    Args:
        exc: What the driver raised.
        server: The host(s) the storage talks to, named in the message.
        schema_hint: Appended to :class:`SchemaError` messages (the command to run).

    Returns:
        :class:`StorageUnavailableError` when no host is reachable,
        :class:`StorageTimeoutError` on a client or server timeout, :class:`SchemaError`
        when a keyspace, table or column is missing, :class:`StorageError` for anything
        else; each names the server. The caller raises it ``from exc``.
    """
    if isinstance(exc, StorageError) or not isinstance(exc, Exception):
        return None
    if isinstance(exc, NoHostAvailable):
        errors = getattr(exc, "errors", None) or {}
        detail = "; ".join(f"{host}: {error}" for host, error in errors.items()) or str(exc)
        return StorageUnavailableError(f"no Cassandra host available at {server}: {detail}")
    if isinstance(exc, ConnectionException | Unavailable | AuthenticationFailed):
        return StorageUnavailableError(f"Cassandra at {server} is unavailable: {exc}")
    if isinstance(exc, OperationTimedOut | Timeout):
        return StorageTimeoutError(f"Cassandra at {server} did not answer in time: {exc}")
    if isinstance(exc, InvalidRequest) and any(p in str(exc).lower() for p in _SCHEMA_PHRASES):
        hint = f"; create it with: {schema_hint}" if schema_hint else ""
        return SchemaError(f"Cassandra schema problem at {server}: {exc}{hint}")
    if isinstance(exc, DriverException):
        return StorageError(f"Cassandra at {server} failed: {exc}")
    return StorageError(f"Cassandra at {server} failed: {type(exc).__name__}: {exc}")


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():  # cancelled by the awaiting task: nobody wants the result
        future.set_result(value)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # One call_soon_threadsafe per result. Queueing results and draining them in bursts
    # saves self-pipe writes but measured worse: bigger bursts, longer loop stalls.
    with contextlib.suppress(RuntimeError):  # the loop closed while the request was in flight
        loop.call_soon_threadsafe(callback, *args)


async def execute(
    session: Any,
    statement: Any,
    parameters: Sequence[Any] | None = None,
    *,
    profile: Any = None,
    all_pages: bool = False,
) -> list[Row]:
    """Run one statement and return its rows (``[]`` for writes).

    Args:
        session: A connected ``cassandra.cluster.Session``.
        statement: A bound, prepared, batch or simple statement.
        parameters: Values for a simple statement's ``?`` markers.
        profile: Execution profile (name or object) for the request.
        all_pages: Follow paging until the last page (else only the first page,
            ``fetch_size`` rows, is returned: callers use ``LIMIT`` to stay within it).

    The driver's exception is raised as is; callers translate it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[Row]] = loop.create_future()
    kwargs: dict[str, Any] = {} if profile is None else {"execution_profile": profile}
    response = session.execute_async(statement, parameters, **kwargs)
    rows: list[Row] = []

    def on_page(page: Sequence[Row] | None) -> None:
        # Runs on the driver's I/O thread (or right here if the answer is already in).
        if page:
            rows.extend(page)
        if all_pages and response.has_more_pages and not future.done():
            response.start_fetching_next_page()  # this callback runs again for that page
            return
        # The response holds these closures (and its own timeout timer, whose callback
        # is a method of the response) and they hold it. Break both cycles so it is
        # freed now: otherwise ~20 objects per request wait for a full cyclic GC pass,
        # 40-60 ms with the GIL held, a stall of the event loop (7x less garbage so).
        response.clear_callbacks()
        response._timer = None  # private, already cancelled by the driver at this point
        _post(loop, _resolve, future, rows)

    def on_error(exc: BaseException) -> None:
        response.clear_callbacks()
        _post(loop, _reject, future, exc)

    response.add_callbacks(on_page, on_error)
    return await future


async def run_blocking(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking driver call in a worker thread (never on the event loop).

    Cancellation waits for the call to return, so what it opened can still be closed.
    """
    return await anyio.to_thread.run_sync(func, *args)
