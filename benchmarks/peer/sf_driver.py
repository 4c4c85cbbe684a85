"""The Stream Framework 1.4.0 side of ``benchmarks/peer_bench.py``.

Runs only inside the Stream Framework virtualenv that ``peer_bench`` builds (redis-py
2.10, Celery 5.7, no Django) and is imported by nothing: ``peer_bench`` starts it as
``python sf_driver.py HOST PORT DB`` and sends one JSON request per line on stdin,
``{"op": NAME, ...params}``; each gets one JSON reply line on stdout (``{"error": ...}``
if it failed). Timing happens in here, so the pipe costs nothing in the numbers.

Activities travel as rows ``[actor, verb_id, object, target, time_us, extra_context]``
so both libraries store exactly the same data.

Two Python 3.11 incompatibilities of Stream Framework 1.4.0 are worked around without
editing the installed files:

* ``feed_managers/base.py`` names a parameter ``async`` (a SyntaxError since Python 3.7):
  an import hook compiles that one module with the name changed to ``async_``;
* Celery 5 serializes task arguments even in eager mode, and Stream Framework passes a
  Manager, a feed class and a function: Celery is set to eager with the pickle
  serializer.
"""

from __future__ import annotations

import datetime as dt
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import CodeType, ModuleType
from typing import Any, ClassVar

_PATCHED_MODULE = "stream_framework.feed_managers.base"


class _RenameAsyncLoader(importlib.machinery.SourceFileLoader):
    """Compiles the module from source with the ``async`` identifier renamed.

    ``get_code`` is overridden rather than ``source_to_code`` so no bytecode is read
    from or written to the installed package's ``__pycache__``.
    """

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path).decode("utf-8")
        return compile(re.sub(r"\basync\b", "async_", source), self.path, "exec")


class _RenameAsyncFinder(importlib.abc.MetaPathFinder):
    """Routes the import of the one broken module to :class:`_RenameAsyncLoader`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _PATCHED_MODULE:
            return None
        found = importlib.machinery.PathFinder.find_spec(fullname, path)
        if found is None or found.origin is None:
            return None
        loader = _RenameAsyncLoader(fullname, found.origin)
        return importlib.util.spec_from_file_location(fullname, found.origin, loader=loader)


sys.meta_path.insert(0, _RenameAsyncFinder())

# Imported only now: the finder must be in place, and settings must be set before the
# first Redis call (connection pools are built once, from the settings of that moment).
import celery  # noqa: E402
import redis  # noqa: E402
import stream_framework  # noqa: E402
import stream_framework.settings  # noqa: E402
from stream_framework.activity import Activity  # noqa: E402
from stream_framework.feed_managers.base import FanoutPriority, Manager  # noqa: E402
from stream_framework.feeds.aggregated_feed.redis import RedisAggregatedFeed  # noqa: E402
from stream_framework.feeds.notification_feed.redis import RedisNotificationFeed  # noqa: E402
from stream_framework.feeds.redis import RedisFeed  # noqa: E402
from stream_framework.verbs import base as _stock_verbs  # noqa: E402, F401  (registers them)
from stream_framework.verbs import get_verb_by_id  # noqa: E402
from touch import TOUCH  # noqa: E402  (beside this file: the same reads as aiostream's)

EPOCH = dt.datetime(1970, 1, 1)  # Stream Framework wants naive UTC datetimes


class SFFlatFeed(RedisFeed):
    """Follower feeds and the flat feed that is read (max_length as in aiostream's)."""

    key_format = "sf:flat:%(user_id)s"
    max_length = 100


class SFUserFeed(RedisFeed):
    """The author's own feed (Stream Framework's ``UserBaseFeed`` has no storage)."""

    key_format = "sf:user:%(user_id)s"
    max_length = 10**6


class SFAggregatedFeed(RedisAggregatedFeed):
    """The aggregated feed (its stock ``RecentVerbAggregator``: a group per verb and day)."""

    key_format = "sf:aggregated:%(user_id)s"
    max_length = 100


class SFNotificationFeed(RedisNotificationFeed):
    """The notification feed (groups embed their activities; unseen / unread lists)."""

    key_format = "sf:notification:%(user_id)s"
    markers_key_format = "sf:notification:%(user_id)s"
    max_length = 100


class SFManager(Manager):
    """Fans out to ``self.followers``; pickled into every (eager) Celery task."""

    feed_classes: ClassVar[dict[str, type]] = {"normal": SFFlatFeed}
    user_feed_class = SFUserFeed

    def __init__(self, followers: range) -> None:
        self.followers = followers

    def get_user_follower_ids(self, user_id: int) -> dict[str, range]:
        return {FanoutPriority.HIGH: self.followers}


FEEDS: dict[str, type] = {
    "flat": SFFlatFeed,
    "aggregated": SFAggregatedFeed,
    "notification": SFNotificationFeed,
}


def activity(row: Sequence[Any]) -> Activity:
    """An Activity from ``[actor, verb_id, object, target, time_us, extra_context]``."""
    actor, verb_id, obj, target, time_us, extra = row
    return Activity(
        actor,
        get_verb_by_id(verb_id),
        obj,
        target,
        time=EPOCH + dt.timedelta(microseconds=time_us),
        extra_context=extra or {},
    )


class Driver:
    """The operations ``peer_bench`` asks for, one method each."""

    def op_hello(self) -> dict[str, Any]:
        return {
            "stream_framework": stream_framework.__version__,
            "redis_py": redis.__version__,
            "celery": celery.__version__,
            "python": sys.version.split()[0],
        }

    def op_fanout(self, user_id: int, first_follower: int, followers: int, row: list[Any]) -> Any:
        """``Manager.add_user_activity``: activity storage, user feed, Celery fanout."""
        manager = SFManager(range(first_follower, first_follower + followers))
        item = activity(row)
        started = time.perf_counter()
        manager.add_user_activity(user_id, item)
        seconds = time.perf_counter() - started
        sample = SFFlatFeed(first_follower)
        return {"seconds": seconds, "sample_feed": sample.key, "sample_count": sample.count()}

    def op_store_activities(self, rows: list[list[Any]], batch: int = 1000) -> Any:
        """Fill the shared activity storage (``global:0`` .. ``global:9``)."""
        items = [activity(r) for r in rows]
        started = time.perf_counter()
        for i in range(0, len(items), batch):
            SFFlatFeed.insert_activities(items[i : i + batch])
        return {
            "seconds": time.perf_counter() - started,
            "keys": [f"global:{n}" for n in range(10)],
        }

    def op_fill_groups(self, feed: str, rows: list[list[Any]], users: list[int]) -> Any:
        """``add_many`` of every row to the ``feed`` kind's feed of each user (an
        aggregated feed keeps only ids: store the activities first)."""
        items = [activity(r) for r in rows]
        cls = FEEDS[feed]
        started = time.perf_counter()
        for user_id in users:
            cls(user_id).add_many(items)
        return {"seconds": time.perf_counter() - started}

    def op_fill_timelines(self, rows: list[list[Any]], feeds: list[list[int]]) -> Any:
        """``add_many`` of ``rows[start:start + count]`` to each ``[user_id, start, count]``."""
        items = [activity(r) for r in rows]
        keys = []
        started = time.perf_counter()
        for user_id, start, count in feeds:
            feed = SFFlatFeed(user_id)
            feed.add_many(items[start : start + count])
            keys.append(feed.key)
        return {"seconds": time.perf_counter() - started, "keys": keys}

    def op_single_adds(self, feed: str, user_id: int, rows: list[list[Any]]) -> Any:
        """One activity at a time, stored then added, as ``add_user_activity`` does.

        An aggregated add hydrates the groups it merges into, so the activity must be in
        the activity storage before the add.
        """
        cls = FEEDS[feed]
        target = cls(user_id)
        items = [activity(r) for r in rows]
        started = time.perf_counter()
        for item in items:
            cls.insert_activity(item)
            target.add(item)
        return {"seconds": time.perf_counter() - started, "key": target.key}

    def op_reads(
        self, feed: str, user_id: int, size: int, calls: int, threads: int, touch: str = "none"
    ) -> Any:
        """``feed[:size]`` hydrated, ``calls`` in all over ``threads`` threads, each read
        followed by ``TOUCH[touch]`` of what it returned.

        Each thread has its own feed object (a Stream Framework feed mutates its filter
        state while reading); all start together behind a barrier.
        """
        cls = FEEDS[feed]
        use = TOUCH[touch]
        warm = cls(user_id)
        for _ in range(min(100, calls)):
            use(warm[:size])
        per_thread = calls // threads
        barrier = threading.Barrier(threads + 1)
        samples: list[list[float]] = [[] for _ in range(threads)]
        lengths: list[int] = [0] * threads

        def work(index: int) -> None:
            reader = cls(user_id)
            mine = samples[index]
            barrier.wait()
            for _ in range(per_thread):
                t = time.perf_counter()
                lengths[index] = use(reader[:size])
                mine.append(time.perf_counter() - t)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        flat = [s for per in samples for s in per]
        return {"seconds": seconds, "samples": flat, "items": min(lengths)}


def main(argv: list[str]) -> int:
    host, port, db = argv[0], int(argv[1]), int(argv[2])
    stream_framework.settings.STREAM_REDIS_CONFIG = {
        "default": {"host": host, "port": port, "db": db, "password": None}
    }
    app = celery.Celery("sf_driver", set_as_current=True)
    app.conf.update(
        task_always_eager=True,
        task_eager_propagates=True,
        task_serializer="pickle",
        result_serializer="pickle",
        accept_content=["pickle", "json"],
    )
    # Replies go to a private copy of stdout; anything the libraries print lands on stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    driver = Driver()
    for line in sys.stdin:
        request = json.loads(line)
        method: Callable[..., Any] = getattr(driver, "op_" + request.pop("op"))
        try:
            reply = method(**request)
        except Exception as exc:  # reported to peer_bench, which raises
            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
