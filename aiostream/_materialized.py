"""What a Manager with a :class:`~aiostream.materialize.MaterializationPolicy` does on
each side: which followers a fanout writes, and how a read makes up for the others.

The state it keeps lives in the user feed's storage (:class:`StateStorage`), under
these names:

===================== ==========================================================
``read:<user>``       when the user last read (recorded at most once an hour)
``stale:<feed>:<u>``  the user's flat feed ``<feed>`` missed a write: rebuild it
``rate.post:<user>``  decayed count of the user's posts
``rate.read:<user>``  decayed count of the user's reads
===================== ==========================================================

and one set of maxima (:meth:`StateStorage.raise_maxima`), ``posted``: per producer
whose posts skipped a follower, by the key of its user feed, the time (microseconds) of
the newest of those posts. It is raised before the followers are skipped, so a read
merges exactly the followees found there (no process needs to learn who is pulled
first), and reads only those that may hold an entry of its page.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiostream._concurrency import gather, run_each
from aiostream._hooks import check_following
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import FanoutChunk
from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import BaseFeed, format_key, plain_user_id
from aiostream.ids import DIGEST_BITS
from aiostream.leases import lease
from aiostream.materialize import (
    MaterializationPolicy,
    SelectivePolicy,
    decayed_count,
    decayed_rate,
)
from aiostream.query import Query
from aiostream.realtime import Subscription, relayed
from aiostream.storage.base import (
    Entry,
    FeedStorage,
    MergedReadStorage,
    StateStorage,
    renews,
)

if TYPE_CHECKING:
    from aiostream.manager import Manager

# How often a process records that a user read (and so how stale "last read" may be).
RECORD_EVERY = 3600.0
# Entries of a process's caches before they are dropped and rebuilt as used.
CACHE_LIMIT = 100_000
# Reads of user feeds at once when a feed is rebuilt.
REBUILD_CONCURRENCY = 32
# The maxima: per pulled producer's user feed, the microsecond of its newest skipping post.
POSTED = "posted"


def read_name(user: object) -> str:
    return f"read:{user}"


def stale_name(feed: str, user: object) -> str:
    return f"stale:{feed}:{user}"


def post_rate_name(user: object) -> str:
    return f"rate.post:{user}"


def read_rate_name(user: object) -> str:
    return f"rate.read:{user}"


def policy_of(manager: Manager, policy: MaterializationPolicy | None) -> Materializer | None:
    """The Manager's policy at work: ``policy``, else one built from its
    ``inactive_after`` / ``pull_threshold`` (None when nothing is ever skipped).

    Raises:
        ConfigurationError: a bad setting, or a policy that pulls without a
            ``get_user_following_ids`` hook to tell whom a reader follows.
    """
    owner = type(manager)
    if policy is None and (owner.inactive_after is not None or owner.pull_threshold is not None):
        policy = SelectivePolicy(owner.inactive_after, owner.pull_threshold)
    if policy is None or not policy.active:
        return None
    if not isinstance(policy, MaterializationPolicy):
        raise ConfigurationError(f"policy must be a MaterializationPolicy, got {policy!r}")
    from aiostream.manager import Manager as Base

    if owner.get_user_following_ids is Base.get_user_following_ids:
        raise ConfigurationError(
            f"{owner.__name__} skips feeds ({policy!r}) but does not implement "
            "get_user_following_ids(user_id), which reads and rebuilds need"
        )
    return Materializer(manager, policy)


async def checked_following(manager: Manager, user_id: Any) -> list[Any]:
    """The Manager's ``get_user_following_ids(user_id)``, awaited if need be, checked."""
    result = manager.get_user_following_ids(user_id)
    if inspect.isawaitable(result):
        result = await result
    return check_following(result)


def _remember(cache: dict[Any, Any], key: Any, value: Any, limit: int = CACHE_LIMIT) -> None:
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


def is_flat(feed_class: type[BaseFeed[Any]]) -> bool:
    """Whether a policy applies to feeds of ``feed_class`` (flat feeds only)."""
    return not issubclass(feed_class, AggregatedFeed)


class Materializer:
    """A Manager's policy at work (one per Manager; its caches are per process)."""

    def __init__(self, manager: Manager, policy: MaterializationPolicy) -> None:
        self.manager = manager
        self.policy = policy
        self.flat_feeds = frozenset(n for n, c in manager.feed_classes.items() if is_flat(c))
        # "<feed>:<user>" -> until when this process need not look at its read state
        self._fresh: dict[str, float] = {}
        # producer id -> the key of its user feed (a read names each followee's)
        self._keys: dict[Any, str] = {}
        # The first _known members of the maxima, in joining order, and the rest this
        # process has heard of (see MergedReadStorage): members never leave, so a set
        # that only grows (one key per producer ever pulled).
        self._members: set[str] = set()
        self._known = 0
        # user -> reads since this process last recorded one (for the read rate)
        self._reads: dict[str, int] = {}
        inactive = policy.inactive_after
        self._record_every = RECORD_EVERY if inactive is None else min(RECORD_EVERY, inactive / 2)

    @property
    def user_storage(self) -> FeedStorage:
        """The storage of every user's own feed (the user feeds reads pull from)."""
        return self.manager.storage_for(self.manager.user_feed_class)

    @property
    def states(self) -> StateStorage:
        """Where the state lives: beside every user's own feed."""
        return self.user_storage

    # -- fanout, where the Manager cuts chunks --------------------------------------------------

    async def note_posts(self, producer: Any) -> None:
        """Record an add by ``producer`` in its post rate (where one is kept)."""
        policy = self.policy
        if policy.keeps_rates:
            name = post_rate_name(plain_user_id(producer, "user_id"))
            stored = (await self.states.load_states([name])).get(name)
            new = decayed_count(stored, self.manager.now(), policy.half_life, add=1.0)
            await self.states.store_states({name: new})

    async def plan_add(
        self,
        producer: Any,
        activities: Sequence[Activity],
        followers: Mapping[str | None, Sequence[Any]],
        chunks: list[Any],
    ) -> list[Any]:
        """The chunks of an add of ``activities`` by ``producer``: none for flat feeds
        when the producer is pulled (past its grace), and the others tagged with the
        producer when the workers choose followers (inactive ones, rates)."""
        policy = self.policy
        producer = plain_user_id(producer, "user_id")
        # Pulled from its first post over the threshold: the maximum, raised before any
        # follower is skipped, is all a reader needs to know of it.
        skip = policy.pulls_all(sum(len(ids) for ids in followers.values()))
        tag = policy.inactive_after is not None or policy.keeps_rates
        planned = []
        for chunk in chunks:
            if isinstance(chunk, FanoutChunk) and chunk.feed in self.flat_feeds:
                if skip:
                    continue
                if tag:
                    chunk = replace(chunk, producer=producer)
            planned.append(chunk)
        if skip:
            await self._note_skipped(producer, activities)
        return planned

    async def skips_followers(self, producer: Any, activities: Sequence[Activity]) -> bool:
        """Whether an add of ``activities`` by ``producer`` needs no follower at all:
        every feed is flat, and the Manager's ``get_user_follower_count`` says the
        producer is pulled (past its grace)."""
        if self.flat_feeds != set(self.manager.feed_classes) or not self.policy.pulls:
            return False
        count = self.manager.get_user_follower_count(producer)
        if inspect.isawaitable(count):
            count = await count
        if count is None or not self.policy.pulls_all(count):
            return False
        await self._note_skipped(plain_user_id(producer, "user_id"), activities)
        return True

    async def _note_skipped(self, producer: Any, activities: Sequence[Activity]) -> None:
        """Raise ``producer``'s maximum to its newest of ``activities``, before any
        follower skips them: from then on its followers' reads merge its user feed."""
        if activities:
            newest = max(a.serialization_id >> DIGEST_BITS for a in activities)
            await self.states.raise_maxima(POSTED, {self._key(producer): newest})

    # -- fanout, where a chunk is written ----------------------------------------------------

    async def writable(
        self, chunk: FanoutChunk, activities: Sequence[Activity]
    ) -> tuple[int | str, ...]:
        """The followers of ``chunk`` (an add of ``activities`` into a flat feed) the
        policy writes; marks the feeds of the inactive ones stale."""
        policy, now, producer = self.policy, self.manager.now(), chunk.producer
        users = chunk.user_ids
        names: list[str] = []
        if policy.inactive_after is not None:
            names += [read_name(u) for u in users] + [stale_name(chunk.feed, u) for u in users]
        rates = policy.keeps_rates and producer is not None
        if rates:
            names += [read_rate_name(u) for u in users]
            names.append(post_rate_name(producer))
        found = await self.states.load_states(names)
        marks: dict[str, str] = {}
        post_rate = decayed_rate(found.get(post_rate_name(producer)), now, policy.half_life)
        written, skipped = [], []
        for user in users:
            if policy.inactive_after is not None:
                last = found.get(read_name(user))
                if last is None or now - float(last) >= policy.inactive_after:
                    if stale_name(chunk.feed, user) not in found:
                        marks[stale_name(chunk.feed, user)] = "1"
                    continue
            if rates:
                read_rate = decayed_rate(found.get(read_rate_name(user)), now, policy.half_life)
                if not policy.pushes(post_rate, read_rate):
                    skipped.append(user)
                    continue
            written.append(user)
        if skipped:  # before the chunk is written: see _note_skipped
            await self._note_skipped(producer, activities)
            await self._announce_pulled(chunk, skipped, activities)
        if marks:
            await self.states.store_states(marks)
        return tuple(written)

    async def _announce_pulled(
        self, chunk: FanoutChunk, users: Sequence[Any], activities: Sequence[Activity]
    ) -> None:
        """Tell the subscribers of the feeds of ``users``, which a rate skipped, that
        their pages now show ``activities``. The author's user feed announced them when
        it was written, but a reader may have read then and missed them: their maximum
        is raised only now (a producer over the threshold has it raised before its user
        feed is written, and needs nothing more)."""
        feed_class = self.manager.feed_classes[chunk.feed]
        io = feed_class._io_for(self.manager.storage_for(feed_class), self.manager._feed_metrics)
        keys = [format_key(feed_class.key_format, user) for user in users]
        await feed_class._announce(io, keys, "added", [a.serialization_id for a in activities])

    # -- realtime updates ------------------------------------------------------------------------

    def subscribe(
        self, feed: BaseFeed[Any], own: AbstractAsyncContextManager[Subscription], buffer: int
    ) -> AbstractAsyncContextManager[Subscription]:
        """``feed.subscribe()`` of a flat feed of a Manager that pulls: ``own`` (the
        feed's own subscription), which also hears the updates of the user feeds of
        whom the feed's owner follows (read at the start: one channel per followee), as
        its reads merge them in. Posts of pulled producers are written to no follower's
        feed; this is how their followers hear of them."""
        return self._subscribe(feed, own, buffer)

    @asynccontextmanager
    async def _subscribe(
        self, feed: BaseFeed[Any], own: AbstractAsyncContextManager[Subscription], buffer: int
    ) -> AsyncIterator[Subscription]:
        following = await checked_following(self.manager, plain_user_id(feed.user_id))
        keys = [k for k in dict.fromkeys(self._keys_of(following)) if k != feed.key]
        storage = self._user_io
        others = [storage.subscribe(key, buffer=buffer) for key in keys]
        async with relayed(own, others) as updates:
            yield updates

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self, feed: BaseFeed[Any], start: int, stop: int | None, query: Query
    ) -> list[Any]:
        """A page of ``feed`` as a push-everything Manager would show it."""
        user = plain_user_id(feed.user_id)
        if self.policy.inactive_after is None and not self.policy.keeps_rates:
            return await self._read(feed, user, start, stop, query)
        # The read is recorded while the page is read (one round trip fewer); if the
        # feed was stale, it has been rebuilt since, and the page is read again.
        stale, page = await gather(
            self._note_read(feed, user, self.manager.now()),
            self._read(feed, user, start, stop, query),
        )
        return await self._read(feed, user, start, stop, query) if stale else page

    async def _read(
        self, feed: BaseFeed[Any], user: Any, start: int, stop: int | None, query: Query
    ) -> list[Any]:
        if not self.policy.pulls:
            return await feed._read_stored(start, stop, query)
        following = await checked_following(self.manager, user)
        if not following:
            return await feed._read_stored(start, stop, query)
        # A feed shows its newest max_length entries, as a pushed feed trimmed at each
        # write holds them: a window past them is empty, and a filtered or oldest-first
        # read sees only those (the id of the last one bounds it).
        limit = feed.max_length
        if start >= limit or (stop is not None and stop <= start):
            return []
        stop = limit if stop is None else min(stop, limit)
        sources = self._keys_of(following)
        if not query.is_default:
            last = await self._entries(feed, sources, limit - 1, limit, Query())
            if last:
                query = query.filter(activity_id__gte=last[0][0])
        entries = await self._entries(feed, sources, start, stop, query)
        return feed.get_activity_serializer().loads_entries(entries)

    async def _entries(
        self, feed: BaseFeed[Any], sources: Sequence[str], start: int, stop: int, query: Query
    ) -> list[Entry]:
        """``[start:stop]`` under ``query`` of the entries of ``feed`` merged with those
        of the user feeds ``sources`` (every followee is a source; those with a maximum
        are the ones whose posts skipped followers: only they hold anything the feed may
        lack)."""
        io = feed._io
        if not query.descending:
            own, posted = await gather(
                io.read_timeline(feed.key, 0, stop, query),
                self.states.load_maxima(POSTED, sources),
            )
            others = await self._pages([k for k in sources if k in posted], stop, query)
            return _merge([own, *others], start, stop, query.descending)
        if feed.storage is self.user_storage and isinstance(io, MergedReadStorage):
            entries = await self._read_in_storage(io, feed.key, sources, stop, query)
            if entries is not None:
                return entries[start:stop]
        # One round trip for the feed's own page and the followees' newest skipping
        # posts; then the pages of those that may reach it.
        own, posted = await gather(
            io.read_timeline(feed.key, 0, stop, query),
            self.states.load_maxima(POSTED, sources),
        )
        ranked = sorted(((newest, key) for key, newest in posted.items()), reverse=True)
        return await self._pruned_merge(own, ranked, start, stop, query)

    async def _read_in_storage(
        self, io: MergedReadStorage, key: str, keys: Sequence[str], stop: int, query: Query
    ) -> list[Entry] | None:
        """The first ``stop`` entries of feed ``key`` merged with the user feeds
        ``keys`` of its owner's followees, read by the storage in one step (None if it
        cannot). Only the followees this process knows to be in the maxima are named;
        the storage reports who joined them since, with what they hold for the page
        when they are few: those the owner follows are merged in (a process new to the
        maxima hears of many, and reads the page again with them)."""
        members = self._members
        sources = [k for k in keys if k in members]
        while True:
            known = self._known
            page = await io.read_merged(key, sources, POSTED, stop, query, known)
            if page is None:
                return None
            if page.since < known:  # the maxima were emptied: start again
                members.clear()
                self._known = 0
            if not page.joined:
                return page.entries
            members.update(page.joined)
            self._known = max(self._known, page.since + len(page.joined))
            following, named = set(keys), set(sources)
            missed = {k for k in page.joined if k in following and k not in named}
            if not missed:
                return page.entries
            if page.apart is not None:
                pages = [e for m, e in zip(page.joined, page.apart, strict=True) if m in missed]
                return _merge([page.entries, *pages], 0, stop)
            sources += [k for k in page.joined if k in missed]

    def _keys_of(self, producers: Sequence[Any]) -> list[str]:
        """The keys of ``producers``' user feeds (as the maxima name them, and as the
        fanout writes them), remembered: a read names thousands of followees."""
        keys, key_format = self._keys, self.manager.user_feed_class.key_format
        found = []
        for producer in producers:
            key = keys.get(producer)
            if key is None:
                key = format_key(key_format, producer)
                _remember(keys, producer, key)
            found.append(key)
        return found

    def _key(self, producer: Any) -> str:
        return self._keys_of([producer])[0]

    @property
    def _user_io(self) -> FeedStorage:
        """The user feeds' storage, as their own reads use it (timed if need be)."""
        return self.manager.user_feed_class._io_for(self.user_storage, None)

    async def _pages(self, keys: Sequence[str], stop: int, query: Query) -> list[Sequence[Entry]]:
        """The first ``stop`` entries under ``query`` of each of the user feeds ``keys``
        (the first ``stop`` of their union are among them), all at once (on a
        standalone Redis, one round trip)."""
        io = self._user_io
        pages: list[Sequence[Entry]] = [() for _ in keys]

        async def page(index: int) -> None:
            pages[index] = await io.read_timeline(keys[index], 0, stop, query)

        await run_each(range(len(keys)), page)
        return pages

    async def _pruned_merge(
        self,
        own: Sequence[Entry],
        ranked: Sequence[tuple[int, str]],
        start: int,
        stop: int,
        query: Query,
    ) -> list[Entry]:
        """:meth:`_merged` for a newest-first page of a feed whose own entries are
        ``own``, reading only the followees' user feeds that may hold one of its
        entries. A user feed's entries are no newer than its maximum (``ranked``:
        maxima newest first, with the feeds' keys), so they are read in that order, in
        waves (of ``stop``, doubling while the page is not yet full), until the next
        one's maximum is older than the ``stop``-th entry found so far: for an
        unfiltered read of a full page, one wave."""
        io = self._user_io
        found: dict[int, Entry] = {entry[0]: entry for entry in own}
        done, size = 0, stop
        while done < len(ranked):
            floor = sorted(found, reverse=True)[stop - 1] if len(found) >= stop else -1
            if floor < 0 and done:
                size *= 2  # a sparse page: the feeds read so far held too few entries
            wave = []
            for newest, key in ranked[done : done + size]:
                # The largest id an activity of that microsecond can have.
                if ((newest + 1) << DIGEST_BITS) - 1 <= floor:
                    break
                wave.append(key)
            if not wave:
                break
            done += len(wave)
            pages = await gather(*(io.read_timeline(key, 0, stop, query) for key in wave))
            for entries in pages:
                for entry in entries:
                    found.setdefault(entry[0], entry)
        return [found[i] for i in sorted(found, reverse=True)[start:stop]]

    async def _note_read(self, feed: BaseFeed[Any], user: Any, now: float) -> bool:
        """Record a read of ``feed`` (at most once per ``_record_every``); rebuild the
        feed if it is stale. Whether it was (a page read meanwhile may lack entries)."""
        key, name = str(user), feed._feed_name
        if self.policy.keeps_rates:  # counted only where a rate is kept of them
            _remember(self._reads, key, self._reads.get(key, 0) + 1)
        # Per feed: each flat feed of a user has its own stale mark.
        fresh_key = f"{name}:{user}"
        if self._fresh.get(fresh_key, 0.0) > now:
            return False
        names = []
        if self.policy.inactive_after is not None:
            names.append(stale_name(name, user))
        if self.policy.keeps_rates:
            names.append(read_rate_name(user))
        # One step: the read is recorded unless one was within the interval (by any
        # process), and the marks are loaded with it.
        before = now - self._record_every
        found = await self.states.renew_states({read_name(user): now}, before, names)
        if renews(found.get(read_name(user)), before):
            last = now
            if self.policy.keeps_rates:
                count = float(self._reads.pop(key, 1))
                rate = decayed_count(
                    found.get(read_rate_name(user)), now, self.policy.half_life, add=count
                )
                await self.states.store_states({read_rate_name(user): rate})
        else:
            last = float(found[read_name(user)])
        stale = stale_name(name, user) in found
        if stale:
            await self._rebuild(feed, name, user)
        until = last + self._record_every
        if self.policy.inactive_after is not None:
            until = min(until, last + self.policy.inactive_after)
        _remember(self._fresh, fresh_key, until)
        return stale

    async def _rebuild(self, feed: BaseFeed[Any], name: str, user: Any) -> None:
        """Fill a stale feed from the user feeds of whom its owner follows, once."""
        states, mark = self.states, stale_name(name, user)
        async with lease(states, f"rebuild:{name}:{user}"):  # type: ignore[arg-type]
            if mark not in await states.load_states([mark]):
                return  # another reader rebuilt it meanwhile
            # The mark goes only once the feed is filled, so a reader that finds no mark
            # finds the feed rebuilt. A fanout that skipped the feed meanwhile (it saw
            # the mark and did not set it again) wrote its author's user feed first:
            # the second copy, after the mark is gone, takes its activity in.
            await self._copy_followees(feed, user)
            await states.delete_states([mark])
            await self._copy_followees(feed, user)

    async def _copy_followees(self, feed: BaseFeed[Any], user: Any) -> None:
        following = await checked_following(self.manager, user)
        # Every followee, those in the maxima too: a read merges a followee only down to
        # its maximum, and a post of theirs that skipped this feed as inactive (pushed,
        # not pulled: a producer back under the threshold, or one whose first skipping
        # post was backdated) is newer than it.
        sources = [self.manager.user_feed_class(p, storage=self.user_storage) for p in following]
        pages: list[list[Any]] = []

        async def page(source: BaseFeed[Any]) -> None:
            pages.append(await source._read_stored(0, feed.max_length, Query()))

        await run_each(sources, page, limit=REBUILD_CONCURRENCY)
        # Each followee's newest max_length: what push would have put there (their
        # newest max_length overall among them), trimmed as any write trims.
        copies = _unique([p for page_ in pages for p in page_])
        if copies:
            entries = feed.serialize_activities(copies)
            max_length = feed.max_length if feed._should_trim(True) else None
            await feed._io.add_to_timelines([feed.key], entries, max_length=max_length, store=False)


def _merge(
    pages: Sequence[Sequence[Entry]], start: int, stop: int | None, descending: bool = True
) -> list[Entry]:
    """``[start:stop]`` of the entries of ``pages`` together, each once, by id."""
    by_id: dict[int, Entry] = {}
    for entries in pages:
        for entry in entries:
            by_id.setdefault(entry[0], entry)
    return [by_id[i] for i in sorted(by_id, reverse=descending)[start:stop]]


def _unique(activities: Sequence[Activity]) -> list[Activity]:
    by_id: dict[int, Activity] = {}
    for activity in activities:
        by_id.setdefault(activity.serialization_id, activity)
    return list(by_id.values())
