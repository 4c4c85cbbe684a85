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

and sets of maxima (:meth:`StateStorage.raise_maxima`), by the key of a producer's user
feed, in microseconds:

===================== ==========================================================
``posted``            the newest post of the producer that skipped a follower: a
                      read merges exactly the followees found there (no process
                      needs to learn who is pulled first), and reads only those
                      that may hold an entry of its page
``fanned``            the newest activity of the producer's *fanned timeline*
``floors:<feed>:<u>`` per followee of ``u``, how far its fanned timeline is already
                      in ``u``'s feed ``<feed>`` (or was left out on purpose)
``follows:<u>``       per target of ``u``'s follow requests, twice the version of
                      the newest one applied, plus 1 for a follow: whether the
                      pair is followed, as the Manager's follows and unfollows
                      left it (a follow again is no new follow)
===================== ==========================================================

A producer's fanned timeline (the key of its user feed and ``:fanned``, trimmed to the
longest ``max_length`` of the flat feeds: no read goes further) holds the activities
its fanouts took. Reads merge and rebuilds copy from it, not from the user feed, so
what was never fanned out (an import without fanout) never reaches a follower's page.
Only a fanout *in order* (each activity newer than every one the producer fanned out
before) may skip followers: one out of order (a backdated post, an import, a retried
delivery) is written to every follower's feed as push-all would, skipping nobody. A
follow raises the reader's floor for the followee to the followee's ``fanned``
maximum, so the reader gets what the followee fans out from then on (and the history
the follow copies), not the rest of its past; a reader removing one of a followee's
activities copies what the followee's fanned timeline still gives the feed into it
and raises the floor past the removed one, so it cannot come back.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

from aiostream._concurrency import gather, run_each
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import FanoutChunk
from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import BaseFeed
from aiostream.ids import DIGEST_BITS, format_key, plain_user_id
from aiostream.leases import lease
from aiostream.manager._checks import check_following
from aiostream.manager._core import ManagerCore
from aiostream.materialize import (
    MaterializationPolicy,
    SelectivePolicy,
    decayed_count,
    decayed_rate,
)
from aiostream.query import Query
from aiostream.realtime import Subscription, relayed
from aiostream.storage.base import (
    Capability,
    Entry,
    FeedStorage,
    MergedReadStorage,
    StateStorage,
    has,
    renews,
    require,
)

# How often a process records that a user read (and so how stale "last read" may be).
RECORD_EVERY = 3600.0
# Entries of a process's caches before they are dropped and rebuilt as used.
CACHE_LIMIT = 100_000
# Reads of user feeds at once when a feed is rebuilt.
REBUILD_CONCURRENCY = 32
# The maxima: per pulled producer's user feed, the microsecond of its newest skipping post.
POSTED = "posted"
# The maxima: per producer's user feed, the microsecond of its fanned timeline's newest.
FANNED = "fanned"
# What follows a user feed's key in the key of its producer's fanned timeline.
FANNED_SUFFIX = ":fanned"


def read_name(user: object) -> str:
    return f"read:{user}"


def stale_name(feed: str, user: object) -> str:
    return f"stale:{feed}:{user}"


def floors_name(feed: str, user: object) -> str:
    return f"floors:{feed}:{user}"


def follows_name(user: object) -> str:
    return f"follows:{user}"


def _followed(recorded: int | None) -> bool:
    """Whether a ``follows`` value (twice the request's version, plus 1 for a follow)
    says the pair is followed."""
    return recorded is not None and recorded % 2 == 1


def fanned_key(user_feed_key: str) -> str:
    """The key of the fanned timeline of the producer whose user feed is ``user_feed_key``."""
    return user_feed_key + FANNED_SUFFIX


def _time(entry_id: int) -> int:
    return entry_id >> DIGEST_BITS


def _largest_id(us: int) -> int:
    """The largest id an activity of microsecond ``us`` can have."""
    return ((us + 1) << DIGEST_BITS) - 1


def _past(query: Query, floor: int | None) -> Query:
    """``query`` narrowed to entries of a later microsecond than ``floor`` (if any)."""
    if floor is None:
        return query
    return query.filter(activity_id__gt=_largest_id(floor))


def post_rate_name(user: object) -> str:
    return f"rate.post:{user}"


def read_rate_name(user: object) -> str:
    return f"rate.read:{user}"


def policy_of(manager: ManagerCore, policy: MaterializationPolicy | None) -> Materializer | None:
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
    if owner.get_user_following_ids is ManagerCore.get_user_following_ids:
        raise ConfigurationError(
            f"{owner.__name__} skips feeds ({policy!r}) but does not implement "
            "get_user_following_ids(user_id), which reads and rebuilds need"
        )
    return Materializer(manager, policy)


async def checked_following(manager: ManagerCore, user_id: Any) -> list[Any]:
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

    def __init__(self, manager: ManagerCore, policy: MaterializationPolicy) -> None:
        self.manager = manager
        self.policy = policy
        self.flat_feeds = frozenset(n for n, c in manager.feed_classes.items() if is_flat(c))
        # A fanned timeline keeps what a read of the longest flat feed may merge.
        self.fanned_length = max(
            (manager.feed_classes[n].max_length for n in self.flat_feeds),
            default=manager.user_feed_class.max_length,
        )
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

    def read_hooks(self) -> dict[str, FlatFeedReads]:
        """What each flat feed of the Manager reads through (see
        :class:`~aiostream.feeds.base.ReadHook`)."""
        return {name: FlatFeedReads(self, name) for name in sorted(self.flat_feeds)}

    @property
    def user_storage(self) -> FeedStorage:
        """The storage of every user's own feed (the user feeds reads pull from)."""
        return self.manager.storage_for(self.manager.user_feed_class)

    @property
    def states(self) -> StateStorage:
        """Where the state lives: beside every user's own feed (a storage that keeps
        states, and leases for the rebuilds)."""
        storage = self.user_storage
        require(
            storage,
            Capability.STATES,
            Capability.LEASES,
            for_=f"the materialization policy of {type(self.manager).__name__}",
        )
        return storage

    # -- fanout, where the Manager cuts chunks --------------------------------------------------

    async def note_posts(self, producer: Any) -> None:
        """Record an add by ``producer`` in its post rate (where one is kept)."""
        policy = self.policy
        if policy.keeps_rates:
            name = post_rate_name(plain_user_id(producer, "user_id"))
            stored = (await self.states.load_states([name])).get(name)
            new = decayed_count(stored, self.manager.now(), policy.half_life, add=1.0)
            await self.states.store_states({name: new})

    async def fans_in_order(self, producer: Any, activities: Sequence[Activity]) -> bool:
        """Whether an add of ``activities`` by ``producer`` is fanned out in order (each
        newer than every activity the producer fanned out before): only then may the
        policy skip followers. An add out of order (a backdated post, an import of
        history, a delivery again) is written to every follower's feed instead: a
        reader whose floor is past it would not see it merged in, and a push-all
        Manager shows it.

        Either way the activities join the producer's fanned timeline and raise its
        ``fanned`` maximum, in one round trip: written to every follower's feed, an
        activity merged in too changes no page, and a floor raised past it is one the
        follow's copy covers."""
        if not activities:
            return True
        key = self._key(plain_user_id(producer, "user_id"))
        times = [_time(a.serialization_id) for a in activities]
        entries = self.manager.user_feed_class.serialize_activities(activities)
        before, _ = await gather(
            self.states.raise_maxima(FANNED, {key: max(times)}),
            self._user_io.add_to_timelines(
                [fanned_key(key)], entries, max_length=self.fanned_length, store=False
            ),
        )
        return key not in before or min(times) > before[key]

    async def forget_fanned(self, producer: Any, activities: Sequence[Activity]) -> None:
        """Take ``activities`` (removed by their author) out of ``producer``'s fanned
        timeline: no read merges them, no rebuild copies them."""
        key = fanned_key(self._key(plain_user_id(producer, "user_id")))
        await self._user_io.remove_from_timelines([key], [a.serialization_id for a in activities])

    async def plan_add(
        self,
        producer: Any,
        activities: Sequence[Activity],
        followers: Mapping[str | None, Sequence[Any]],
        chunks: list[Any],
    ) -> list[Any]:
        """The chunks of an add of ``activities`` by ``producer``, fanned out in order
        (:meth:`fans_in_order`): none for flat feeds when the producer is pulled, and
        the others tagged with the producer when the workers choose followers
        (inactive ones, rates)."""
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
            await self.note_skipped(producer, activities)
        return planned

    async def pulled_by_count(self, producer: Any) -> bool:
        """Whether an add by ``producer`` needs no follower at all when it is in order:
        every feed is flat, and the Manager's ``get_user_follower_count`` says the
        producer is pulled."""
        if self.flat_feeds != set(self.manager.feed_classes) or not self.policy.pulls:
            return False
        count = self.manager.get_user_follower_count(producer)
        if inspect.isawaitable(count):
            count = await count
        return count is not None and self.policy.pulls_all(count)

    async def note_skipped(self, producer: Any, activities: Sequence[Activity]) -> None:
        """Raise ``producer``'s ``posted`` maximum to its newest of ``activities``,
        before any follower skips them: from then on its followers' reads merge its
        fanned timeline."""
        if activities:
            newest = max(_time(a.serialization_id) for a in activities)
            key = self._key(plain_user_id(producer, "user_id"))
            await self.states.raise_maxima(POSTED, {key: newest})

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
        if skipped:  # before the chunk is written: see note_skipped
            await self.note_skipped(producer, activities)
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
        io = feed_class._io_for(self.manager.storage_for(feed_class), self.manager.feed_metrics)
        keys = [format_key(feed_class.key_format, user) for user in users]
        await feed_class._announce(io, keys, "added", [a.serialization_id for a in activities])

    # -- realtime updates ------------------------------------------------------------------------

    def subscribe(
        self, feed: BaseFeed[Any], own: AbstractAsyncContextManager[Subscription], buffer: int
    ) -> AbstractAsyncContextManager[Subscription]:
        """``feed.subscribe()`` of a flat feed: ``own`` (the feed's own subscription),
        which, when the policy pulls, also hears the updates of the user feeds of whom
        the feed's owner follows (read at the start: one channel per followee), as its
        reads merge them in. Posts of pulled producers are written to no follower's
        feed; this is how their followers hear of them."""
        if not self.policy.pulls:
            return own
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
        self, feed: BaseFeed[Any], name: str, start: int, stop: int | None, query: Query
    ) -> list[Any]:
        """A page of ``feed`` (the Manager's flat feed ``name``) as a push-everything
        Manager would show it."""
        user = plain_user_id(feed.user_id)
        if self.policy.inactive_after is None and not self.policy.keeps_rates:
            return await self._read(feed, name, user, start, stop, query)
        # The read is recorded while the page is read (one round trip fewer); if the
        # feed was stale, it has been rebuilt since, and the page is read again.
        stale, page = await gather(
            self._note_read(feed, name, user, self.manager.now()),
            self._read(feed, name, user, start, stop, query),
        )
        return await self._read(feed, name, user, start, stop, query) if stale else page

    async def _read(
        self, feed: BaseFeed[Any], name: str, user: Any, start: int, stop: int | None, query: Query
    ) -> list[Any]:
        if not self.policy.pulls:
            return await feed.read_stored(start, stop, query)
        following = await checked_following(self.manager, user)
        if not following:
            return await feed.read_stored(start, stop, query)
        # A feed shows its newest max_length entries, as a pushed feed trimmed at each
        # write holds them: a window past them is empty, and a filtered or oldest-first
        # read sees only those (the id of the last one bounds it).
        limit = feed.max_length
        if start >= limit or (stop is not None and stop <= start):
            return []
        stop = limit if stop is None else min(stop, limit)
        sources = self._keys_of(following)
        if not query.is_default:
            last = await self._entries(feed, name, sources, limit - 1, limit, Query())
            if last:
                query = query.filter(activity_id__gte=last[0][0])
        entries = await self._entries(feed, name, sources, start, stop, query)
        return feed.get_activity_serializer().loads_entries(entries)

    async def _entries(
        self,
        feed: BaseFeed[Any],
        name: str,
        sources: Sequence[str],
        start: int,
        stop: int,
        query: Query,
    ) -> list[Entry]:
        """``[start:stop]`` under ``query`` of the entries of ``feed`` merged with those
        of the fanned timelines of ``sources`` (the user feeds of every followee; those
        with a ``posted`` maximum are the ones whose posts skipped followers: only they
        hold anything the feed may lack), each above the feed's floor for it."""
        io = feed.io
        floors = floors_name(name, plain_user_id(feed.user_id))
        if not query.descending:
            own, posted, above = await gather(
                io.read_timeline(feed.key, 0, stop, query),
                self.states.load_maxima(POSTED, sources),
                self.states.load_maxima(floors, sources),
            )
            keys = [k for k in sources if k in posted]
            others = await self._pages([(k, _past(query, above.get(k))) for k in keys], stop)
            return _merge([own, *others], start, stop, query.descending)
        if feed.storage is self.user_storage and has(io, Capability.MERGED_READ):
            entries = await self._read_in_storage(io, feed.key, floors, sources, stop, query)
            if entries is not None:
                return entries[start:stop]
        # One round trip for the feed's own page, the followees' newest skipping posts
        # and the feed's floors; then the pages of those that may reach it.
        own, posted, above = await gather(
            io.read_timeline(feed.key, 0, stop, query),
            self.states.load_maxima(POSTED, sources),
            self.states.load_maxima(floors, sources),
        )
        # A followee whose newest skipping post is no later than the feed's floor for it
        # has nothing to merge (what it fanned out since was written to the feed).
        ranked = sorted(
            (
                (newest, key, above.get(key))
                for key, newest in posted.items()
                if newest > above.get(key, -1)
            ),
            reverse=True,
        )
        return await self._pruned_merge(own, ranked, start, stop, query)

    async def _read_in_storage(
        self,
        io: MergedReadStorage,
        key: str,
        floors: str,
        keys: Sequence[str],
        stop: int,
        query: Query,
    ) -> list[Entry] | None:
        """The first ``stop`` entries of feed ``key`` merged with the fanned timelines
        of its owner's followees ``keys`` (above the floors ``floors``), read by the
        storage in one step (None if it cannot). Only the followees this process knows
        to be in the maxima are named; the storage reports who joined them since, with
        what they hold for the page when they are few: those the owner follows are
        merged in (a process new to the maxima hears of many, and reads the page again
        with them)."""
        members = self._members
        sources = [k for k in keys if k in members]
        while True:
            known = self._known
            page = await io.read_merged(
                key, sources, POSTED, stop, query, known, floors=floors, suffix=FANNED_SUFFIX
            )
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

    async def _pages(
        self, sources: Sequence[tuple[str, Query]], stop: int, *, limit: int | None = None
    ) -> list[Sequence[Entry]]:
        """The first ``stop`` entries of the fanned timeline of each of ``sources`` (user
        feed keys) under its query (the first ``stop`` of their union are among them),
        all at once (on a standalone Redis, one round trip)."""
        io = self._user_io
        pages: list[Sequence[Entry]] = [() for _ in sources]

        async def page(index: int) -> None:
            key, query = sources[index]
            pages[index] = await io.read_timeline(fanned_key(key), 0, stop, query)

        await run_each(range(len(sources)), page, limit=limit)
        return pages

    async def _pruned_merge(
        self,
        own: Sequence[Entry],
        ranked: Sequence[tuple[int, str, int | None]],
        start: int,
        stop: int,
        query: Query,
    ) -> list[Entry]:
        """:meth:`_merged` for a newest-first page of a feed whose own entries are
        ``own``, reading only the fanned timelines that may hold one of its entries.
        What one holds for the feed is no newer than its producer's ``posted`` maximum
        (``ranked``: maxima newest first, with the user feeds' keys and the feed's
        floors), so they are read in that order, in waves (of ``stop``, doubling while
        the page is not yet full), until the next one's maximum is older than the
        ``stop``-th entry found so far: for an unfiltered read of a full page, one wave."""
        found: dict[int, Entry] = {entry[0]: entry for entry in own}
        done, size = 0, stop
        while done < len(ranked):
            floor = sorted(found, reverse=True)[stop - 1] if len(found) >= stop else -1
            if floor < 0 and done:
                size *= 2  # a sparse page: the feeds read so far held too few entries
            wave = []
            for newest, key, above in ranked[done : done + size]:
                if _largest_id(newest) <= floor:
                    break
                wave.append((key, above))
            if not wave:
                break
            done += len(wave)
            for entries in await self._pages([(k, _past(query, above)) for k, above in wave], stop):
                for entry in entries:
                    found.setdefault(entry[0], entry)
        return [found[i] for i in sorted(found, reverse=True)[start:stop]]

    async def _note_read(self, feed: BaseFeed[Any], name: str, user: Any, now: float) -> bool:
        """Record a read of ``feed`` (at most once per ``_record_every``); rebuild the
        feed if it is stale. Whether it was (a page read meanwhile may lack entries)."""
        key = str(user)
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
        async with lease(self.user_storage, f"rebuild:{name}:{user}"):
            if mark not in await states.load_states([mark]):
                return  # another reader rebuilt it meanwhile
            # The mark goes only once the feed is filled, so a reader that finds no mark
            # finds the feed rebuilt. A fanout that skipped the feed meanwhile (it saw
            # the mark and did not set it again) wrote its author's user feed first:
            # the second copy, after the mark is gone, takes its activity in.
            await self._copy_followees(feed, name, user)
            await states.delete_states([mark])
            await self._copy_followees(feed, name, user)

    async def _copy_followees(self, feed: BaseFeed[Any], name: str, user: Any) -> None:
        following = await checked_following(self.manager, user)
        # Every followee, those in the maxima too: a read merges a followee only down to
        # its maximum, and a post of theirs that skipped this feed as inactive (pushed,
        # not pulled: a producer back under the threshold) is newer than it.
        await self._copy_fanned(feed, name, user, self._keys_of(following))

    async def _copy_fanned(
        self,
        feed: BaseFeed[Any],
        name: str,
        user: Any,
        keys: Sequence[str],
        *,
        leave_out: frozenset[int] = frozenset(),
    ) -> dict[str, int]:
        """Copy into ``feed`` (the flat feed ``name`` of ``user``) what the fanned
        timelines of the producers whose user feeds are ``keys`` give it (the newest
        ``max_length`` above the feed's floor for each, but ``leave_out``); returns the
        producers' ``fanned``
        maxima, read first (what the copy covers at least)."""
        fanned: dict[str, int]
        above: dict[str, int]
        fanned, above = await gather(
            self.states.load_maxima(FANNED, keys),
            self.states.load_maxima(floors_name(name, user), keys),
        )
        sources = [
            (k, _past(Query(), above.get(k))) for k in keys if fanned.get(k, -1) > above.get(k, -1)
        ]
        pages = await self._pages(sources, feed.max_length, limit=REBUILD_CONCURRENCY)
        # What push would have put there (each producer's newest max_length), trimmed as
        # any write trims; through the user feeds' serializer, as the feed may differ.
        entries = [e for entries in pages for e in entries if e[0] not in leave_out]
        copies = _unique(
            self.manager.user_feed_class.get_activity_serializer().loads_entries(entries)
        )
        if copies:
            max_length = feed.max_length if feed.should_trim(True) else None
            await feed.io.add_to_timelines(
                [feed.key], feed.serialize_activities(copies), max_length=max_length, store=False
            )
        return fanned

    # -- follows and a reader's removals -------------------------------------------------------

    def _flat_feeds_of(self, user: Any) -> list[tuple[str, BaseFeed[Any]]]:
        feeds = self.manager.get_feeds(user)
        return [(name, feeds[name]) for name in sorted(self.flat_feeds)]

    async def note_follow(self, user: Any, targets: Sequence[Any], version: int) -> None:
        """``user`` follows ``targets`` (in the follow's job, request ``version``, before
        its copy). For a target not followed until now, each flat feed's floor is raised
        to what it fanned out so far, so the reads merge what it fans out from now on,
        not its past (the follow copies what it copies, as a push-all Manager's does). A
        target followed already (a follow again, a job delivered twice) keeps its floor."""
        keys = self._keys_of(targets)
        before = await self.states.raise_maxima(
            follows_name(user), dict.fromkeys(keys, 2 * version + 1)
        )
        new = [k for k in keys if not _followed(before.get(k))]
        fanned = await self.states.load_maxima(FANNED, new) if new else {}
        if fanned:
            await run_each(
                sorted(self.flat_feeds),
                lambda name: self.states.raise_maxima(floors_name(name, user), fanned),
            )

    async def note_unfollow(
        self, user: Any, targets: Sequence[Any], version: int, *, keep_history: bool
    ) -> None:
        """``user`` unfollows ``targets`` (request ``version``). With ``keep_history``,
        each flat feed keeps what it showed of those it followed: their posts that
        skipped it (merged in at read time, or copied by a rebuild) are copied in."""
        keys = self._keys_of(targets)
        before = await self.states.raise_maxima(
            follows_name(user), dict.fromkeys(keys, 2 * version)
        )
        if keep_history:
            kept = [k for k in keys if _followed(before.get(k))]
            if kept:
                await run_each(
                    self._flat_feeds_of(user),
                    lambda named: self._copy_fanned(named[1], named[0], user, kept),
                )

    async def settle(self, feed: BaseFeed[Any], name: str) -> None:
        """Before ``feed`` is trimmed or deleted: what the fanned timelines of whom its
        owner follows give it is copied in and the floors raised past it, so that the
        trim or the delete reaches all of it."""
        user = plain_user_id(feed.user_id)
        keys = self._keys_of(await checked_following(self.manager, user))
        await self._take_in(feed, name, user, keys)

    async def before_removal(self, feed: BaseFeed[Any], name: str, ids: Sequence[int]) -> None:
        """``feed``'s reader removes ``ids`` from it: what the fanned timelines of their
        followed authors give the feed is copied into it (but those), and the feed's
        floors for them are raised past it, so that no read merges a removed one back
        (a delivery of it again, out of order, writes it to the feed as push-all does)."""
        user = plain_user_id(feed.user_id)
        stored = await self.user_storage.load_activities(list(ids))
        if not stored:
            return
        serializer = self.manager.user_feed_class.get_activity_serializer()
        authors = {a.actor_id for a in serializer.loads_entries(list(stored.items()))}
        following = set(map(str, await checked_following(self.manager, user)))
        keys = self._keys_of([a for a in authors if str(a) in following])
        if keys:
            await self._take_in(feed, name, user, keys, leave_out=frozenset(ids))

    async def _take_in(
        self,
        feed: BaseFeed[Any],
        name: str,
        user: Any,
        keys: Sequence[str],
        *,
        leave_out: frozenset[int] = frozenset(),
    ) -> None:
        """:meth:`_copy_fanned`, then the feed's floors raised past what it copied: from
        then on the feed's own timeline holds what those producers gave it."""
        raised = await self._copy_fanned(feed, name, user, keys, leave_out=leave_out)
        if raised:
            await self.states.raise_maxima(floors_name(name, user), raised)


class FlatFeedReads:
    """The :class:`~aiostream.feeds.base.ReadHook` of a Manager's flat feed ``name``:
    its reads, a reader's removals, trims, deletes and subscriptions go through the
    Manager's :class:`Materializer`, so the feed shows what a push-everything Manager
    would have written to it."""

    def __init__(self, materializer: Materializer, name: str) -> None:
        self.materializer = materializer
        self.name = name

    async def read(
        self, feed: BaseFeed[Any], start: int, stop: int | None, query: Query
    ) -> list[Any]:
        return await self.materializer.read(feed, self.name, start, stop, query)

    async def before_removal(self, feed: BaseFeed[Any], ids: Sequence[int]) -> None:
        await self.materializer.before_removal(feed, self.name, ids)

    async def settle(self, feed: BaseFeed[Any]) -> None:
        await self.materializer.settle(feed, self.name)

    def subscribe(
        self, feed: BaseFeed[Any], own: AbstractAsyncContextManager[Subscription], buffer: int
    ) -> AbstractAsyncContextManager[Subscription]:
        return self.materializer.subscribe(feed, own, buffer)

    def __repr__(self) -> str:
        return f"<FlatFeedReads {self.name!r} of {self.materializer.policy!r}>"


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
