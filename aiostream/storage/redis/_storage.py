"""``RedisStorage``: the :class:`~aiostream.storage.base.FeedStorage` protocol on Redis.

The key layout is described in :mod:`aiostream.storage.redis._layout`, the scripts in
:mod:`aiostream.storage.redis._scripts`. How each operation travels:

* ``add_to_timelines``, standalone server: ``feed.add`` (one feed, ``store=True``) is one
  script that stores the activities and adds them; fanout (``store=False``) is one
  ``EVALSHA`` per ``chunk_size`` feeds (add and trim of every feed in one script), all
  in one pipeline with the activity-storage ``HSET`` s when there are several.
* ``add_to_timelines`` / ``remove_from_timelines`` on a cluster: one script per node
  (Redis 7's ``allow-cross-slot-keys``), else one command per feed in a cluster
  pipeline that redis-py splits by node.
* ``read_timeline``: one script on a standalone server (range + payloads). On a
  cluster the activity shards live in other slots: the range, then the ``HMGET`` s
  pipelined.
* ``read_timeline`` / ``read_groups`` on a standalone server, while other reads are in
  flight: queued, and sent with the reads queued in the same event-loop step in one
  pipeline (:mod:`aiostream.storage.redis._batching`).
* group operations: one script each over the feed's keys (one slot), atomic. An
  aggregated add is one of them (``merge_groups``): the server merges the activities
  into the stored groups, no read and compare-and-set.
* activity storage: one ``HSET`` / ``HMGET`` / ``HDEL`` per shard touched, pipelined.

Every method raises :class:`~aiostream.exceptions.StorageUnavailableError` (server down
or refusing connections), :class:`~aiostream.exceptions.StorageTimeoutError` (no answer
within ``socket_timeout``) or :class:`~aiostream.exceptions.StorageError` (any other
Redis error), naming the server, with the redis-py exception as ``__cause__``; and
:class:`~aiostream.exceptions.ValidationError` for an id outside ``0..2**104-1`` or a
negative length, before anything is sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError

from aiostream.exceptions import ConfigurationError, ConflictError, ValidationError
from aiostream.ids import ID_KEY_WIDTH, checked_key, valid_keys
from aiostream.query import Query
from aiostream.settings import Settings
from aiostream.storage.base import Entry, GroupChange, GroupMerge, GroupRecord, GroupRewrite
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
    group_bounds,
    shard_of,
    timeline_bounds,
)

# RedisStorage's connection settings default to ClientOptions' own (one place for them).
_DEFAULTS = ClientOptions()


def _text(value: str | bytes) -> str:
    # Injected clients may or may not decode replies; ours do.
    return value if isinstance(value, str) else value.decode()


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


def _check_length(name: str, value: int | None) -> int:
    """``-1`` for None (the scripts' "no trim"), else a non-negative int."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(name, f"expected a non-negative int or None, got {value!r}")
    return value


def _ttl_ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


class _Operation:
    """``async with storage._op(name)``: readies a cluster client, translates errors."""

    __slots__ = ("operation", "storage")

    def __init__(self, storage: RedisStorage, operation: str) -> None:
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


class RedisStorage:
    """Feeds, groups and activities in Redis (standalone or Cluster), via ``redis.asyncio``.

    Give it a client (left open on :meth:`aclose`) or a URL (its pool is closed on
    :meth:`aclose`); with neither it connects to ``STREAM_REDIS_URL`` (default
    ``redis://127.0.0.1:6379/0``). Building it does no I/O; connections are made on
    first use, in the running event loop, and are bound to it.

    Args:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``.
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, used when ``client`` is None.
        prefix: Prepended to every key (isolates applications or tests on one server).
        activity_shards: Hashes the activity storage is split into; the same for every
            client of one prefix.
        cluster: With ``url``: force a cluster client (True) or a standalone one
            (False); None reads ``?cluster=true`` from the URL.
        chunk_size: Feeds per script call in ``add_to_timelines`` (bounds how long one
            script blocks a server).
        max_connections: See :class:`~aiostream.storage.redis._connection.ClientOptions`
            (also ``socket_timeout``, ``socket_connect_timeout``, ``pool_timeout``,
            ``retries``); only for clients built here.
        **client_kwargs: More redis-py client arguments (with ``url`` only).

    Raises:
        ConfigurationError: both ``client`` and ``url``, a bad prefix or URL.

    Example::

        async with RedisStorage.from_url("redis://localhost:6379/0") as storage:
            feed = PinFeed(13, storage=storage)
            await feed.add(activity)
    """

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
                url if url is not None else Settings.from_env().redis_url,
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
    def from_url(cls, url: str, **kwargs: Any) -> RedisStorage:
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

    async def __aenter__(self) -> RedisStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

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

    async def _load_scripts(self) -> None:
        # On a cluster redis-py sends SCRIPT LOAD to every primary.
        for script in scripts.ALL_SCRIPTS:
            await self._c.execute_command("SCRIPT LOAD", script.source)
        if self.cluster and self._cross_slot is not False:
            try:
                await self._c.execute_command("SCRIPT LOAD", scripts.TIMELINES_CROSS_SLOT.source)
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

    # -- activity storage ------------------------------------------------------------------

    async def store_activities(self, entries: Sequence[Entry]) -> None:
        """Insert or overwrite activities (one ``HSET`` per shard, pipelined).

        Raises:
            ValidationError: an id outside ``0..2**104-1``.
            StorageError: Redis failed (subclasses for down / timeout).
        """
        if not entries:
            return
        commands = self._store_commands(entries)
        async with self._op("store_activities"):
            if len(commands) == 1:
                await self._c.execute_command(*commands[0])
            else:
                await self._pipeline(lambda pipe: [pipe.execute_command(*c) for c in commands])

    async def load_activities(self, ids: Sequence[int]) -> dict[int, str]:
        """Payloads of the stored ``ids``; missing ones are left out."""
        async with self._op("load_activities"):
            found = await self._load_hexes(valid_keys(ids))
        return {int(h, 16): payload for h, payload in found.items()}

    async def delete_activities(self, ids: Sequence[int]) -> None:
        """Remove activities from the activity storage (missing ones are ignored)."""
        groups = list(self._shard_groups(ids).items())
        if not groups:
            return
        async with self._op("delete_activities"):
            await self._pipeline(
                lambda pipe: [pipe.execute_command("HDEL", k, *f) for k, f in groups]
            )

    # -- flat timelines ----------------------------------------------------------------------

    async def add_to_timelines(
        self,
        keys: Sequence[str],
        entries: Sequence[Entry],
        *,
        max_length: int | None,
        store: bool,
    ) -> None:
        """Add every entry to every feed, trimming each atomically with its add.

        Raises:
            ValidationError: an id outside ``0..2**104-1`` or a negative ``max_length``
                (before anything is written).
            StorageError: Redis failed (subclasses for down / timeout); part of the
                feeds may have been written (retrying is safe: adds are idempotent).
        """
        trim = _check_length("max_length", max_length)
        hexes = [checked_key(activity_id) for activity_id, _ in entries]
        tag = self._tag
        timelines = [tag + key + "}:t" for key in keys]
        if not hexes:
            # Nothing to add, but the memory storage still trims: so do we.
            if trim >= 0 and timelines:
                async with self._op("add_to_timelines"):
                    await self._pipeline(
                        lambda pipe: [
                            pipe.execute_command("ZREMRANGEBYRANK", t, 0, -trim - 1)
                            for t in timelines
                        ]
                    )
            return
        stores = self._store_commands(entries) if store else []
        if not timelines and not stores:
            return
        async with self._op("add_to_timelines"):
            if self.cluster:
                if stores:
                    # Stored first: the nodes of one cluster pipeline run its commands in
                    # no set order, and a read that met the entry before its activity
                    # would take it for a deleted one and remove it.
                    await self._pipeline(lambda pipe: [pipe.execute_command(*c) for c in stores])
                await self._cluster_fanout(
                    "add",
                    timelines,
                    hexes,
                    trim,
                    [],
                    lambda pipe: self._queue_cluster_add(pipe, timelines, hexes, trim, []),
                )
                return
            args = [trim, *hexes]
            size = self.chunk_size
            if not stores and len(timelines) <= size:
                await scripts.ADD_TO_TIMELINES(self._c, timelines, args)
                return
            if len(timelines) <= size and len(entries) <= size:
                # The feed.add path: one command instead of a pipeline of several.
                shard_keys, shards = self._shard_keys, self.activity_shards
                pairs: list[Any] = [trim, len(timelines)]
                for (_, payload), hexed in zip(entries, hexes, strict=True):
                    pairs.append(hexed)
                    pairs.append(payload)
                await scripts.STORE_AND_ADD(
                    self._c,
                    [*timelines, *(shard_keys[shard_of(i, shards)] for i, _ in entries)],
                    pairs,
                )
                return

            def fill(pipe: Any) -> None:
                for command in stores:
                    pipe.execute_command(*command)
                for i in range(0, len(timelines), size):
                    scripts.ADD_TO_TIMELINES.queue(pipe, timelines[i : i + size], args)

            await self._pipeline(fill)

    async def _cluster_fanout(
        self,
        operation: str,
        timelines: list[str],
        hexes: list[str],
        trim: int,
        stores: list[tuple[Any, ...]],
        fallback: Callable[[Any], object],
    ) -> None:
        """Write many timelines on a cluster: one script per node when the servers allow.

        A plain cluster pipeline costs redis-py ~30 µs of Python per command, i.e. per
        feed. Redis 7's ``allow-cross-slot-keys`` lets one script write the keys of many
        slots as long as one node serves them all, so a chunk becomes one command per
        node. Anything unexpected (Redis 6, a slot moving mid-call: the script stops at
        the first key its node does not serve) falls back to ``fallback``, a per-feed
        pipeline that follows redirections; adds and removes are idempotent, so feeds
        the first attempt wrote are simply written again.

        Args:
            operation: ``"add"`` or ``"remove"``.
            timelines: Timeline keys.
            hexes: Member ids.
            trim: ``max_length`` or -1 (add only).
            stores: Activity-storage commands to send in the same pipeline.
            fallback: Fills a pipeline with the per-feed commands.
        """
        by_node: dict[str, tuple[Any, list[str]]] = {}
        if self._cross_slot is not False:
            try:
                node_of = self._c.get_node_from_key
                for timeline in timelines:
                    node = node_of(timeline)
                    by_node.setdefault(node.name, (node, []))[1].append(timeline)
            except (RedisClusterException, AttributeError):
                by_node = {}  # topology unknown or changing: the per-feed path copes
        if by_node:
            head = [operation, trim, len(hexes), *hexes]
            size = self.chunk_size

            def fill(pipe: Any) -> None:
                for command in stores:
                    pipe.execute_command(*command)
                for node, keys in by_node.values():
                    for i in range(0, len(keys), size):
                        scripts.TIMELINES_CROSS_SLOT.queue(
                            pipe, [], [*head, *keys[i : i + size]], target_nodes=node
                        )

            try:
                await self._pipeline(fill)
            except (ResponseError, RedisClusterException) as exc:
                if scripts.unsupported_flags(exc):
                    self._cross_slot = False
            else:
                self._cross_slot = True
                return
        await self._pipeline(fallback)

    def _queue_cluster_add(
        self,
        pipe: Any,
        timelines: list[str],
        hexes: list[str],
        trim: int,
        stores: list[tuple[Any, ...]],
    ) -> None:
        for command in stores:
            pipe.execute_command(*command)
        if trim < 0:
            # A lone ZADD is atomic already; no script needed.
            members: list[Any] = []
            for hexed in hexes:
                members.append(0)
                members.append(hexed)
            for timeline in timelines:
                pipe.execute_command("ZADD", timeline, *members)
            return
        by_slot: dict[int, list[str]] = defaultdict(list)
        keyslot = self._c.keyslot
        for timeline in timelines:
            by_slot[keyslot(timeline)].append(timeline)
        args = [trim, *hexes]
        for slot_keys in by_slot.values():
            scripts.ADD_TO_TIMELINES.queue(pipe, slot_keys, args)

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        """Remove ids from every feed in ``keys`` (missing ones are ignored)."""
        hexes = valid_keys(ids)
        if not hexes or not keys:
            return
        timelines = [self._tag + key + "}:t" for key in keys]
        async with self._op("remove_from_timelines"):
            if self.cluster:
                await self._cluster_fanout(
                    "remove",
                    timelines,
                    hexes,
                    -1,
                    [],
                    lambda pipe: [pipe.execute_command("ZREM", t, *hexes) for t in timelines],
                )
                return
            size = self.chunk_size
            if len(timelines) <= size:
                await scripts.REMOVE_FROM_TIMELINES(self._c, timelines, hexes)
                return

            def fill(pipe: Any) -> None:
                for i in range(0, len(timelines), size):
                    scripts.REMOVE_FROM_TIMELINES.queue(pipe, timelines[i : i + size], hexes)

            await self._pipeline(fill)

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        """The ``[start:stop]`` window of the live entries under ``query``, with payloads.

        One round trip on a standalone server (one script: range, payloads, and the
        removal of entries whose activity is gone, the page filled from the entries after
        them), two on a cluster (the range, then the payloads; entries whose activity is
        gone cost a removal and another range and read).
        """
        if query.is_empty or (stop is not None and stop <= start):
            return []
        low, high = timeline_bounds(query)
        count = -1 if stop is None else stop - start
        timeline = self._tag + key + "}:t"
        async with self._op("read_timeline"):
            if self._reads is not None:
                # (bounds are "-", "+" or a bracket and hex digits: never a space)
                numbers = (
                    f"{low} {high} {start} {count} {int(query.descending)} {self.activity_shards}"
                )
                reply = await self._reads.call(
                    scripts.READ_TIMELINE, [timeline], [numbers, self._shard_opening]
                )
                if reply and not isinstance(reply[0], str):
                    reply = [_text(item) for item in reply]
                return [(int(h, 16), p) for h, p in zip(reply[::2], reply[1::2], strict=True)]
            return await self._read_cluster_timeline(timeline, low, high, start, count, query)

    async def _read_cluster_timeline(
        self, timeline: str, low: str, high: str, skip: int, want: int, query: Query
    ) -> list[Entry]:
        """:meth:`read_timeline` on a cluster: what the read script does on a standalone
        server, in steps (the activity shards live in other slots than the timeline)."""
        page: list[Entry] = []
        while True:
            ask = -1 if want < 0 else skip + want
            if query.descending:
                members = await self._c.execute_command(
                    "ZREVRANGEBYLEX", timeline, high, low, "LIMIT", 0, ask
                )
            else:
                members = await self._c.execute_command(
                    "ZRANGEBYLEX", timeline, low, high, "LIMIT", 0, ask
                )
            hexes = [_text(m) for m in members]
            found = await self._load_hexes(hexes)
            dead: list[str] = []
            for hexed in hexes:
                payload = found.get(hexed)
                if payload is None:
                    dead.append(hexed)
                elif skip:
                    skip -= 1
                else:
                    page.append((int(hexed, 16), payload))
                    if want > 0:
                        want -= 1
            if not dead:
                return page
            await self._c.execute_command("ZREM", timeline, *dead)
            if ask < 0 or len(hexes) < ask or want == 0:
                return page
            # Go on after the last entry read: bounds, not positions, so entries added
            # meanwhile neither repeat nor shift the page.
            if query.descending:
                high = "(" + hexes[-1]
            else:
                low = "(" + hexes[-1]

    async def count_timeline(self, key: str) -> int:
        """Number of entries in the feed (``ZCARD``)."""
        async with self._op("count_timeline"):
            return int(await self._c.execute_command("ZCARD", self._tag + key + "}:t"))

    async def trim_timeline(self, key: str, max_length: int) -> None:
        """Keep the newest ``max_length`` entries (one ``ZREMRANGEBYRANK``)."""
        length = _check_length("max_length", max_length)
        async with self._op("trim_timeline"):
            await self._c.execute_command(
                "ZREMRANGEBYRANK", self._tag + key + "}:t", 0, -length - 1
            )

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        """Position from the newest (``ZREVRANK``), None when absent."""
        hexes = valid_keys([activity_id])
        if not hexes:
            return None
        async with self._op("timeline_index_of"):
            rank = await self._c.execute_command("ZREVRANK", self._tag + key + "}:t", hexes[0])
        return None if rank is None else int(rank)

    # -- groups ------------------------------------------------------------------------------

    async def read_groups(
        self, key: str, start: int, stop: int | None, query: Query, *, markers: bool
    ) -> list[GroupRecord]:
        """The ``[start:stop]`` window of groups under ``query`` (one script)."""
        if query.is_empty or (stop is not None and stop <= start):
            return []
        low, high = group_bounds(query)
        count = -1 if stop is None else stop - start
        args = [low, high, start, count, "1" if query.descending else "0", "1" if markers else "0"]
        keys = self._feed(key).group_keys
        async with self._op("read_groups"):
            if self._reads is not None:
                reply = await self._reads.call(scripts.READ_GROUPS, keys, args)
            else:
                reply = await scripts.READ_GROUPS(self._c, keys, args)
        step = 4 if markers else 2
        records = []
        for i in range(0, len(reply), step):
            name = _text(reply[i])[ID_KEY_WIDTH:]
            data = _text(reply[i + 1])
            if markers:
                records.append(_group_record(name, data, bool(reply[i + 2]), bool(reply[i + 3])))
            else:
                records.append(_group_record(name, data))
        return records

    async def get_groups(self, key: str, groups: Sequence[str]) -> dict[str, GroupRecord]:
        """Current records of the named groups (one ``HMGET``)."""
        names = list(groups)
        if not names:
            return {}
        async with self._op("get_groups"):
            values = await self._c.execute_command("HMGET", self._feed(key).group_data, *names)
        found: dict[str, GroupRecord] = {}
        for name, value in zip(names, values, strict=True):
            if value is not None:
                found[name] = _group_record(name, _text(value))
        return found

    async def write_groups(
        self,
        key: str,
        changes: Sequence[GroupChange],
        *,
        max_length: int | None,
        track_markers: bool,
    ) -> bool:
        """Compare-and-set over the feed's groups in one script (see the protocol).

        Returns:
            False, having written nothing, when a group's version is no longer the
            expected one.

        Raises:
            ValidationError: an id outside ``0..2**104-1`` or a negative ``max_length``.
            StorageError: Redis failed (the script is atomic: all or nothing).
        """
        trim = _check_length("max_length", max_length)
        args: list[Any] = ["1" if track_markers else "0", trim]
        for change in changes:
            args.append(change.group)
            expected = change.expected_version
            args.append("" if expected is None else str(int(expected)))
            new = change.new
            if new is None:
                args.append("")
                args.append("")
            else:
                if new.group != change.group:
                    raise ValidationError(
                        "changes", f"record of group {new.group!r} filed under {change.group!r}"
                    )
                args.append(checked_key(new.id))
                args.append(f"{int(new.version)}|{new.payload}")
        async with self._op("write_groups"):
            written = await scripts.WRITE_GROUPS(self._c, self._feed(key).group_keys, args)
        return bool(written)

    async def merge_groups(
        self,
        keys: Sequence[str],
        merges: Sequence[GroupMerge],
        *,
        cap: int,
        max_length: int | None,
        track_markers: bool,
        results: bool = True,
    ) -> list[list[tuple[bool, GroupRecord]] | None]:
        """Merge activities into the groups of many feeds: one script per ``chunk_size``
        feeds (on a cluster, per slot), all in one pipeline; an aggregated add or a
        fanout chunk is one round trip (see
        :class:`~aiostream.storage.base.GroupMergeStorage`).

        Raises:
            ValidationError: an id outside ``0..2**104-1``, a negative ``cap`` or
                ``max_length``, or a record filed under another group.
            StorageError: Redis failed (each feed's script is atomic; feeds of other
                scripts may have been written: merging again is idempotent).
        """
        trim = _check_length("max_length", max_length)
        keep = _check_length("cap", cap)
        args: list[Any] = ["1" if track_markers else "0", trim, keep, "1" if results else "0"]
        for merge in merges:
            record = merge.record
            if record.group != merge.group:
                raise ValidationError(
                    "merges", f"record of group {record.group!r} filed under {merge.group!r}"
                )
            args += (merge.group, merge.header, checked_key(record.id), record.payload)
            args.append(len(merge.activities))
            for activity_id, time_us, payload in merge.activities:
                args += (checked_key(activity_id), int(time_us), payload)
        if not merges or not keys:
            return [[] for _ in keys]
        batches = self._group_batches(keys)
        async with self._op("merge_groups"):
            if len(batches) == 1:
                replies = [await scripts.MERGE_GROUPS(self._c, batches[0][1], args)]
            else:

                def fill(pipe: Any) -> None:
                    for _, batch_keys in batches:
                        scripts.MERGE_GROUPS.queue(pipe, batch_keys, args)

                replies = await self._pipeline(fill)
        merged: dict[int, list[tuple[bool, GroupRecord]] | None] = {}
        for (positions, _), reply in zip(batches, replies, strict=True):
            at = 0
            for position in positions:
                count = int(reply[at])
                at += 1
                if count < 0:
                    merged[position] = None
                    continue
                written = []
                if results:
                    for i in range(at, at + 3 * count, 3):
                        record = _group_record(_text(reply[i + 1]), _text(reply[i + 2]))
                        written.append((bool(int(reply[i])), record))
                    at += 3 * count
                merged[position] = written
        return [merged[i] for i in range(len(keys))]

    def _group_batches(self, keys: Sequence[str]) -> list[tuple[list[int], list[str]]]:
        """The group keys of ``keys`` cut into script calls: ``chunk_size`` feeds per call
        (on a cluster, only feeds of one slot share a call). Each batch is the feeds'
        positions in ``keys`` and their four keys each."""
        size = self.chunk_size
        batches: dict[Any, tuple[list[int], list[str]]] = {}
        keyslot = self._c.keyslot if self.cluster else None
        for position, key in enumerate(keys):
            group_keys = self._feed(key).group_keys
            bucket = keyslot(group_keys[0]) if keyslot is not None else position // size
            positions, batch_keys = batches.setdefault(bucket, ([], []))
            positions.append(position)
            batch_keys += group_keys
        return list(batches.values())

    async def update_groups(
        self,
        keys: Sequence[str],
        groups: Sequence[str],
        rewrite: GroupRewrite,
        *,
        max_attempts: int,
    ) -> None:
        """Rewrite groups of many feeds in place (see the protocol): one pipeline of
        ``HMGET`` s, then one of compare-and-set scripts (one per feed written), again
        for the groups that changed in between.

        Raises:
            ConflictError: some group kept changing for ``max_attempts`` rounds.
        """
        names = list(dict.fromkeys(groups))
        feed_keys = {self._feed(key).group_data: key for key in keys}
        pending = list(feed_keys)
        if not names:
            return
        async with self._op("update_groups"):
            for _ in range(max(max_attempts, 1)):
                pending = await self._rewrite_groups(pending, names, feed_keys, rewrite)
                if not pending:
                    return
        raise ConflictError(
            f"update_groups: groups of {len(pending)} feed(s) kept changing for "
            f"{max_attempts} attempts"
        )

    async def _rewrite_groups(
        self,
        data_keys: list[str],
        names: list[str],
        feed_keys: dict[str, str],
        rewrite: GroupRewrite,
    ) -> list[str]:
        """One round of :meth:`update_groups`; returns the group data keys of the feeds
        where some group changed between the read and the write (to do again)."""
        replies = await self._pipeline(
            lambda pipe: [pipe.execute_command("HMGET", d, *names) for d in data_keys]
        )
        writes: list[tuple[str, list[Any]]] = []
        for data_key, values in zip(data_keys, replies, strict=True):
            args: list[Any] = []
            for name, value in zip(names, values, strict=True):
                if value is None:
                    continue
                record = _group_record(name, _text(value))
                payload = rewrite(feed_keys[data_key], record)
                if payload is not None and payload != record.payload:
                    args += (name, str(record.version), payload)
            if args:
                writes.append((data_key, args))
        if not writes:
            return []

        def fill(pipe: Any) -> None:
            for data_key, args in writes:
                scripts.REPLACE_GROUPS.queue(pipe, [data_key], args)

        results = await self._pipeline(fill)
        return [
            d for (d, _), written in zip(writes, results, strict=True) if not all(map(int, written))
        ]

    async def count_groups(self, key: str) -> int:
        """Number of groups in the feed (``ZCARD``)."""
        async with self._op("count_groups"):
            return int(await self._c.execute_command("ZCARD", self._feed(key).groups))

    async def trim_groups(self, key: str, max_length: int) -> None:
        """Keep the newest ``max_length`` groups, dropping the others' data and markers."""
        length = _check_length("max_length", max_length)
        async with self._op("trim_groups"):
            await scripts.TRIM_GROUPS(self._c, self._feed(key).group_keys, [length])

    async def groups_index_of(self, key: str, group_id: int) -> int | None:
        """Position of a group id from the newest, None when absent."""
        hexes = valid_keys([group_id])
        if not hexes:
            return None
        bounds = group_bounds(Query(low=group_id, high=group_id))
        async with self._op("groups_index_of"):
            rank = await scripts.GROUP_INDEX(self._c, [self._feed(key).groups], list(bounds))
        return None if rank is None or int(rank) < 0 else int(rank)

    async def mark_groups(
        self, key: str, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> None:
        """Clear unseen and / or unread markers of group ids (None: of every group)."""
        if not (seen or read):
            return
        hexes = [] if ids is None else valid_keys(ids)
        if ids is not None and not hexes:
            return
        feed = self._feed(key)
        args = ["1" if seen else "0", "1" if read else "0", "1" if ids is None else "0", *hexes]
        async with self._op("mark_groups"):
            await scripts.MARK_GROUPS(self._c, [feed.unseen, feed.unread], args)

    async def count_markers(self, key: str) -> tuple[int, int]:
        """``(unseen, unread)`` counts, read together."""
        feed = self._feed(key)
        async with self._op("count_markers"):
            unseen, unread = await scripts.COUNT_MARKERS(self._c, [feed.unseen, feed.unread], [])
        return int(unseen), int(unread)

    # -- leases ------------------------------------------------------------------------------

    def _lease_key(self, name: str) -> str:
        return f"{self._tag}lease:{name}}}"

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """``SET NX PX``: taken only if nobody holds it."""
        async with self._op("acquire_lease"):
            taken = await self._c.execute_command(
                "SET", self._lease_key(name), owner, "NX", "PX", _ttl_ms(ttl)
            )
        return bool(taken)

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Extend the expiry if ``owner`` still holds it (one script)."""
        async with self._op("renew_lease"):
            renewed = await scripts.RENEW_LEASE(
                self._c, [self._lease_key(name)], [owner, _ttl_ms(ttl)]
            )
        return bool(int(renewed))

    async def release_lease(self, name: str, owner: str) -> None:
        """Delete it if ``owner`` still holds it (one script)."""
        async with self._op("release_lease"):
            await scripts.RELEASE_LEASE(self._c, [self._lease_key(name)], [owner])

    # -- whole feeds -------------------------------------------------------------------------

    async def delete_feeds(self, keys: Sequence[str]) -> None:
        """Delete every key of each feed (one ``DEL`` per feed, pipelined)."""
        if not keys:
            return
        doomed = [self._feed(key).all for key in keys]
        async with self._op("delete_feeds"):
            if len(doomed) == 1:
                await self._c.execute_command("DEL", *doomed[0])
            else:
                await self._pipeline(lambda pipe: [pipe.execute_command("DEL", *d) for d in doomed])
