"""Realtime feed updates: ``async with feed.subscribe() as updates`` and then
``async for update in updates``.

Every write to a feed (an add, a removal, an update of the activities it shows, a mark
of a notification feed, a follow's copies) announces a :class:`FeedUpdate` to that
feed's subscribers, whichever process wrote: a web handler, the in-process dispatcher
or an arq worker on another host. The storage carries them: in-process for the memory
storage, Redis pub/sub for Redis (sharded pub/sub on a cluster, the channel in the
feed's own slot), and for Cassandra the Redis storage named as its ``notifier``.

An update is a notice, not the data: read the feed to show what changed. A subscriber
that falls behind never slows the writers: each subscription buffers a bounded number
of updates, and when the buffer overflows it is emptied and replaced by one ``gap``
update, which tells the client to read the feed again. A lost connection (a Redis
restart) also gives every subscription a ``gap`` once it is back.

A flat feed that a Manager pulling producers hands out also hears its owner's followees
(:func:`relayed`): reads merge their user feeds into its pages, so their updates are
its own, on its one :class:`Subscription`.

Example::

    async with feed.subscribe() as updates:
        async for update in updates:
            if update.kind == "gap":
                ...  # read the whole page again
            else:
                ...  # update.activity_ids, update.unseen, ...
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, NotRequired

import anyio
from typing_extensions import TypedDict

from aiostream._concurrency import run_bounded
from aiostream.exceptions import ValidationError

__all__ = [
    "DEFAULT_BUFFER",
    "FeedUpdate",
    "FeedUpdateDict",
    "Hub",
    "Subscription",
    "UpdateKind",
    "gap",
    "relayed",
    "template",
]

UpdateKind = Literal["added", "removed", "updated", "marked", "gap"]
KINDS: tuple[str, ...] = ("added", "removed", "updated", "marked", "gap")
logger = logging.getLogger("aiostream.realtime")
# Updates a subscription holds before it overflows into a gap.
DEFAULT_BUFFER = 256
# What a merged subscription takes from the feeds it relays (what writes of a flat feed
# announce), and subscriptions to them opened at once.
RELAYED: frozenset[str] = frozenset({"added", "removed", "updated", "gap"})
RELAY_CONCURRENCY = 64


class FeedUpdateDict(TypedDict):
    """:meth:`FeedUpdate.to_dict`: an update as JSON-ready data, typed for a type checker
    and for a web framework's response schema. ``"unseen"`` and ``"unread"`` are there
    only when the update carries a notification feed's counts."""

    feed: str
    kind: UpdateKind
    activity_ids: list[str]
    groups: list[str]
    unseen: NotRequired[int | None]
    unread: NotRequired[int | None]


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """What happened to a feed.

    Attributes:
        feed: The feed's key (``feed.key``).
        kind: ``"added"``, ``"removed"``, ``"updated"``, ``"marked"`` (notification
            groups seen or read), or ``"gap"``: updates were lost (the subscriber fell
            behind, or the connection dropped); read the feed again.
        activity_ids: The activities added, removed or updated; for ``"marked"``, the
            ids of the groups marked (empty: all of them).
        groups: For aggregated and notification feeds, the group keys written
            (``AggregatedActivity.group``), where the writer knew them.
        unseen: A notification feed's unseen count after the write (None for other
            feeds, untracked counts and gaps).
        unread: Its unread count, likewise.
    """

    feed: str
    kind: UpdateKind
    activity_ids: tuple[int, ...] = ()
    groups: tuple[str, ...] = ()
    unseen: int | None = None
    unread: int | None = None

    def to_dict(self) -> FeedUpdateDict:
        """JSON-ready: ids as strings (they exceed JavaScript's integers), as
        :class:`~aiostream.activity.Activity`'s :meth:`~aiostream.activity.Activity.to_dict`
        writes them; typed as a :class:`FeedUpdateDict` (a plain dict at run time)."""
        data: FeedUpdateDict = {
            "feed": self.feed,
            "kind": self.kind,
            "activity_ids": [str(i) for i in self.activity_ids],
            "groups": list(self.groups),
        }
        if self.unseen is not None or self.unread is not None:
            data["unseen"], data["unread"] = self.unseen, self.unread
        return data

    def encode(self) -> str:
        """The wire form (without the feed, which the channel names)."""
        data: dict[str, Any] = {"k": self.kind, "i": [format(i, "x") for i in self.activity_ids]}
        if self.groups:
            data["g"] = list(self.groups)
        if self.unseen is not None:
            data["u"] = self.unseen
        if self.unread is not None:
            data["r"] = self.unread
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, feed: str, text: str | bytes) -> FeedUpdate:
        """The update :meth:`encode` wrote, for ``feed``.

        Raises:
            ValidationError: not an update's wire form.
        """
        try:
            data = json.loads(text)
            kind = data["k"]
            if kind not in KINDS:
                raise ValueError(kind)
            return cls(
                feed,
                kind,
                tuple(int(i, 16) for i in data["i"]),
                tuple(str(g) for g in data.get("g", ())),
                _count(data.get("u")),
                _count(data.get("r")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError("update", f"not a feed update: {text!r:.80}") from exc


def _count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def gap(feed: str) -> FeedUpdate:
    """The update that tells a subscriber of ``feed`` to read it again."""
    return FeedUpdate(feed, "gap")


class Subscription:
    """The updates of one feed, as an async iterator (made by ``feed.subscribe()``).

    Its buffer holds ``buffer`` updates; one more empties it and leaves a single
    ``gap`` update in their place (the updates after it are buffered again). Iteration
    ends when the subscription is closed.
    """

    def __init__(self, feed: str, buffer: int = DEFAULT_BUFFER) -> None:
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValidationError("buffer", f"must be an int of at least 1, got {buffer!r}")
        self.feed = feed
        self._buffer = buffer
        self._queue: deque[FeedUpdate] = deque()
        self._wakeup = anyio.Event()
        self.closed = False
        self.gaps = 0  # gaps delivered (overflows and reconnections)
        self._relay: Callable[[FeedUpdate], None] | None = None

    def offer(self, update: FeedUpdate) -> None:
        """Queue ``update`` without waiting (a writer or a pub/sub reader calls this)."""
        if self.closed:
            return
        if self._relay is not None:
            self._relay(update)
            return
        held = len(self._queue) - (self._queue[0].kind == "gap" if self._queue else 0)
        if update.kind == "gap" or held >= self._buffer:
            # What was buffered is now stale: the reader reads the feed again anyway.
            self._queue.clear()
            update = gap(self.feed)
            self.gaps += 1
        self._queue.append(replace(update, feed=self.feed))
        self._wakeup.set()

    def relay_to(self, relay: Callable[[FeedUpdate], None]) -> None:
        """Hand every update, those buffered first, to ``relay`` instead of buffering
        it (a subscription merged into another: :func:`relayed`)."""
        buffered, self._queue = list(self._queue), deque()
        self._relay = relay
        for update in buffered:
            relay(update)

    def close(self) -> None:
        """End the iteration (the subscription's context does this on exit)."""
        self.closed = True
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[FeedUpdate]:
        return self

    async def __anext__(self) -> FeedUpdate:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
            if not self._queue and not self.closed:
                self._wakeup = anyio.Event()
        return self._queue.popleft()


class Hub:
    """The subscriptions of one process, by channel: what a storage's notifier
    delivers to. ``on_first`` / ``on_last`` are awaited when a channel gains its first
    subscription or loses its last one (a pub/sub notifier subscribes upstream)."""

    def __init__(
        self,
        on_first: Callable[[str], Any] | None = None,
        on_last: Callable[[str], Any] | None = None,
    ) -> None:
        self.channels: dict[str, dict[int, Subscription]] = {}
        self._on_first = on_first
        self._on_last = on_last

    def __bool__(self) -> bool:
        return bool(self.channels)

    def deliver(self, channel: str, update: FeedUpdate) -> None:
        for subscription in list(self.channels.get(channel, {}).values()):
            subscription.offer(update)

    def gap(self, channel: str) -> None:
        """Give the subscriptions of ``channel`` a gap (their updates may be lost)."""
        for subscription in list(self.channels.get(channel, {}).values()):
            subscription.offer(gap(subscription.feed))

    @asynccontextmanager
    async def subscription(
        self, channel: str, feed: str, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(feed, buffer)
        subscriptions = self.channels.setdefault(channel, {})
        subscriptions[id(subscription)] = subscription
        try:
            if len(subscriptions) == 1 and self._on_first is not None:
                await self._on_first(channel)
            yield subscription
        finally:
            subscription.close()
            subscriptions.pop(id(subscription), None)
            if not subscriptions and self.channels.get(channel) is subscriptions:
                del self.channels[channel]
                if self._on_last is not None:
                    with anyio.CancelScope(shield=True):
                        await self._on_last(channel)


@asynccontextmanager
async def relayed(
    own: AbstractAsyncContextManager[Subscription],
    others: Sequence[AbstractAsyncContextManager[Subscription]],
    *,
    kinds: Collection[str] = RELAYED,
    limit: int = RELAY_CONCURRENCY,
) -> AsyncIterator[Subscription]:
    """The subscription ``own`` (a feed's, entered first), which also hears the updates
    of the subscriptions ``others`` whose kind is in ``kinds`` (by default ``added``,
    ``removed``, ``updated`` and ``gap``), as its own feed's.

    One buffer for all, ``own``'s: a gap of any of them (a reconnection) is a gap of
    it, and so is an overflow. Built on any storage's ``subscribe``: ``others`` may come
    from another storage than ``own``. They are opened ``limit`` at a time once ``own``
    is open (so a Redis storage's gate is opened once), and all closed on exit.

    Raises:
        Exception: the first error of opening one (the others are closed).
    """
    async with AsyncExitStack() as stack:
        merged = await stack.enter_async_context(own)

        def relay(update: FeedUpdate) -> None:
            if update.kind in kinds:
                merged.offer(update)

        async def open_(source: AbstractAsyncContextManager[Subscription]) -> None:
            subscription = await stack.enter_async_context(source)
            subscription.relay_to(relay)

        failures = await run_bounded(others, open_, limit=limit, on_failure="cancel")
        if failures:
            raise failures[0][1]
        yield merged


def template(
    kind: UpdateKind, activity_ids: Sequence[int] = (), groups: Sequence[str] = ()
) -> FeedUpdate:
    """An update for many feeds: each storage fills in the feed (and counts)."""
    return FeedUpdate("", kind, tuple(activity_ids), tuple(groups))
