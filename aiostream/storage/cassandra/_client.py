"""``CassandraClient``: configuration, connection and statement execution.

The part of :class:`~aiostream.storage.cassandra.CassandraStorage` that is not about
feeds: connecting lazily (off the event loop, once), checking the schema, preparing and
caching statements, running them through :mod:`~aiostream.storage.cassandra._bridge`
with a bound on requests in flight, and translating driver errors.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, Self, TypeVar
from weakref import WeakKeyDictionary

import anyio
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, SimpleStatement, tuple_factory

from aiostream._concurrency import run_bounded
from aiostream.exceptions import ConfigurationError
from aiostream.settings import Settings
from aiostream.storage.base import UpdateStorage
from aiostream.storage.cassandra import _bridge as bridge
from aiostream.storage.cassandra import _pipeline as pipeline
from aiostream.storage.cassandra._schema import (
    check_schema,
    create_schema_command,
    validate_extra_columns,
    validate_identifier,
)
from aiostream.storage.cassandra._statements import Statements

T = TypeVar("T")
ColumnValues = Callable[[int, str], Mapping[str, Any]]
"""Hook filling extra columns: ``(activity id, payload) -> {column: value}``."""

MAX_LIMIT = 2**31 - 1  # CQL LIMIT is a 32-bit int
IN_CHUNK = 100  # ids per ``IN (...)`` list and statements per single-partition batch

# Prepared statements per session, shared by every storage on that session (tests open
# a storage per test on one session; apps may hold several storages).
_prepared: WeakKeyDictionary[Any, dict[str, Any]] = WeakKeyDictionary()


BATCH_BYTES = 5 * 1024
"""Payload bytes in one batch at most: Cassandra's default ``batch_size_warn_threshold``.
A batch of big activities is split rather than logged about, and never reaches the
16 MiB a single CQL message may hold (a feed write over it used to fail)."""


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> list[Sequence[T]]:
    """``items`` cut into lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def sized_chunks(
    items: Sequence[T], size_of: Callable[[T], int], max_bytes: int = BATCH_BYTES
) -> list[Sequence[T]]:
    """``items`` cut into batches of at most ``IN_CHUNK`` whose ``size_of`` adds up to at
    most ``max_bytes`` (an item bigger than that makes a batch of its own)."""
    batches: list[Sequence[T]] = []
    batch: list[T] = []
    used = 0
    for item in items:
        size = size_of(item)
        if batch and (len(batch) >= IN_CHUNK or used + size > max_bytes):
            batches.append(batch)
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        batches.append(batch)
    return batches


class CassandraClient:
    """A connection to Apache Cassandra or ScyllaDB, through scylla-driver, from asyncio.

    The base of :class:`~aiostream.storage.cassandra.CassandraStorage`, which adds the
    feed operations; its arguments are documented here.

    Nothing connects until the first operation. The keyspace and tables must exist
    (:func:`~aiostream.storage.cassandra.create_schema`); a missing one raises
    :class:`~aiostream.exceptions.SchemaError` naming the command that creates it.

    Args:
        hosts: Contact points.
        port: CQL native port.
        keyspace: Keyspace holding the tables.
        consistency: Consistency level name for reads and writes (``"ONE"``,
            ``"LOCAL_QUORUM"``, ...).
        serial_consistency: ``"SERIAL"`` (the server's default) or ``"LOCAL_SERIAL"``
            for the lightweight transactions of aggregated and notification feeds.
        namespace: Prefix of every partition key, so several applications (or test
            runs) can share the tables; ``""`` by default.
        driver_kwargs: Extra ``cassandra.cluster.Cluster(...)`` arguments (compression
            is off unless given here: the driver compresses on the event loop's thread).
        session: A connected driver ``Session`` to use instead of making a cluster;
            it is left open by :meth:`aclose`.
        request_timeout: Client-side timeout of each request, in seconds.
        max_concurrency: Requests in flight at once from this storage.
        extra_columns: ``{name: cql type}`` of extra activity columns (a custom
            activity model), added by ``create_schema`` and filled by ``column_values``.
        column_values: Hook ``(activity id, payload) -> {column: value}``; see
            :func:`~aiostream.storage.cassandra.activity_columns`.
        notifier: Where realtime updates of these feeds go (Cassandra has no pub/sub):
            a :class:`~aiostream.storage.redis.RedisStorage`, opened and closed by
            you. Without one, ``feed.subscribe()`` raises a ``ConfigurationError``.

    Raises:
        ConfigurationError: a bad keyspace, column, type or consistency name (at once,
            before any I/O).
    """

    def __init__(
        self,
        *,
        hosts: Sequence[str] = ("localhost",),
        port: int = 9042,
        keyspace: str = "stream_framework",
        consistency: str = "ONE",
        serial_consistency: str | None = None,
        namespace: str = "",
        driver_kwargs: Mapping[str, Any] | None = None,
        session: Any = None,
        request_timeout: float = 10.0,
        max_concurrency: int = 128,
        extra_columns: Mapping[str, str] | None = None,
        column_values: ColumnValues | None = None,
        notifier: UpdateStorage | None = None,
    ) -> None:
        self.notifier = notifier
        self.hosts = tuple(hosts)
        self.port = port
        self.keyspace = validate_identifier(keyspace)
        level = ConsistencyLevel.name_to_value.get(str(consistency).upper())
        if level is None:
            raise ConfigurationError(
                f"unknown Cassandra consistency level {consistency!r}; "
                f"use one of {sorted(ConsistencyLevel.name_to_value)}"
            )
        self.consistency = level
        self.serial_consistency: int | None = None
        if serial_consistency is not None:
            self.serial_consistency = {
                "SERIAL": ConsistencyLevel.SERIAL,
                "LOCAL_SERIAL": ConsistencyLevel.LOCAL_SERIAL,
            }.get(serial_consistency.upper())
            if self.serial_consistency is None:
                raise ConfigurationError(
                    f"serial consistency must be SERIAL or LOCAL_SERIAL, got {serial_consistency!r}"
                )
        self.namespace = namespace
        self.driver_kwargs = dict(driver_kwargs or {})
        self.request_timeout = request_timeout
        self.max_concurrency = max_concurrency
        self.extra_columns = validate_extra_columns(extra_columns)
        self.column_values = column_values
        self.statements = Statements(self.keyspace, tuple(self.extra_columns))
        self._cluster: Any = None
        self._session: Any = session
        self._profile: Any = None
        self._schema_checked = False
        self._lock = anyio.Lock()
        self._prepare_lock = anyio.Lock()
        # A semaphore with fast_acquire: taking a free slot does not yield to the loop,
        # which would cost a loop iteration per statement (CapacityLimiter yields twice).
        self._slots = anyio.Semaphore(max_concurrency, fast_acquire=True)
        self._where = ", ".join(f"{h}:{port}" for h in self.hosts)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        """A storage configured by :class:`~aiostream.settings.Settings` (``options``
        override or add constructor arguments)."""
        kwargs: dict[str, Any] = {
            "hosts": settings.cassandra_hosts,
            "port": settings.cassandra_port,
            "keyspace": settings.cassandra_keyspace,
            "consistency": settings.cassandra_consistency,
            "driver_kwargs": settings.cassandra_driver_kwargs,
        }
        return cls(**{**kwargs, **options})

    def __repr__(self) -> str:
        ns = f" namespace={self.namespace!r}" if self.namespace else ""
        return f"<{type(self).__name__} {self._where} keyspace={self.keyspace!r}{ns}>"

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Shut down the cluster this storage created (an injected session stays open).

        The storage can be used again afterwards: it reconnects on demand.
        """
        cluster = self._detach()
        if cluster is not None:
            await bridge.run_blocking(cluster.shutdown)

    async def ping(self) -> None:
        """Connect if needed, check the schema once and ask a node for its version: a
        readiness probe.

        Raises:
            StorageUnavailableError: no host answers.
            StorageTimeoutError: the query timed out.
            SchemaError: the keyspace or a table is missing.
        """
        await self._run("SELECT release_version FROM system.local", ())

    def close_nowait(self) -> None:
        """Like :meth:`aclose`, for code without a running event loop: the cluster is
        shut down by a background thread."""
        cluster = self._detach()
        if cluster is not None:
            threading.Thread(
                target=cluster.shutdown, name="aiostream-cassandra-shutdown", daemon=True
            ).start()

    def _detach(self) -> Any:
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            self._session = self._profile = None
            self._schema_checked = False
        return cluster

    def _connect_blocking(self) -> tuple[Any, Any]:
        options: dict[str, Any] = {"contact_points": list(self.hosts), "port": self.port}
        # No compression unless asked for: the driver compresses on the calling thread,
        # the event loop, and feed rows are small (LZ4 framing cost more CPU per request
        # than the whole rest of a fanout write in our measurements).
        options["compression"] = False
        options.update(self.driver_kwargs)
        options.setdefault(
            "execution_profiles",
            {
                EXEC_PROFILE_DEFAULT: ExecutionProfile(
                    # The driver's default, stated: unstated it logs a warning per cluster.
                    load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                    row_factory=tuple_factory,
                )
            },
        )
        cluster = Cluster(**options)
        try:
            return cluster, cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise

    async def _connect(self) -> Any:
        """The session, connecting on first use (off the event loop, once)."""
        if self._session is not None and self._profile is not None:
            return self._session
        async with self._lock:
            if self._session is None:
                try:
                    self._cluster, self._session = await bridge.run_blocking(self._connect_blocking)
                except Exception as exc:
                    self._raise_translated(exc)
            if self._profile is None:
                # A private copy of the session's default profile: rows as tuples and our
                # consistency / timeout, whatever the (possibly injected) session uses.
                self._profile = self._session.execution_profile_clone_update(
                    EXEC_PROFILE_DEFAULT,
                    row_factory=tuple_factory,
                    consistency_level=self.consistency,
                    request_timeout=self.request_timeout,
                )
                if self.serial_consistency is not None:
                    self._profile.serial_consistency_level = self.serial_consistency
        return self._session

    async def get_session(self) -> Any:
        """The connected driver ``Session`` (connecting if needed), for your own CQL.

        Use it with ``execute_async`` or from a worker thread, never with a blocking
        ``execute`` on the event loop.
        """
        return await self._connect()

    async def _ready(self) -> Any:
        """The session, once the schema has been checked (by one task, once)."""
        session = await self._connect()
        if not self._schema_checked:
            async with self._lock:
                if not self._schema_checked:
                    await check_schema(self)
                    self._schema_checked = True
        return session

    def _raise_translated(self, exc: Exception) -> NoReturn:
        """Raise aiostream's error for a driver error, ``from`` it (others as they are)."""
        hint = create_schema_command(self.hosts, self.port, self.keyspace, self.extra_columns)
        error = bridge.translate_error(exc, self._where, schema_hint=hint)
        if error is None:
            raise exc
        for note in getattr(exc, "__notes__", ()):
            error.add_note(note)  # e.g. how many statements of a pipeline failed
        raise error from exc

    # -- executing -------------------------------------------------------------------------------

    async def _prepare(self, session: Any, cql: str) -> Any:
        cache = _prepared.setdefault(session, {})
        statement = cache.get(cql)
        if statement is None:
            # One preparer at a time: the first fanout would otherwise have every
            # worker prepare the same statement at once.
            async with self._prepare_lock:
                statement = cache.get(cql)
                if statement is None:
                    try:
                        statement = await bridge.run_blocking(session.prepare, cql)
                    except Exception as exc:
                        self._raise_translated(exc)
                    cache[cql] = statement
        return statement

    async def _send(
        self, session: Any, statement: Any, all_pages: bool = False
    ) -> list[bridge.Row]:
        async with self._slots:
            try:
                return await bridge.execute(
                    session, statement, profile=self._profile, all_pages=all_pages
                )
            except Exception as exc:
                self._raise_translated(exc)

    async def _run(
        self, cql: str, params: Sequence[Any], *, all_pages: bool = False
    ) -> list[bridge.Row]:
        session = await self._ready()
        prepared = await self._prepare(session, cql)
        return await self._send(session, prepared.bind(params), all_pages)

    async def _batch(self, items: Sequence[tuple[str, Sequence[Any]]]) -> list[bridge.Row]:
        """Run statements on ONE partition together (one statement needs no batch)."""
        if len(items) == 1:
            return await self._run(*items[0])
        session = await self._ready()
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for cql, params in items:
            batch.add(await self._prepare(session, cql), params)
        return await self._send(session, batch)

    async def _take_slots(self, wanted: int) -> int:
        """Take one slot (waiting for it) and up to ``wanted - 1`` more that are free."""
        await self._slots.acquire()
        taken = 1
        while taken < wanted:
            try:
                self._slots.acquire_nowait()
            except anyio.WouldBlock:
                break
            taken += 1
        return taken

    async def _send_many(
        self,
        session: Any,
        statements: Iterable[pipeline.Statement],
        count: int,
        rows: list[bridge.Row] | None = None,
    ) -> None:
        """Run ``count`` statements pipelined on the driver's thread (see
        :mod:`~aiostream.storage.cassandra._pipeline`), within ``max_concurrency``.

        The window is every slot free now, up to ``count``, and at least one: whatever
        else this storage runs meanwhile keeps its share of the limit.
        """
        if count <= 0:
            return
        taken = await self._take_slots(min(count, self.max_concurrency))
        try:
            await pipeline.execute_many(
                session,
                statements,
                window=taken,
                profile=self._profile,
                request_timeout=self.request_timeout,
                rows=rows,
            )
        except Exception as exc:
            self._raise_translated(exc)
        finally:
            for _ in range(taken):
                self._slots.release()

    async def execute_cql(
        self, cql: str, params: Sequence[Any] = (), *, prepare: bool = True
    ) -> list[bridge.Row]:
        """Run one statement without the schema check (used to create the schema).

        ``prepare=False`` sends it as a simple statement (DDL cannot be prepared usefully).
        """
        session = await self._connect()
        statement: Any = SimpleStatement(cql) if not prepare else None
        if statement is None:
            statement = (await self._prepare(session, cql)).bind(params)
        return await self._send(session, statement, all_pages=True)

    async def _each(self, items: Sequence[T], func: Callable[[T], Awaitable[None]]) -> None:
        """``func`` on every item, ``max_concurrency`` at a time; the first error wins
        (nothing starts after it; what is running finishes).

        For work that needs the loop between requests (trims, group rewrites); plain
        statements go through :meth:`_send_many`.
        """
        failures = await run_bounded(items, func, limit=self.max_concurrency, on_failure="stop")
        if failures:
            raise failures[0][1]

    async def _all(self, funcs: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run coroutine functions concurrently; the first error is raised as is."""
        await self._each(funcs, lambda func: func())
