"""What a Manager with a :class:`~aiostream.materialize.MaterializationPolicy` does on
each side: which followers a fanout writes, and how a read makes up for the others.

The state it keeps lives in the user feed's storage (:class:`StateStorage`), under
these names:

===================== ==========================================================
``read:<user>``       when the user last read (recorded at most once an hour)
``stale:<feed>:<u>``  the user's flat feed ``<feed>`` missed a write: rebuild it
``pulled:<user>``     since when the user's posts may skip followers (sticky)
``rate.post:<user>``  decayed count of the user's posts
``rate.read:<user>``  decayed count of the user's reads
===================== ==========================================================

and one set of maxima (:meth:`StateStorage.raise_maxima`), ``posted``: per producer,
the time (microseconds) of its newest activity. A read of many pulled producers reads
only those that may hold an entry of its page.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiostream._concurrency import gather, run_each
from aiostream._hooks import check_following
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import FanoutChunk
from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import BaseFeed, plain_user_id
from aiostream.ids import DIGEST_BITS
from aiostream.leases import lease
from aiostream.materialize import (
    PULL_GRACE,
    MaterializationPolicy,
    SelectivePolicy,
    decayed_count,
    decayed_rate,
)
from aiostream.query import Query
from aiostream.storage.base import (
    FeedStorage,
    MergedPage,
    MergedReadStorage,
    MergeSource,
    StateStorage,
)

if TYPE_CHECKING:
    from aiostream.manager import Manager

# How often a process records that a user read (and so how stale "last read" may be).
RECORD_EVERY = 3600.0
# Entries of a process's caches before they are dropped and rebuilt as used.
CACHE_LIMIT = 100_000
# Readers whose pulled followees a process keeps (each a list as long as theirs).
READER_CACHE_LIMIT = 10_000
# Reads of user feeds at once when a feed is rebuilt.
REBUILD_CONCURRENCY = 32
# The maxima: per producer, the microsecond of its newest activity.
POSTED = "posted"


def read_name(user: object) -> str:
    return f"read:{user}"


def stale_name(feed: str, user: object) -> str:
    return f"stale:{feed}:{user}"


def pulled_name(user: object) -> str:
    return f"pulled:{user}"


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
        # producer id -> since when it is pulled (sticky: trusted forever)
        self._pulled: dict[Any, float] = {}
        # producer id -> when this process last saw it not pulled (trusted < PULL_GRACE)
        self._not_pulled: dict[Any, float] = {}
        # reader -> ((length, hash) of their following, the pulled among them, when the
        # others were last looked at). Tuples: once the garbage collector finds that a
        # tuple holds only ids it stops tracking it, so thousands of readers' thousands
        # of producers do not lengthen every full collection (lists would).
        self._pulled_of: dict[Any, tuple[tuple[int, int], tuple[Any, ...], float]] = {}
        # producer id -> its user feed as a source of merged reads
        self._sources: dict[Any, MergeSource] = {}
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

    async def note_posts(self, producer: Any, activities: Sequence[Activity]) -> None:
        """Record an add by ``producer`` before any follower may be skipped: the time of
        its newest activity (what reads prune pulled producers by) and its post rate."""
        policy, now = self.policy, self.manager.now()
        producer = plain_user_id(producer, "user_id")
        if policy.pulls and activities:
            newest = max(a.serialization_id >> DIGEST_BITS for a in activities)
            await self.states.raise_maxima(POSTED, {str(producer): newest})
        if policy.keeps_rates:
            name = post_rate_name(producer)
            stored = (await self.states.load_states([name])).get(name)
            new = decayed_count(stored, now, policy.half_life, add=1.0)
            await self.states.store_states({name: new})

    async def plan_add(
        self, producer: Any, followers: Mapping[str | None, Sequence[Any]], chunks: list[Any]
    ) -> list[Any]:
        """The chunks of an add by ``producer``: none for flat feeds when the producer is
        pulled (past its grace), and the others tagged with the producer when the
        workers choose followers (inactive ones, rates)."""
        policy, now = self.policy, self.manager.now()
        producer = plain_user_id(producer, "user_id")
        skip = False
        if policy.pulls_all(sum(len(ids) for ids in followers.values())):
            since = await self._flag_pulled(producer, now)
            skip = now - since >= PULL_GRACE
        tag = policy.inactive_after is not None or policy.keeps_rates
        planned = []
        for chunk in chunks:
            if isinstance(chunk, FanoutChunk) and chunk.feed in self.flat_feeds:
                if skip:
                    continue
                if tag:
                    chunk = replace(chunk, producer=producer)
            planned.append(chunk)
        return planned

    async def skips_followers(self, producer: Any) -> bool:
        """Whether an add by ``producer`` needs no follower at all: every feed is flat,
        and the Manager's ``get_user_follower_count`` says the producer is pulled (past
        its grace)."""
        if self.flat_feeds != set(self.manager.feed_classes) or not self.policy.pulls:
            return False
        count = self.manager.get_user_follower_count(producer)
        if inspect.isawaitable(count):
            count = await count
        if count is None or not self.policy.pulls_all(count):
            return False
        now = self.manager.now()
        producer = plain_user_id(producer, "user_id")
        return now - await self._flag_pulled(producer, now) >= PULL_GRACE

    async def _flag_pulled(self, producer: Any, now: float) -> float:
        key = producer
        if key in self._pulled:
            return self._pulled[key]
        name = pulled_name(producer)
        found = await self.states.load_states([name])
        since = float(found[name]) if name in found else now
        if name not in found:
            await self.states.store_states({name: repr(now)})
        _remember(self._pulled, key, since)
        return since

    # -- fanout, where a chunk is written ----------------------------------------------------

    async def writable(self, chunk: FanoutChunk) -> tuple[int | str, ...]:
        """The followers of ``chunk`` (an add into a flat feed) the policy writes; marks
        the feeds of the inactive ones stale."""
        policy, now, producer = self.policy, self.manager.now(), chunk.producer
        users = chunk.user_ids
        names: list[str] = []
        if policy.inactive_after is not None:
            names += [read_name(u) for u in users] + [stale_name(chunk.feed, u) for u in users]
        rates = policy.keeps_rates and producer is not None
        if rates:
            names += [read_rate_name(u) for u in users]
            names += [post_rate_name(producer), pulled_name(producer)]
        found = await self.states.load_states(names)
        marks: dict[str, str] = {}
        post_rate = decayed_rate(found.get(post_rate_name(producer)), now, policy.half_life)
        pulled_since = found.get(pulled_name(producer))
        may_skip = pulled_since is not None and now - float(pulled_since) >= PULL_GRACE
        written = []
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
                    if may_skip:
                        continue
                    if pulled_since is None:  # readers must learn it before anyone is skipped
                        pulled_since = repr(now)
                        marks[pulled_name(producer)] = pulled_since
            written.append(user)
        if marks:
            await self.states.store_states(marks)
        return tuple(written)

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self, feed: BaseFeed[Any], start: int, stop: int | None, query: Query
    ) -> list[Any]:
        """A page of ``feed`` as a push-everything Manager would show it."""
        user = plain_user_id(feed.user_id)
        now = self.manager.now()
        if self.policy.inactive_after is not None or self.policy.keeps_rates:
            await self._note_read(feed, user, now)
        if not self.policy.pulls:
            return await feed._read_stored(start, stop, query)
        following = await checked_following(self.manager, user)
        signature = (len(following), hash(tuple(following)))
        cached = self._pulled_of.get(user)
        pulled: tuple[Any, ...]
        unknown: list[Any]
        if cached is not None and cached[0] == signature and now - cached[2] < PULL_GRACE / 2:
            pulled, unknown, checked = cached[1], [], cached[2]
        else:
            known, unknown, checked = self._known_pulled(following, now)
            pulled = tuple(known)
        if stop is None or not query.descending:
            pulled += tuple(await self._resolve(unknown, now))
            if not pulled:
                return await feed._read_stored(start, stop, query)
            return await _merged([feed, *self._user_feeds(pulled)], start, stop, query)
        if not pulled and not unknown:
            return await feed._read_stored(start, stop, query)
        page = await self._read_in_storage(feed, pulled, unknown, stop, query)
        if page is None:
            # One round trip for the feed's own page, the newest posts of the producers
            # that are or may be pulled, and whether the latter are; then their pages.
            own, posted, states = await gather(
                feed._io.read_timeline(feed.key, 0, stop, query),
                self.states.load_maxima(POSTED, [str(p) for p in (*pulled, *unknown)]),
                self.states.load_states([pulled_name(p) for p in unknown]),
            )
        else:
            states = page.states
        if unknown:
            pulled += tuple(await self._resolve(unknown, now, states))
        if cached is None or cached[1] is not pulled:
            _remember(self._pulled_of, user, (signature, pulled, checked), READER_CACHE_LIMIT)
        if page is not None:
            return feed.get_activity_serializer().loads_entries(page.entries[start:stop])
        # A producer with no post recorded has none that skipped a follower.
        ranked = sorted(
            ((posted[str(p)], p) for p in pulled if str(p) in posted),
            key=lambda pair: pair[0],
            reverse=True,
        )
        return await self._pruned_merge(feed, own, ranked, start, stop, query)

    async def _read_in_storage(
        self,
        feed: BaseFeed[Any],
        pulled: Sequence[Any],
        unknown: Sequence[Any],
        stop: int,
        query: Query,
    ) -> MergedPage | None:
        """The first ``stop`` entries of ``feed`` merged with the user feeds of
        ``pulled`` and of those of ``unknown`` that are pulled, read by the storage in
        one step, when the feed, the user feeds and the states share one storage that
        can (:class:`~aiostream.storage.base.MergedReadStorage`); else None."""
        io = feed._io
        if feed.storage is not self.user_storage or not isinstance(io, MergedReadStorage):
            return None
        source_of = self._source
        sources = [source_of(p) for p in pulled]
        sources += [source_of(p)._replace(condition=pulled_name(p)) for p in unknown]
        return await io.read_merged(feed.key, sources, POSTED, stop, query)

    def _source(self, producer: Any) -> MergeSource:
        """``producer``'s user feed as a source of merged reads (remembered: building a
        feed costs more than a lookup, a read names thousands of producers, and objects
        made per read make the garbage collector run more often)."""
        source = self._sources.get(producer)
        if source is None:
            key = self.manager.user_feed_class(producer, storage=self.user_storage).key
            source = MergeSource(key, str(producer))
            _remember(self._sources, producer, source)
        return source

    def _user_feeds(self, producers: Sequence[Any]) -> list[BaseFeed[Any]]:
        storage = self.user_storage
        return [self.manager.user_feed_class(p, storage=storage) for p in producers]

    async def _pruned_merge(
        self,
        feed: BaseFeed[Any],
        own: Sequence[tuple[int, str]],
        ranked: Sequence[tuple[int, Any]],
        start: int,
        stop: int,
        query: Query,
    ) -> list[Any]:
        """:func:`_merged` for a newest-first page, reading only the pulled producers
        that may hold one of its entries. A producer's entries are no newer than its
        newest post (``ranked``: newest posts first, with their producers), so they are
        read in that order, in waves (of ``stop``, doubling while the page is not yet
        full), until the next one's newest post is older than the ``stop``-th entry
        found so far: for an unfiltered read of a full page, one wave."""
        found: dict[int, tuple[int, str]] = {entry[0]: entry for entry in own}
        done, size = 0, stop
        while done < len(ranked):
            floor = sorted(found, reverse=True)[stop - 1] if len(found) >= stop else -1
            if floor < 0 and done:
                size *= 2  # a sparse page: the producers read so far held too few entries
            wave = []
            for newest, producer in ranked[done : done + size]:
                # The largest id an activity of that microsecond can have.
                if ((newest + 1) << DIGEST_BITS) - 1 <= floor:
                    break
                wave.append(producer)
            if not wave:
                break
            done += len(wave)
            pages = await gather(
                *(s._io.read_timeline(s.key, 0, stop, query) for s in self._user_feeds(wave))
            )
            for entries in pages:
                for entry in entries:
                    found.setdefault(entry[0], entry)
        chosen = [found[i] for i in sorted(found, reverse=True)[start:stop]]
        return feed.get_activity_serializer().loads_entries(chosen)

    async def _note_read(self, feed: BaseFeed[Any], user: Any, now: float) -> None:
        key, name = str(user), feed._feed_name
        if self.policy.keeps_rates:  # counted only where a rate is kept of them
            _remember(self._reads, key, self._reads.get(key, 0) + 1)
        # Per feed: each flat feed of a user has its own stale mark.
        fresh_key = f"{name}:{user}"
        if self._fresh.get(fresh_key, 0.0) > now:
            return
        names = [read_name(user)]
        if self.policy.inactive_after is not None:
            names.append(stale_name(name, user))
        if self.policy.keeps_rates:
            names.append(read_rate_name(user))
        found = await self.states.load_states(names)
        last = float(found[read_name(user)]) if read_name(user) in found else None
        if last is None or now - last >= self._record_every:
            record = {read_name(user): repr(now)}
            if self.policy.keeps_rates:
                count = float(self._reads.pop(key, 1))
                record[read_rate_name(user)] = decayed_count(
                    found.get(read_rate_name(user)), now, self.policy.half_life, add=count
                )
            await self.states.store_states(record)
            last = now
        if stale_name(name, user) in found:
            await self._rebuild(feed, name, user)
        until = last + self._record_every
        if self.policy.inactive_after is not None:
            until = min(until, last + self.policy.inactive_after)
        _remember(self._fresh, fresh_key, until)

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
        pulled = set(map(str, await self._pulled_among(following, self.manager.now())))
        sources = [
            self.manager.user_feed_class(p, storage=self.user_storage)
            for p in following
            if str(p) not in pulled
        ]
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

    def _known_pulled(
        self, following: Sequence[Any], now: float
    ) -> tuple[list[Any], list[Any], float]:
        """The producers in ``following`` this process knows are pulled, those it must
        look up (unknown, or seen not pulled too long ago: a producer's followers are
        skipped a grace period after it is flagged, and this process looks again within
        half of it), and when the least recently looked at of the others was."""
        # Keyed by the ids as given (7 and "7" are one user: a miss, then a second entry).
        pulled, not_pulled = self._pulled, self._not_pulled
        recent = now - PULL_GRACE / 2
        known, unknown = [], []
        checked = now
        for producer in following:
            if producer in pulled:
                known.append(producer)
                continue
            seen = not_pulled.get(producer, -1e18)
            if seen <= recent:
                unknown.append(producer)
            elif seen < checked:
                checked = seen
        return known, unknown, checked

    async def _resolve(
        self, unknown: Sequence[Any], now: float, found: Mapping[str, str] | None = None
    ) -> list[Any]:
        """Which of ``unknown`` are pulled, by their stored marks (``found``, or loaded),
        remembered."""
        if not unknown:
            return []
        if found is None:
            found = await self.states.load_states([pulled_name(p) for p in unknown])
        newly = []
        for producer in unknown:
            since = found.get(pulled_name(producer))
            if since is None:
                _remember(self._not_pulled, producer, now)
            else:
                _remember(self._pulled, producer, float(since))
                newly.append(producer)
        return newly

    async def _pulled_among(self, following: Sequence[Any], now: float) -> list[Any]:
        """The producers in ``following`` that are pulled (this process's view, which is
        never more than a grace period late)."""
        known, unknown, _ = self._known_pulled(following, now)
        return known + await self._resolve(unknown, now)


def _unique(activities: Sequence[Activity]) -> list[Activity]:
    by_id: dict[int, Activity] = {}
    for activity in activities:
        by_id.setdefault(activity.serialization_id, activity)
    return list(by_id.values())


async def _merged(
    sources: Sequence[BaseFeed[Any]], start: int, stop: int | None, query: Query
) -> list[Any]:
    """``[start:stop]`` under ``query`` of every source's entries together: the first
    ``stop`` of the union are among each source's first ``stop``, so each source is
    read once, all at once (on a standalone Redis, one round trip), and only the
    entries of the page are decoded."""
    pages: list[Sequence[tuple[int, str]]] = [() for _ in sources]

    async def page(index: int) -> None:
        source = sources[index]
        pages[index] = await source._io.read_timeline(source.key, 0, stop, query)

    await run_each(range(len(sources)), page)
    by_id: dict[int, tuple[int, str]] = {}
    for entries in pages:
        for entry in entries:
            by_id.setdefault(entry[0], entry)
    ordered = sorted(by_id, reverse=query.descending)
    chosen = [by_id[i] for i in ordered[start:stop]]
    return sources[0].get_activity_serializer().loads_entries(chosen)
