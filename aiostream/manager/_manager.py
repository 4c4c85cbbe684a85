"""The public calls of the Manager (see :mod:`aiostream.manager`)."""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from aiostream._arguments import checked_flag, listed
from aiostream._concurrency import chunked
from aiostream.activity import Activity
from aiostream.exceptions import ConfigurationError, ValidationError
from aiostream.fanout import Dispatcher, FanoutChunk, FollowChunk, FollowOperation, Job
from aiostream.ids import format_key
from aiostream.leases import lease
from aiostream.manager._core import ManagerCore
from aiostream.manager._following import apply_follow, follow_jobs, newest_part
from aiostream.manager._materialized import policy_of
from aiostream.manager._targets import MAX_FEEDS, MAX_TO_TARGETS, Target, checked_targets
from aiostream.manager._updates import partial_update, update_activities
from aiostream.materialize import MaterializationPolicy
from aiostream.metrics import Metrics, stopwatch
from aiostream.progress import Progress, ProgressOption
from aiostream.storage.base import Capability, FeedStorage, require


class Manager(ManagerCore):
    """Fans activities out to followers' feeds, split by priority and cut into chunks.

    Args:
        storage: Storage for every feed the manager builds (default: each feed class's own).
        dispatcher: Runs fanout chunks (default: :class:`InProcessDispatcher`).
        metrics: Metrics sink (default: no-op).
        policy: Which flat feeds fanout writes (:mod:`aiostream.materialize`; default:
            a :class:`~aiostream.materialize.SelectivePolicy` of the two attributes
            below when one is set, else every feed).

    Class attributes:
        name: What the Manager's arq jobs carry, so that a worker running several
            Managers (``worker_settings(PinManager, NotificationManager)``) runs each
            job with the Manager that made it; default: the class's ``__qualname__``.
            Set it when two Managers of an application share a class name.
        feed_classes: ``{name: feed class}`` every follower gets.
        user_feed_class: Feed of the user's own activities.
        fanout_chunk_size: Followers per chunk (100).
        follow_activity_limit: Activities copied when following someone (5000).
        follow_feeds: Names in ``feed_classes`` that following copies activities into
            (None: all of them; e.g. leave a notification feed out).
        follow_lease_ttl: Seconds a follow / unfollow holder that died blocks the next
            one for that user (30; see :mod:`aiostream.leases`).
        inactive_after: A ``timedelta``: followers who have not read for this long are
            not written, and their flat feeds are rebuilt when they next read (None).
        pull_threshold: Producers with at least this many followers are written to no
            flat feed; their followers' reads pull them (None).
    """

    def __init__(
        self,
        *,
        storage: FeedStorage | None = None,
        dispatcher: Dispatcher | None = None,
        metrics: Metrics | None = None,
        policy: MaterializationPolicy | None = None,
    ) -> None:
        super().__init__(storage=storage, dispatcher=dispatcher, metrics=metrics)
        self._materializer = policy_of(self, policy)
        if self._materializer is not None:
            self.read_hooks.update(self._materializer.read_hooks())

    # -- publishing ------------------------------------------------------------------------------

    async def add_user_activity(
        self, user_id: Any, activity: Activity, *, to: Iterable[Target] | None = None
    ) -> None:
        """Store ``activity``, add it to the user's feed and fan it out to followers.

        ``to`` names up to 100 more feeds, as ``(feed name, user id)`` pairs, that get
        the activity too ("CC"), without a fanout to their users' followers; the
        activity keeps them (:attr:`~aiostream.activity.Activity.to`), so removing or
        updating it reaches them as well.

        Raises:
            ValidationError / SerializationError: bad activity or ``to`` (nothing is
                written).
            FanoutError: some chunks failed (the rest were written).
        """
        if to is None:
            await self._publish(user_id, [activity], trim=True)
        else:
            targets = checked_targets(to, self.feed_classes, limit=MAX_TO_TARGETS, field="to")
            # Published as a copy: the caller's object gets its targets once it is written,
            # not before the checks (a refused activity comes back unchanged).
            addressed = copy.copy(activity)
            addressed.to = tuple(targets)
            await self._publish(user_id, [addressed], trim=True)
            activity.to = addressed.to
        self.metrics.on_activity_published()

    async def add_to_feeds(self, activity: Activity, feeds: Iterable[Target]) -> None:
        """Store ``activity`` and put it into up to 5,000 named feeds, ``(feed name,
        user id)`` pairs, through the dispatcher in chunks of ``fanout_chunk_size``
        users, without any follower fanout. The stored activity adds them to its
        :attr:`~aiostream.activity.Activity.to` (with those it had), so removing or
        updating it reaches them, as it does ``to`` targets.

        Raises:
            ValidationError / SerializationError: bad activity or ``feeds`` (nothing is
                written).
            FanoutError: some chunks failed (the rest were written; adding again is safe).
        """
        targets = checked_targets(feeds, self.feed_classes, limit=MAX_FEEDS, field="feeds")
        self.user_feed_class.serialize_activities([activity])  # checked before any read
        stored = await self.get_activities([activity.serialization_id])
        if stored:
            activity.check_adds_to(stored[0])
        kept = stored[0].to if stored else ()
        activity.to = tuple(dict.fromkeys([*kept, *activity.to, *targets]))
        chunks = self.target_chunks("add", [activity], targets)
        entries = self.user_feed_class.serialize_activities([activity])
        classes = {self.feed_classes[name] for name, _ in targets}
        for storage in self.storages(self.user_feed_class, *classes):
            await storage.store_activities(entries)
        await self.dispatch(chunks)

    async def remove_user_activity(
        self,
        user_id: Any,
        activity: Activity | int | str | None = None,
        *,
        foreign_id: str | None = None,
        time: dt.datetime | None = None,
    ) -> None:
        """Remove an activity from the user's feed and from every follower's feeds.

        Name it by the activity, by its id (an int, or the decimal str ``to_dict()``
        sent), or by its ``foreign_id`` and ``time``; an id or a foreign id is looked up
        in the activity storage first. The stored activity stays (feeds elsewhere may
        still point at it).

        Raises:
            ValidationError: naming ``activity`` or ``foreign_id``: both or neither given,
                or no stored activity has that id / foreign id and time (nothing is
                written).
        """
        given = isinstance(activity, Activity)
        activity = await self.named_activity(activity, foreign_id, time)
        targets = activity.to
        if given:  # the stored activity may have more targets (add_to_feeds after the add)
            stored = await self.get_activities([activity.serialization_id])
            targets = tuple(dict.fromkeys([*targets, *(stored[0].to if stored else ())]))
        chunks = await self.fanout_chunks(user_id, "remove", [activity], trim=False)
        chunks += self.target_chunks("remove", [activity], targets)
        if self._materializer is not None:
            await self._materializer.forget_fanned(user_id, [activity])
        await self.get_user_feed(user_id).remove(activity)
        await self.dispatch(chunks)
        self.metrics.on_activity_removed()

    async def partial_update_activity(
        self,
        activity_id: int | str | None = None,
        *,
        foreign_id: str | None = None,
        time: dt.datetime | None = None,
        set: Mapping[str, Any] | None = None,
        unset: Iterable[str] | None = None,
    ) -> Activity:
        """Change part of a published activity's ``extra_context`` everywhere it is
        shown, as :meth:`update_user_activity` does with the whole of it; returns the
        new version.

        Name the activity by ``activity_id``, or by ``foreign_id`` and ``time``.
        ``set`` maps dotted paths to new values (``{"extra_context.title": "New"}``;
        ``"title"`` is the same path; dicts missing on the way are made), ``unset``
        lists paths to remove (a missing one changes nothing); sets apply first.

        Raises:
            ValidationError: a path that is bad, goes through a value that is not a
                dict, would change actor, verb, object, target, time or foreign id, or
                is both set and unset; or no stored activity is named (nothing is
                written).
            SerializationError: a value cannot be stored.
        """
        return await partial_update(self, activity_id, foreign_id, time, set, unset)

    async def update_user_activity(self, activity: Activity) -> None:
        """Update a published activity everywhere it is shown (see
        :meth:`update_user_activities`)."""
        await self.update_user_activities([activity])

    async def update_user_activities(self, activities: Iterable[Activity]) -> None:
        """Update published activities: store each new version, then replace the copies
        the feeds of its actor's followers hold.

        An update changes ``extra_context`` only: actor, verb, object, target and time
        make the id, and an activity that differs in one of them is another activity.
        The new version overwrites the stored payload under the same id, which flat
        feeds show; an ``"update"`` fanout then replaces the copy each aggregated and
        notification group embeds, where a feed holds it, keeping the group's id, place,
        counts and seen / read markers. Nothing is added anywhere: a feed that removed
        the activity does not get it back. Idempotent (a retried job changes nothing).

        Raises:
            ValidationError: naming ``activity`` (``activities[i]`` for several) when no
                stored activity has its id (never published, or another field than
                ``extra_context`` changed), or ``extra_context`` when the new version
                falls into another group of an aggregated feed; every activity is
                checked before anything is written.
            SerializationError: an activity cannot be stored.
            FanoutError: some chunks failed (the rest were written; updating again is
                safe).
        """
        await update_activities(self, listed(activities, "activities", "a list of activities"))

    async def batch_import(
        self,
        user_id: Any,
        activities: Iterable[Activity],
        fanout: bool = True,
        chunk_size: int = 500,
        progress: ProgressOption = None,
    ) -> None:
        """Import many past activities of one user (no trimming), ``chunk_size`` at a time.

        Args:
            progress: A progress bar on stderr (``None``, the default: only when it is a
                terminal; ``True``: always; ``False``: never), or a callable called with
                ``(done, total)`` after each chunk (tqdm, rich, a log line).

        ``activities`` may be any iterable (a generator is read once, first). Unlike
        :meth:`add_user_activity`, which publishes whatever activity it is given under
        ``user_id`` (as Stream Framework does), an import is the history of one actor.

        Raises:
            ValidationError: naming the argument or ``activities[i]``: not a list of
                activities, an actor that is not ``user_id``, an activity that cannot be
                stored, or another activity stored under one of the ids; everything is
                checked before the first write.
        """
        activities = listed(activities, "activities", "a list of activities")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValidationError("chunk_size", f"expected a positive int, got {chunk_size!r}")
        checked_flag(fanout, "fanout")
        Progress.of(progress, 0, "import")  # a bad progress= is refused before any write
        serializer = self.user_feed_class.get_activity_serializer()
        for index, activity in enumerate(activities):
            serializer.dumps(serializer.check(activity, f"activities[{index}]"))
            if activity.actor_id != user_id:
                raise ValidationError(
                    f"activities[{index}].actor_id",
                    f"is {activity.actor_id!r}, expected the importing user {user_id!r}",
                )
        user_feed = self.get_user_feed(user_id)
        for chunk in chunked(activities, chunk_size):  # another activity under a stored id?
            await user_feed.admit(user_feed.storage, user_feed.serialize_activities(chunk))
        with Progress.of(progress, len(activities), "import") as bar:
            for chunk in chunked(activities, chunk_size):
                if fanout:
                    await self._publish(user_id, list(chunk), trim=False)
                else:
                    await self.get_user_feed(user_id).add_many(chunk, trim=False)
                bar.advance(len(chunk))

    async def _publish(self, user_id: Any, activities: list[Activity], *, trim: bool) -> None:
        user_feed = self.get_user_feed(user_id)
        materializer = self._materializer
        # Everything is checked before the first write: the activities, the follower ids
        # (not asked for when the follower count says the producer is pulled).
        pulled = materializer is not None and await materializer.pulled_by_count(user_id)
        followers = None if pulled else await self.follower_ids(user_id)
        targeted = [c for a in activities for c in self.target_chunks("add", [a], a.to)]
        await user_feed.add_many(activities, trim=trim)
        in_order = True
        if materializer is not None:
            await materializer.note_posts(user_id)
            # Once the user feed took them (a refused add leaves no trace there), before
            # any follower is skipped; out of order, an add skips nobody.
            in_order = await materializer.fans_in_order(user_id, activities)
        if materializer is not None and pulled and in_order:
            await materializer.note_skipped(user_id, activities)
            chunks: list[FanoutChunk] = []
        else:
            if followers is None:
                followers = await self.follower_ids(user_id)
            chunks = await self.fanout_chunks(
                user_id, "add", activities, trim=trim, followers=followers
            )
            if materializer is not None and in_order:
                chunks = await materializer.plan_add(user_id, activities, followers, chunks)
        # Follower feeds on another storage need the activity there too: store it once
        # per distinct storage before any follower feed points at it.
        elsewhere = [
            c for c in self.feed_classes.values() if self.storage_for(c) is not user_feed.storage
        ]
        if elsewhere:
            entries = user_feed.serialize_activities(activities)
            for io in self.storages(*elsewhere):
                store = functools.partial(io.store_activities, only_new=True)
                await user_feed.write_new(io, store, entries)
        await self.dispatch(chunks + targeted)

    async def run(self, job: Job) -> None:
        """Carry out one job (dispatchers and job workers call this).

        A failure is reported to the metrics sink (``on_error``) and raised."""
        try:
            if isinstance(job, FanoutChunk):
                await self.run_chunk(job)
            else:
                await self.run_follow(job)
        except Exception as exc:
            where = f"fanout.{job.operation}" if isinstance(job, FanoutChunk) else job.operation
            self.metrics.on_error(where, exc)
            raise

    async def run_chunk(self, chunk: FanoutChunk) -> None:
        """Carry out one fanout chunk."""
        try:
            feed_class = self.feed_classes[chunk.feed]
        except KeyError:
            raise ConfigurationError(
                f"no feed class named {chunk.feed!r} in feed_classes"
            ) from None
        serializer = feed_class.get_activity_serializer()
        activities: Sequence[Activity] = chunk.stored_activities(serializer)
        storage = self.storage_for(feed_class)
        if chunk.producer is not None and self._materializer is not None:
            written = await self._materializer.writable(chunk, activities)
            chunk = replace(chunk, user_ids=written)
        with stopwatch() as elapsed:
            if chunk.operation == "add":
                await feed_class.fanout_add(
                    chunk.user_ids,
                    activities,
                    storage=storage,
                    trim=chunk.trim,
                    metrics=self.feed_metrics,
                )
            elif chunk.operation == "update":
                # The stored version, not the job's: a retried or late job never puts an
                # older version back.
                ids = [a.serialization_id for a in activities]
                current = await self.io_for(feed_class).load_activities(ids)
                activities = [
                    serializer.loads(current[i]) if i in current else a
                    for i, a in zip(ids, activities, strict=True)
                ]
                await feed_class.fanout_update(
                    chunk.user_ids, activities, storage=storage, metrics=self.feed_metrics
                )
            elif chunk.operation == "remove":
                await feed_class.fanout_remove(
                    chunk.user_ids, activities, storage=storage, metrics=self.feed_metrics
                )
            else:
                raise ValidationError("operation", f"unknown fanout operation {chunk.operation!r}")
        self.metrics.on_fanout(
            feed_class.__name__, chunk.operation, len(chunk.user_ids), elapsed[0]
        )

    # -- following (the work is in aiostream.manager._following) ---------------------------

    async def follow_user(
        self, user_id: Any, target_user_id: Any, *, activity_copy_limit: int | None = None
    ) -> None:
        """Copy the target's recent activities into the user's feeds (see
        :meth:`follow_many_users`)."""
        await self._request(
            "follow",
            user_id,
            [target_user_id],
            activity_copy_limit=activity_copy_limit,
            field="target_user_id",
        )

    async def unfollow_user(
        self, user_id: Any, target_user_id: Any, *, keep_history: bool = False
    ) -> None:
        """Remove the target's activities from the user's feeds (see
        :meth:`unfollow_many_users`)."""
        await self._request(
            "unfollow", user_id, [target_user_id], keep_history=keep_history, field="target_user_id"
        )

    async def follow_many_users(
        self, user_id: Any, target_ids: Iterable[Any], *, activity_copy_limit: int | None = None
    ) -> None:
        """Copy up to ``activity_copy_limit`` recent activities of each target (None:
        :attr:`follow_activity_limit`; 0: none) into every feed of ``user_id``
        (idempotent; through the dispatcher, in chunks of ``fanout_chunk_size`` targets).

        Raises:
            ValidationError: a bad user id, a user following themself (naming the
                target), or a limit that is not a non-negative int; nothing is written.
        """
        await self._request("follow", user_id, target_ids, activity_copy_limit=activity_copy_limit)

    async def unfollow_many_users(
        self, user_id: Any, target_ids: Iterable[Any], *, keep_history: bool = False
    ) -> None:
        """Remove every activity by one of ``target_ids`` from every feed of ``user_id``
        (an actor is a target when its id's text is the target's, as feeds are named);
        with ``keep_history`` leave the feeds as they are (what was copied or fanned out
        stays: only your follow graph changes, and it is yours)."""
        await self._request("unfollow", user_id, target_ids, keep_history=keep_history)

    async def _request(
        self,
        operation: FollowOperation,
        user_id: Any,
        target_ids: Iterable[Any],
        *,
        activity_copy_limit: int | None = None,
        keep_history: bool = False,
        field: str = "",
    ) -> None:
        """A follow or unfollow request: its jobs checked, versioned and dispatched."""
        jobs = await follow_jobs(
            self,
            self._materializer,
            operation,
            user_id,
            target_ids,
            activity_copy_limit=activity_copy_limit,
            keep_history=keep_history,
            field=field,
        )
        await self.dispatch(jobs)

    async def run_follow(self, job: FollowChunk) -> None:
        """Carry out one follow or unfollow chunk, holding the user's follow lease.

        Follows and unfollows of one user run one at a time, wherever they run (the
        lease lives in the user feed's storage), so every feed of the user ends in the
        state of the same last operation; a job leaves out the targets whose newest
        request is a later one than its own (see :mod:`aiostream.manager._following`).
        """
        lease_name = format_key("follow:%(user_id)s", job.user_id)
        require(
            self.storage_for(self.user_feed_class),
            Capability.LEASES,
            for_=f"the follows of {type(self).__name__}",
        )
        storage = self.io_for(self.user_feed_class)
        async with lease(storage, lease_name, ttl=self.follow_lease_ttl):
            newest = await newest_part(self, job)  # without pairs a newer request changed
            if newest is not None:
                await self.apply_follow(newest)

    async def apply_follow(self, job: FollowChunk) -> None:
        """The work of :meth:`run_follow`, done while its lease is held."""
        await apply_follow(self, self._materializer, job)
