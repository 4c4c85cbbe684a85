"""``RedisStorage``: the :class:`~aiostream.storage.base.FeedStorage` protocol on Redis.

One class of one mixin per concern: timelines (:mod:`._timelines`), groups and markers
(:mod:`._groups`), over the plumbing they share (:mod:`._base`); the activity storage,
leases and whole feeds are here.

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
* ``read_merged`` (a page merged from many feeds, selective materialization's read):
  one script on a standalone server; on a cluster the caller reads the pages.
* ``read_timeline`` / ``read_groups`` on a standalone server, while other reads are in
  flight: queued, and sent with the reads queued in the same event-loop step in one
  pipeline (:mod:`aiostream.storage.redis._batching`).
* group operations: one script each over the feed's keys (one slot), atomic. An
  aggregated add is one of them (``merge_groups``): the server merges the activities
  into the stored groups, no read and compare-and-set; a fanout chunk of aggregated or
  notification feeds is one ``merge_groups`` call, one script per ``chunk_size`` feeds
  (on a cluster: per node, feeds of a moving slot per slot), pipelined.
* activity storage: one ``HSET`` / ``HMGET`` / ``HDEL`` per shard touched, pipelined.

Every method raises :class:`~aiostream.exceptions.StorageUnavailableError` (server down
or refusing connections), :class:`~aiostream.exceptions.StorageTimeoutError` (no answer
within ``socket_timeout``) or :class:`~aiostream.exceptions.StorageError` (any other
Redis error), naming the server, with the redis-py exception as ``__cause__``; and
:class:`~aiostream.exceptions.ValidationError` for an id outside ``0..2**104-1`` or a
negative length, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import ClassVar

from aiostream._concurrency import gather
from aiostream.ids import valid_keys
from aiostream.query import Query
from aiostream.storage.base import Capability, Entry, MergedPage, check_maxima, check_times
from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._base import _entries, _text, _ttl_ms, clamped
from aiostream.storage.redis._groups import RedisGroups
from aiostream.storage.redis._layout import timeline_bounds
from aiostream.storage.redis._timelines import RedisTimelines
from aiostream.storage.redis._updates import RedisUpdates


class RedisStorage(RedisTimelines, RedisGroups, RedisUpdates):
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

    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)
    """All of them: groups and their server-side merge (:class:`RedisGroups`), leases,
    states and merged reads (here), updates over pub/sub (:class:`RedisUpdates`)."""

    joined_reads = 16
    """How many members that joined a set of maxima :meth:`read_merged` reads apart at
    most: a process that knew the set hears of one or two per read and needs no second
    one; a process new to it hears of them all, and reads again with those it follows."""

    # -- activity storage ------------------------------------------------------------------

    async def store_activities(
        self, entries: Sequence[Entry], *, only_new: bool = False
    ) -> dict[int, str]:
        """Insert or overwrite activities (one ``HSET`` per shard, pipelined); with
        ``only_new``, as :meth:`add_to_timelines` with no timeline (one script).

        Raises:
            ValidationError: an id outside ``0..2**104-1``.
            StorageError: Redis failed (subclasses for down / timeout).
        """
        if not entries:
            return {}
        if only_new:
            return await self.add_to_timelines([], entries, max_length=None, store=True)
        commands = self._store_commands(entries)
        async with self._op("store_activities"):
            if len(commands) == 1:
                await self._c.execute_command(*commands[0])
            else:
                await self._pipeline(lambda pipe: [pipe.execute_command(*c) for c in commands])
        return {}

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

    # -- states ------------------------------------------------------------------------------

    def _state_key(self, name: str) -> str:
        # The name is the hash tag: states spread over a cluster's slots.
        return f"{self._tag}st:{name}}}"

    async def load_states(self, names: Sequence[str]) -> dict[str, str]:
        """``MGET`` (split by node on a cluster)."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        keys = [self._state_key(n) for n in names]
        async with self._op("load_states"):
            if self.cluster:
                values = await self._c.mget_nonatomic(keys)
            else:
                values = await self._c.execute_command("MGET", *keys)
        return {n: _text(v) for n, v in zip(names, values, strict=True) if v is not None}

    async def store_states(self, states: Mapping[str, str]) -> None:
        """``MSET`` (split by node on a cluster)."""
        if not states:
            return
        mapping = {self._state_key(n): v for n, v in states.items()}
        async with self._op("store_states"):
            if self.cluster:
                await self._c.mset_nonatomic(mapping)
            else:
                await self._c.execute_command("MSET", *[x for kv in mapping.items() for x in kv])

    async def delete_states(self, names: Sequence[str]) -> None:
        """``DEL`` per name, pipelined."""
        keys = [self._state_key(n) for n in dict.fromkeys(names)]
        if not keys:
            return
        async with self._op("delete_states"):
            await self._pipeline(lambda pipe: [pipe.execute_command("DEL", k) for k in keys])

    async def renew_states(
        self, times: Mapping[str, float], before: float, names: Sequence[str] = ()
    ) -> dict[str, str]:
        """One script (on a cluster: one per renewed state, beside an ``MGET`` of
        ``names`` split by node, all at once)."""
        check_times(times, before)
        renewed = list(times)
        loaded = [n for n in dict.fromkeys(names) if n not in times]
        if not renewed:
            return await self.load_states(loaded)
        keys = [self._state_key(n) for n in (*renewed, *loaded)]
        values = [repr(float(times[n])) for n in renewed]
        async with self._op("renew_states"):
            if not self.cluster:
                found = await scripts.RENEW_STATES(
                    self._c, keys, [len(renewed), repr(float(before)), *values]
                )
            else:
                calls = [
                    scripts.RENEW_STATES(self._c, [key], [1, repr(float(before)), value])
                    for key, value in zip(keys[: len(renewed)], values, strict=True)
                ]
                if loaded:
                    calls.append(self._c.mget_nonatomic(keys[len(renewed) :]))
                replies = await gather(*calls)
                found = [reply[0] for reply in replies[: len(renewed)]]
                found += replies[-1] if loaded else []
        return {
            n: _text(v) for n, v in zip((*renewed, *loaded), found, strict=True) if v is not None
        }

    def _maxima_key(self, name: str) -> str:
        # One sorted set per name: a read of many members is one ZMSCORE.
        return f"{self._tag}mx:{name}}}"

    def _joined_key(self, name: str) -> str:
        # The members of the set in joining order (a list, in the set's slot).
        return f"{self._tag}mx:{name}}}:joined"

    async def raise_maxima(self, name: str, values: Mapping[str, int]) -> dict[str, int]:
        """``ZADD GT`` (a score only ever goes up) in a script that first reads the
        members' scores (returned) and appends the members new to the set to its list of
        members in joining order (what :meth:`read_merged` tells its callers)."""
        if not check_maxima(values):
            return {}
        pairs = [x for member, value in values.items() for x in (value, member)]
        keys = [self._maxima_key(name), self._joined_key(name)]
        async with self._op("raise_maxima"):
            found = await scripts.RAISE_MAXIMA(self._c, keys, pairs)
        return {_text(m): int(float(v)) for m, v in zip(found[::2], found[1::2], strict=True)}

    async def load_maxima(self, name: str, members: Sequence[str]) -> dict[str, int]:
        """``ZMSCORE`` in a script that takes the members as one JSON argument: a reader
        of thousands of pulled producers sends one argument instead of thousands."""
        if not members:
            return {}
        async with self._op("load_maxima"):
            found = await scripts.LOAD_MAXIMA(
                self._c, [self._maxima_key(name)], [json.dumps(list(members))]
            )
        return {_text(m): int(float(v)) for m, v in zip(found[::2], found[1::2], strict=True)}

    async def read_merged(
        self,
        key: str,
        sources: Sequence[str],
        maxima: str,
        stop: int,
        query: Query,
        known: int,
        *,
        floors: str | None = None,
        suffix: str = "",
    ) -> MergedPage | None:
        """A page of ``key`` merged with the feeds ``sources`` (see
        :class:`~aiostream.storage.base.MergedReadStorage`): one script on a standalone
        server, which reads the sources newest maximum first and only while they may
        reach the page, and reads the members that joined after the first ``known``
        from the set's list in joining order (and the entries of up to
        :attr:`joined_reads` of them apart). ``None`` on a cluster (the feeds sit on
        many nodes) and for an ascending query."""
        if self._reads is None or not query.descending:
            return None
        stop = clamped(stop)
        if query.is_empty or stop <= 0:
            return MergedPage([], [], known)
        low, high = timeline_bounds(query)
        args = [
            f"{low} {high} 0 {stop} 1 {self.activity_shards}",
            self._shard_opening,
            self._tag,
            key,
            self._maxima_key(maxima),
            self._joined_key(maxima),
            json.dumps(sources if isinstance(sources, list) else list(sources)),
            known,
            self.joined_reads,
            suffix,
            "" if floors is None else self._maxima_key(floors),
        ]
        async with self._op("read_merged"):
            reply = await self._reads.call(scripts.READ_MERGED, [], args)
        since, joined = int(reply[0]), [_text(member) for member in reply[1]]
        apart = None if reply[2] is None else [_entries(page) for page in reply[2]]
        return MergedPage(_entries(reply[3:]), joined, since, apart)

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
