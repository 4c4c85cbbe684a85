"""Realtime updates on Redis (see :mod:`aiostream.realtime`).

Writers announce an update to many feeds in one script call (:data:`PUBLISH_UPDATES`:
per node on a cluster, with ``SPUBLISH`` to each feed's channel, which sits in the
feed's own slot; a notification feed's counts are read in the same script). Readers
share one pub/sub connection per process (per node on a cluster), whatever the number
of subscriptions: a :class:`_Link` subscribes to a channel when its first
subscription opens and unsubscribes when its last one closes.

Nobody subscribed costs writers almost nothing: a process that holds subscriptions
keeps a *gate* key alive (``SET ... EX``), and writers publish only while it exists
(each reads it at most once a second). The first subscription of a process opening a
closed gate waits that second, so that every writer sees the gate before it returns.

A link that loses its connection (a restart, a failover, a slot that moved) connects
again, subscribes again, then gives each of its subscriptions a ``gap``: the
subscriber reads the feed again and misses nothing from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from aiostream.realtime import DEFAULT_BUFFER, FeedUpdate, Hub, Subscription, logger
from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._base import RedisBase, _text

GATE_TTL = 30  # seconds the gate stays open unless a subscribing process renews it
GATE_RENEW = 10.0
GATE_CACHE = 1.0  # seconds a writer trusts what it read of the gate
KEEPALIVE = 15.0  # a quiet link pings this often, so a dead connection is noticed
RECONNECT_PAUSE = (0.05, 2.0)  # first and longest pause between two connection tries
# A link's own connection: no read timeout (a quiet channel is normal; the keep-alive
# notices a dead server), and RESP2, where messages are replies to read (redis-py 6+
# speaks RESP3 by default and hands RESP3 pushes to a handler instead).
LINK_OPTIONS: dict[str, Any] = {"socket_timeout": None, "protocol": 2}


class _Idle(Exception):
    """A cluster link left with no channel (they all moved to other nodes)."""


class _Link:
    """One pub/sub connection (a standalone server, or one cluster node) and the
    channels it carries, delivered to ``hub``."""

    def __init__(
        self, make_connection: Any, sharded: bool, hub: Hub, name: str, realtime: _Realtime
    ) -> None:
        self._make_connection = make_connection
        self._realtime = realtime
        self._sharded = sharded
        self._subscribe, self._unsubscribe = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        )
        self._hub = hub
        self.name = name
        self.channels: set[str] = set()
        self._connection: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        # channel -> the server's confirmation, awaited before a subscription opens
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._heard = time.monotonic()

    async def add(self, channel: str) -> None:
        """Carry ``channel``; returns once the server has confirmed it (or at once while
        the server is down: the reconnection then gives a gap)."""
        self.channels.add(channel)
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._run()), loop.create_task(self._keep_alive())]
        await self._ready.wait()
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel] = confirmed
        try:
            async with self._lock:
                if self._connection is None:
                    return
                await self._connection.send_command(self._subscribe, channel)
            with anyio.move_on_after(KEEPALIVE):
                await confirmed
        except (RedisError, OSError):
            pass  # the reader reconnects and subscribes to every channel
        finally:
            self._confirmed.pop(channel, None)

    async def discard(self, channel: str) -> None:
        self.channels.discard(channel)
        async with self._lock:
            if self._connection is not None:
                # (on failure the reader reconnects, without this channel)
                with contextlib.suppress(RedisError, OSError):
                    await self._connection.send_command(self._unsubscribe, channel)

    async def _connect(self) -> None:
        if self._sharded:
            # Channels whose slots another node serves now (a failover, a migration)
            # move to that node's link, which gives them a gap once it carries them.
            await self._realtime.refresh_topology()
            for channel in [c for c in self.channels if self._realtime.node_of(c) != self.name]:
                self.channels.discard(channel)
                self._realtime.rehome(channel)
            if not self.channels:
                raise _Idle
        connection = self._make_connection()
        await connection.connect()
        if self._sharded:
            # SSUBSCRIBE takes the channels of one slot: one command each (channels asked
            # for together, before the link's first connection, span slots).
            for channel in sorted(self.channels):
                await connection.send_command(self._subscribe, channel)
        elif self.channels:
            await connection.send_command(self._subscribe, *sorted(self.channels))
        self._connection = connection
        self._heard = time.monotonic()

    async def _run(self) -> None:
        pause = RECONNECT_PAUSE[0]
        lost = False
        while True:
            try:
                async with self._lock:
                    await self._connect()
                self._ready.set()
                if lost:
                    # A restarted server lost the gate too: open it again, and give
                    # writers the time to see it, before telling subscribers to re-read.
                    await self._realtime.reopen_gate()
                    logger.info("realtime link to %s is back; subscribers get a gap", self.name)
                    for channel in list(self.channels):
                        self._hub.gap(channel)
                    lost = False
                pause = RECONNECT_PAUSE[0]
                while True:
                    self._handle(await self._connection.read_response())
                    self._heard = time.monotonic()
            except _Idle:
                self._realtime.forget(self)
                await self._drop()
                return
            except (RedisError, OSError) as exc:
                if not lost:
                    logger.warning("realtime link to %s lost (%s); reconnecting", self.name, exc)
                lost = True
                self._ready.set()  # subscribers do not wait for a server that is down
                await self._drop()
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_PAUSE[1])

    async def _keep_alive(self) -> None:
        """Ping a quiet link; drop one whose server stopped answering (the reader then
        fails, reconnects and gives gaps)."""
        while True:
            await asyncio.sleep(KEEPALIVE)
            connection = self._connection
            if connection is None:
                continue
            if time.monotonic() - self._heard > 2 * KEEPALIVE:
                await self._drop()
                continue
            try:
                async with self._lock:
                    await connection.send_command("PING")
            except (RedisError, OSError):
                pass  # the reader sees it too

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # a pong
        kind, channel = _text(reply[0]), _text(reply[1])
        if kind in ("message", "smessage"):
            try:
                update = FeedUpdate.decode("", reply[2])
            except ValueError:
                logger.warning("ignored a malformed update on %s", channel)
                return
            self._hub.deliver(channel, update)
        elif kind in ("subscribe", "ssubscribe"):
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "sunsubscribe" and channel in self.channels:
            # The server dropped a channel we still want (its slot moved): start over,
            # which subscribes again where the topology says and gives a gap.
            raise RedisConnectionError(f"{channel} was unsubscribed by the server")

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.disconnect()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._drop()


class _Realtime:
    """One storage's realtime side in this process: its hub, links and gate."""

    def __init__(self, storage: RedisUpdates) -> None:
        self.storage = storage
        self.hub = Hub(on_first=self._first, on_last=self._last)
        self.links: dict[str, _Link] = {}
        self.link_of: dict[str, _Link] = {}
        self.gate_key = storage._tag + "rt:gate}"
        self._gate_task: asyncio.Task[None] | None = None
        self._gate_seen = (-1e18, False)  # (when read, open?)
        self._moves: set[asyncio.Task[None]] = set()
        # The topology refresh in flight, shared by the links that connect meanwhile.
        self._refresh: asyncio.Future[None] | None = None

    # -- writers -----------------------------------------------------------------------------

    async def gate_open(self) -> bool:
        now = time.monotonic()
        if self.hub:
            return True  # this process subscribes: the gate is open
        read_at, is_open = self._gate_seen
        if now - read_at < GATE_CACHE:
            return is_open
        is_open = bool(await self.storage._c.execute_command("EXISTS", self.gate_key))
        self._gate_seen = (now, is_open)
        return is_open

    # -- readers -----------------------------------------------------------------------------

    async def _first(self, channel: str) -> None:
        async with self.storage._op("subscribe"):  # a server down: StorageUnavailableError
            await self._open(channel)

    async def _open(self, channel: str) -> None:
        if self._gate_task is None:
            was_open = await self.storage._c.execute_command("EXISTS", self.gate_key)
            await self._renew_gate()
            self._gate_task = asyncio.get_running_loop().create_task(self._keep_gate())
            if not was_open:
                await asyncio.sleep(GATE_CACHE)  # every writer has looked again by then
        link = self._link_for(channel)
        self.link_of[channel] = link
        await link.add(channel)

    async def _last(self, channel: str) -> None:
        link = self.link_of.pop(channel, None)
        if link is not None:
            await link.discard(channel)
        if not self.hub and self._gate_task is not None:
            self._gate_task.cancel()
            self._gate_task = None

    async def reopen_gate(self) -> None:
        """Open the gate if it is closed (a server restarted) and wait until writers
        have looked at it again."""
        if not await self.storage._c.execute_command("EXISTS", self.gate_key):
            await self._renew_gate()
            await asyncio.sleep(GATE_CACHE)

    async def _renew_gate(self) -> None:
        await self.storage._c.execute_command("SET", self.gate_key, "1", "EX", GATE_TTL)

    async def _keep_gate(self) -> None:
        while True:
            await asyncio.sleep(GATE_RENEW)
            try:
                await self._renew_gate()
            except (RedisError, OSError) as exc:
                logger.warning("could not renew the realtime gate: %s", exc)

    def node_of(self, channel: str) -> str:
        storage = self.storage
        return storage.server if not storage.cluster else storage._c.get_node_from_key(channel).name

    async def refresh_topology(self) -> None:
        """Read the cluster's topology again, once for every link that connects
        meanwhile: each refresh replaces the client's node objects, and two at once
        would leave one's nodes connected and unowned."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._refresh_topology())
        await asyncio.shield(self._refresh)

    async def _refresh_topology(self) -> None:
        try:
            await self.storage._c.nodes_manager.initialize()
        except (RedisError, OSError) as exc:
            logger.warning("could not refresh the cluster topology: %s", exc)

    def rehome(self, channel: str) -> None:
        """Carry ``channel`` on the link of the node that serves it now, then gap it."""

        async def move() -> None:
            link = self._link_for(channel)
            self.link_of[channel] = link
            await link.add(channel)
            self.hub.gap(channel)

        if channel in self.hub.channels:
            task = asyncio.get_running_loop().create_task(move())
            self._moves.add(task)
            task.add_done_callback(self._moves.discard)

    def forget(self, link: _Link) -> None:
        if self.links.get(link.name) is link:
            del self.links[link.name]

    def _link_for(self, channel: str) -> _Link:
        storage = self.storage
        name = self.node_of(channel)
        if name in self.links:
            return self.links[name]
        if not storage.cluster:
            pool = storage.client.connection_pool

            def make() -> Any:
                options = dict(pool.connection_kwargs, **LINK_OPTIONS)
                return pool.connection_class(**options)

        else:

            def make() -> Any:
                node = storage._c.get_node(node_name=name)
                if node is None:
                    raise RedisConnectionError(f"{name} is no longer a cluster node")
                options = dict(node.connection_kwargs, **LINK_OPTIONS)
                return node.connection_class(**options)

        self.links[name] = _Link(make, storage.cluster, self.hub, name, self)
        return self.links[name]

    async def aclose(self) -> None:
        if self._gate_task is not None:
            self._gate_task.cancel()
            self._gate_task = None
        for task in list(self._moves):
            task.cancel()
        for link in list(self.links.values()):
            await link.aclose()
        self.links.clear()


class RedisUpdates(RedisBase):
    """:meth:`publish_updates` and :meth:`subscribe` of :class:`RedisStorage`."""

    _realtime_state: _Realtime | None = None

    @property
    def _realtime(self) -> _Realtime:
        if self._realtime_state is None:
            self._realtime_state = _Realtime(self)
        return self._realtime_state

    async def listening(self) -> bool:
        """Whether the gate is open (read at most once a second per process)."""
        async with self._op("listening"):
            return await self._realtime.gate_open()

    def _channel(self, key: str) -> str:
        return self._tag + key + "}:u"

    async def publish_updates(
        self,
        keys: Sequence[str],
        update: FeedUpdate,
        *,
        counts: tuple[bool, bool] = (False, False),
    ) -> None:
        """Announce ``update`` to the subscribers of each of ``keys`` (none: no work),
        with each notification feed's unseen / unread counts when ``counts`` asks."""
        if not keys:
            return
        async with self._op("publish_updates"):
            if not await self._realtime.gate_open():
                return
            command = "SPUBLISH" if self.cluster else "PUBLISH"
            head = [update.encode(), int(counts[0]), int(counts[1]), command]
            tags = [self._tag + key + "}" for key in dict.fromkeys(keys)]
            size = self.chunk_size
            if not self.cluster:
                for i in range(0, len(tags), size):
                    await scripts.PUBLISH_UPDATES(self._c, [], [*head, *tags[i : i + size]])
                return
            by_node: dict[str, tuple[Any, list[str]]] = {}
            for tag in tags:
                node = self._c.get_node_from_key(tag)
                by_node.setdefault(node.name, (node, []))[1].append(tag)
            for node, node_tags in by_node.values():
                for i in range(0, len(node_tags), size):
                    part = node_tags[i : i + size]
                    try:
                        await scripts.PUBLISH_UPDATES(
                            self._c, [], [*head, *part], target_nodes=node
                        )
                    except RedisError:
                        # A slot moved under us: one feed at a time, where each is now.
                        for tag in part:
                            await scripts.PUBLISH_UPDATES(
                                self._c,
                                [],
                                [*head, tag],
                                target_nodes=self._c.get_node_from_key(tag),
                            )

    @asynccontextmanager
    async def subscribe(
        self, key: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[Subscription]:
        """The updates of the feed ``key`` (see :mod:`aiostream.realtime`)."""
        async with self._realtime.hub.subscription(self._channel(key), key, buffer) as updates:
            yield updates

    async def aclose(self) -> None:
        """Close the pub/sub links of this process, then the pool (see the base)."""
        if self._realtime_state is not None:
            await self._realtime_state.aclose()
            self._realtime_state = None
        await super().aclose()
