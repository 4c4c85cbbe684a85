"""What every part of :class:`~aiostream.storage.redis.RedisStorage` shares: the client
and its settings, error translation (``_op``), pipelines that reload scripts, and the
activity-storage shards the timeline reads and writes reach.

The storage is one class made of one mixin per concern of the storage protocol
(:mod:`aiostream.storage.base`): timelines in :mod:`._timelines`, groups and markers in
:mod:`._groups`, the activity storage and leases in :mod:`._storage`; each subclasses
:class:`RedisBase`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError

from aiostream.exceptions import ConfigurationError, ValidationError
from aiostream.ids import ID_KEY_WIDTH, checked_key, valid_keys
from aiostream.settings import Settings
from aiostream.storage.base import Entry, GroupRecord
from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._batching import ReadBatcher
from aiostream.storage.redis._connection import (
    ClientOptions,
    create_client,
    describe_server,
    translate_error,
)
from aiostream.storage.redis._layout import (
    FeedKeys,
    activity_shard_keys,
    activity_shard_opening,
    check_prefix,
    shard_of,
)

# RedisStorage's connection settings default to ClientOptions' own (one place for them).
_DEFAULTS = ClientOptions()


def _text(value: str | bytes) -> str:
    # Injected clients may or may not decode replies; ours do.
    return value if isinstance(value, str) else value.decode()


def _entries(reply: Sequence[Any]) -> list[Entry]:
    """A script's ``hex id, payload, ...`` as entries (decoded if need be)."""
    if reply and not isinstance(reply[0], str):
        reply = [_text(item) for item in reply]
    return [(int(h, 16), p) for h, p in zip(reply[::2], reply[1::2], strict=True)]


def _group_record(name: str, data: str, unseen: bool = False, unread: bool = False) -> GroupRecord:
    """Decode a ``gd`` value: 26-hex id, decimal version, ``|``, payload."""
    bar = data.index("|", ID_KEY_WIDTH)
    return GroupRecord(
        group=name,
        id=int(data[:ID_KEY_WIDTH], 16),
        payload=data[bar + 1 :],
        version=int(data[ID_KEY_WIDTH:bar]),
        unseen=unseen,
        unread=unread,
    )


MAX_POSITION = 2**32
"""Past any position in a Redis sorted set (which holds at most ``2**32 - 1`` members):
larger bounds and lengths are clamped to it, so they mean what they mean on every other
backend instead of overflowing Redis's integers or Lua's doubles."""


def clamped(value: int) -> int:
    """A position or length, clamped to :data:`MAX_POSITION` (same answer, any size)."""
    return value if value < MAX_POSITION else MAX_POSITION


def _check_length(name: str, value: int | None) -> int:
    """``-1`` for None (the scripts' "no trim"), else a non-negative int (clamped)."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(name, f"expected a non-negative int or None, got {value!r}")
    return clamped(value)


def _ttl_ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


class _Operation:
    """``async with storage._op(name)``: readies a cluster client, translates errors."""

    __slots__ = ("operation", "storage")

    def __init__(self, storage: RedisBase, operation: str) -> None:
        self.storage = storage
        self.operation = operation

    async def __aenter__(self) -> None:
        if self.storage._cluster_pending:
            try:
                await self.storage._initialize_cluster()
            except Exception as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        # Returns None, never True: an exception is translated or passed on, never eaten.
        if exc is None:
            return
        translated = translate_error(exc, self.storage.server, operation=self.operation)
        if translated is not None:
            raise translated from exc


class RedisBase:
    """The client, the settings and the plumbing every concern uses (see the module
    docstring); the arguments are :class:`~aiostream.storage.redis.RedisStorage`'s."""

    def __init__(
        self,
        client: Redis | RedisCluster | None = None,
        *,
        url: str | None = None,
        prefix: str = "",
        activity_shards: int = 16,
        cluster: bool | None = None,
        chunk_size: int = 1000,
        max_connections: int = _DEFAULTS.max_connections,
        socket_timeout: float | None = _DEFAULTS.socket_timeout,
        socket_connect_timeout: float | None = _DEFAULTS.socket_connect_timeout,
        pool_timeout: float | None = _DEFAULTS.pool_timeout,
        retries: int = _DEFAULTS.retries,
        **client_kwargs: Any,
    ) -> None:
        if client is not None and (url is not None or client_kwargs):
            raise ConfigurationError("pass either a Redis client or a url (with options), not both")
        if (
            isinstance(activity_shards, bool)
            or not isinstance(activity_shards, int)
            or not (1 <= activity_shards <= 1 << 16)
        ):
            raise ConfigurationError(
                f"activity_shards must be an int in 1..65536, got {activity_shards!r}"
            )
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.prefix = check_prefix(prefix)
        self.activity_shards = activity_shards
        self.chunk_size = chunk_size
        self._owns_client = client is None
        if client is None:
            options = ClientOptions(
                max_connections=max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                pool_timeout=pool_timeout,
                retries=retries,
            )
            client, self.cluster = create_client(
                # The environment's server, or a clear error: never one nobody named.
                url
                if url is not None
                else Settings.from_env(require=["STREAM_REDIS_URL"]).redis_url,
                cluster=cluster,
                options=options,
                **client_kwargs,
            )
        else:
            self.cluster = isinstance(client, RedisCluster)
        self.client: Redis | RedisCluster = client
        # redis-py's command methods are loosely typed; everything goes through
        # execute_command on this alias.
        self._c: Any = client
        self.server = describe_server(client)
        self._tag = "{" + self.prefix
        self._shard_keys = activity_shard_keys(self.prefix, activity_shards)
        self._shard_opening = activity_shard_opening(self.prefix)
        self._closed = False
        self._cluster_pending = self.cluster
        # Whether the cluster runs scripts over several slots of one node (Redis 7+);
        # None until the first fanout tells.
        self._cross_slot: bool | None = None
        self._init_lock = anyio.Lock()
        # Concurrent page reads share round trips (standalone: a cluster pipeline
        # splits by node and would gain little).
        self._reads = None if self.cluster else ReadBatcher(client)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """A storage with its own connection pool (closed by :meth:`aclose`).

        Args:
            url: ``redis://host:port/db``, ``rediss://...`` (TLS), ``unix:///path?db=0``;
                add ``?cluster=true`` (or pass ``cluster=True``) for a Redis Cluster.
            **kwargs: The constructor's keyword arguments (``prefix``,
                ``max_connections``, ``socket_timeout``, ...) and redis-py's.

        Raises:
            ConfigurationError: a bad URL or option.
        """
        return cls(url=url, **kwargs)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def ping(self) -> None:
        """Check that the server (on a cluster, its nodes) answers: a readiness probe.

        Raises:
            StorageUnavailableError: the server is down or refused the connection.
            StorageTimeoutError: it did not answer in time.
        """
        async with self._op("ping"):
            await self._c.execute_command("PING")

    async def aclose(self) -> None:
        """Close the connection pool if this storage created it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            pool = getattr(self.client, "connection_pool", None)
            # aclose() appeared in redis-py 5.0.1; close() is its older name.
            close = getattr(self.client, "aclose", None) or self._c.close
            await close()
            if pool is not None:
                # Redis(connection_pool=...) does not own its pool; we do.
                await pool.disconnect()

    def __repr__(self) -> str:
        kind = "cluster" if self.cluster else "standalone"
        return f"<RedisStorage {kind} {self.server} prefix={self.prefix!r}>"

    # -- plumbing ------------------------------------------------------------------------------

    def _op(self, operation: str) -> _Operation:
        return _Operation(self, operation)

    async def _initialize_cluster(self) -> None:
        # redis-py's RedisCluster sets itself up on first use; tasks that all make their
        # first call at once race in that set-up (redis-py 8.1: "'NoneType' object has
        # no attribute 'writelines'"). One task initializes, the others wait.
        async with self._init_lock:
            if self._cluster_pending:
                await self._c.initialize()
                self._cluster_pending = False

    def _feed(self, key: str) -> FeedKeys:
        return FeedKeys(self.prefix, key)

    async def _pipeline(self, fill: Callable[[Any], object]) -> list[Any]:
        """Run the commands ``fill`` queues in one non-transactional pipeline.

        On ``NOSCRIPT`` the scripts are loaded and the whole pipeline sent again: every
        pipelined write here is idempotent. Raises the first error of any command, so a
        write is never reported done when part of it failed.
        """
        for attempt in range(2):
            pipe = self._c.pipeline(transaction=False)
            fill(pipe)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                await self._load_scripts()
        raise AssertionError("unreachable")  # pragma: no cover

    def _node_calls(self, keys: Sequence[str]) -> list[tuple[Any, list[int]]] | None:
        """The positions of ``keys`` grouped by the cluster node that serves each, cut
        into calls of at most ``chunk_size``: what one cross-slot script per node takes
        (Redis 7's ``allow-cross-slot-keys``: keys of many slots, one node). None when
        the topology is unknown or changing: the per-slot path copes."""
        by_node: dict[str, tuple[Any, list[int]]] = {}
        try:
            node_of = self._c.get_node_from_key
            for position, key in enumerate(keys):
                node = node_of(key)
                by_node.setdefault(node.name, (node, []))[1].append(position)
        except (RedisClusterException, AttributeError):
            return None
        size = self.chunk_size
        return [
            (node, positions[i : i + size])
            for node, positions in by_node.values()
            for i in range(0, len(positions), size)
        ]

    async def _cross_slot_pipeline(self, fill: Callable[[Any], object]) -> list[Any] | None:
        """:meth:`_pipeline` of cross-slot scripts. None when the servers refused them
        (remembered when they cannot run script flags: Redis 6) or a node did not serve
        a key (a slot moved): the caller writes by slot instead, idempotently."""
        try:
            replies = await self._pipeline(fill)
        except (ResponseError, RedisClusterException) as exc:
            if scripts.unsupported_flags(exc):
                self._cross_slot = False
            return None
        self._cross_slot = True
        return replies

    async def _load_scripts(self) -> None:
        # On a cluster redis-py sends SCRIPT LOAD to every primary.
        for script in scripts.ALL_SCRIPTS:
            await self._c.execute_command("SCRIPT LOAD", script.source)
        if self.cluster and self._cross_slot is not False:
            try:
                for script in scripts.CROSS_SLOT_SCRIPTS:
                    await self._c.execute_command("SCRIPT LOAD", script.source)
            except ResponseError as exc:
                if not scripts.unsupported_flags(exc):
                    raise
                self._cross_slot = False

    def _shard_groups(self, ids: Iterable[int]) -> dict[str, list[str]]:
        by_shard: dict[str, list[str]] = defaultdict(list)
        shards, keys = self.activity_shards, self._shard_keys
        for hexed in valid_keys(ids):
            by_shard[keys[int(hexed[-6:], 16) % shards]].append(hexed)
        return by_shard

    def _store_commands(self, entries: Sequence[Entry]) -> list[tuple[Any, ...]]:
        """One ``HSET`` per shard touched by ``entries``."""
        by_shard: dict[str, list[str]] = defaultdict(list)
        shards, keys = self.activity_shards, self._shard_keys
        for activity_id, payload in entries:
            fields = by_shard[keys[shard_of(activity_id, shards)]]
            fields.append(checked_key(activity_id))
            fields.append(payload)
        return [("HSET", shard_key, *fields) for shard_key, fields in by_shard.items()]

    async def _load_hexes(self, hexes: Sequence[str]) -> dict[str, str]:
        by_shard = self._shard_groups(int(h, 16) for h in hexes)
        groups = list(by_shard.items())
        if not groups:
            return {}
        if len(groups) == 1:
            ((shard_key, fields),) = groups
            replies = [await self._c.execute_command("HMGET", shard_key, *fields)]
        else:
            replies = await self._pipeline(
                lambda pipe: [pipe.execute_command("HMGET", k, *f) for k, f in groups]
            )
        found: dict[str, str] = {}
        for (_, fields), values in zip(groups, replies, strict=True):
            for hexed, value in zip(fields, values, strict=True):
                if value is not None:
                    found[hexed] = _text(value)
        return found
