"""Selective materialization: fanout that skips flat feeds nobody reads and producers
with too many followers, with reads that cannot tell the difference.

Pushing every activity into every follower's feed (Stream Framework's design) makes a
post cost as many writes as its author has followers, and stores feeds nobody reads.
A :class:`MaterializationPolicy` on the Manager decides which flat feeds a fanout
writes; reads through the Manager (``manager.get_feeds(u)[name]``,
``manager.get_feed(...)``) make up for what it skipped, so every page, filter, ordering,
cursor and ``async for`` gives what a push-everything Manager would give (up to when
each trims its feeds):

* **Inactive consumers** (``inactive_after``): a follower who has not read for that
  long is not written; their feed is marked stale, and their next read rebuilds it
  from the user feeds of whom they follow (newest first, up to ``max_length``) before
  answering, once, even when several reads start at once. Reads record that the user
  read, at most once an hour per process.
* **Pulled producers** (:class:`SelectivePolicy`'s ``pull_threshold``): a post by a
  user with at least that many followers is written to no flat feed; a reader merges
  their own feed with the entries of the pulled producers they follow (what their
  user feeds hold). A producer, once pulled, stays pulled.
* **Rates** (:class:`RatePolicy`, after Silberstein et al., "Feeding Frenzy", SIGMOD
  2010): a pair is pushed when the consumer's read rate over the producer's post rate
  reaches ``cost_ratio``; producers whose posts skip someone are pulled by every reader
  who follows them.

Only flat feeds are affected. Aggregated and notification feeds are always pushed:
their groups are built as activities arrive (an aggregator may depend on the order and
on what the group held then), and rebuilding them later would not always give the
groups the push would have built.

The reader needs to know whom a user follows: the Manager's
``get_user_following_ids(user_id)`` hook, which must agree with
``get_user_follower_ids``: a pulled producer's posts reach only readers whose
following list names them.
"""

from __future__ import annotations

import datetime as dt
import math

from aiostream.exceptions import ConfigurationError

__all__ = [
    "MaterializationPolicy",
    "RatePolicy",
    "SelectivePolicy",
    "decayed_count",
    "decayed_rate",
]

DAY = 86400.0


def _positive_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, dt.timedelta):
        raise ConfigurationError(f"{name} must be a datetime.timedelta or None, got {value!r}")
    seconds = value.total_seconds()
    if seconds <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return seconds


class MaterializationPolicy:
    """Which flat feeds a fanout writes. This base class writes them all, as Stream
    Framework does; subclass it, or use :class:`SelectivePolicy` / :class:`RatePolicy`.

    Attributes:
        inactive_after: Seconds without a read after which a follower is not written
            and their feed is rebuilt at their next read (None: everyone is written).
        pulls: Whether some producers' posts skip followers, so that reads merge the
            pulled producers a reader follows.
        keeps_rates: Whether fanout and reads keep the decayed post and read rates that
            :meth:`pushes` looks at (a write per post, and one per reader an hour).
        half_life: Seconds over which those rates halve.
    """

    inactive_after: float | None = None
    pulls: bool = False
    keeps_rates: bool = False
    half_life: float = DAY

    def pulls_all(self, follower_count: int) -> bool:
        """Whether a producer with ``follower_count`` followers is written to no flat
        feed (its readers pull it)."""
        return False

    def pushes(self, post_rate: float, read_rate: float) -> bool:
        """Whether a producer posting ``post_rate`` times a day is written to a
        follower reading ``read_rate`` times a day (with :attr:`keeps_rates`)."""
        return True

    @property
    def active(self) -> bool:
        """Whether this policy ever skips a feed."""
        return self.inactive_after is not None or self.pulls

    def __repr__(self) -> str:
        return f"<{type(self).__name__} inactive_after={self.inactive_after}>"


class SelectivePolicy(MaterializationPolicy):
    """The default rules: inactive consumers and high-follower producers are not written.

    Args:
        inactive_after: Followers who have not read for this long are not written
            (None: off).
        pull_threshold: Producers with at least this many followers are written to no
            flat feed (None: off).

    Raises:
        ConfigurationError: a time that is not a positive ``timedelta``, or a threshold
            that is not an int of at least 1.

    Example::

        class PinManager(Manager):
            inactive_after = dt.timedelta(days=14)
            pull_threshold = 10_000
    """

    def __init__(
        self, inactive_after: dt.timedelta | None = None, pull_threshold: int | None = None
    ) -> None:
        if pull_threshold is not None and (
            isinstance(pull_threshold, bool) or not isinstance(pull_threshold, int)
        ):
            raise ConfigurationError(f"pull_threshold must be an int, got {pull_threshold!r}")
        if pull_threshold is not None and pull_threshold < 1:
            raise ConfigurationError(f"pull_threshold must be at least 1, got {pull_threshold}")
        self.inactive_after = _positive_seconds("inactive_after", inactive_after)
        self.pull_threshold = pull_threshold
        self.pulls = pull_threshold is not None

    def pulls_all(self, follower_count: int) -> bool:
        return self.pull_threshold is not None and follower_count >= self.pull_threshold

    def __repr__(self) -> str:
        return (
            f"<SelectivePolicy inactive_after={self.inactive_after} "
            f"pull_threshold={self.pull_threshold}>"
        )


class RatePolicy(MaterializationPolicy):
    """Push a producer-consumer pair when the consumer reads often enough for the
    producer's posts: ``read_rate >= cost_ratio * post_rate`` (rates per day, decayed).

    Args:
        cost_ratio: What a push costs against a pull (a write per post against a merge
            per read); higher pulls more.
        half_life: How fast the rates forget (one day by default).
        inactive_after: As in :class:`SelectivePolicy` (None: off).

    Raises:
        ConfigurationError: a ratio that is not a positive number, or a time that is
            not a positive ``timedelta``.
    """

    pulls = True
    keeps_rates = True

    def __init__(
        self,
        cost_ratio: float = 1.0,
        *,
        half_life: dt.timedelta = dt.timedelta(days=1),
        inactive_after: dt.timedelta | None = None,
    ) -> None:
        if (
            isinstance(cost_ratio, bool)
            or not isinstance(cost_ratio, int | float)
            or not math.isfinite(cost_ratio)
            or cost_ratio <= 0
        ):
            raise ConfigurationError(f"cost_ratio must be a positive number, got {cost_ratio!r}")
        self.cost_ratio = float(cost_ratio)
        self.half_life = _positive_seconds("half_life", half_life) or DAY
        self.inactive_after = _positive_seconds("inactive_after", inactive_after)

    def pushes(self, post_rate: float, read_rate: float) -> bool:
        return read_rate >= self.cost_ratio * post_rate

    def __repr__(self) -> str:
        return f"<RatePolicy cost_ratio={self.cost_ratio} inactive_after={self.inactive_after}>"


def decayed_count(stored: str | None, now: float, half_life: float, add: float = 0.0) -> str:
    """The stored form of a count that halves every ``half_life`` seconds, with ``add``
    more events at ``now`` (``stored``: its previous form, or None)."""
    count = _current(stored, now, half_life) + add
    return f"{count!r},{now!r}"


def decayed_rate(stored: str | None, now: float, half_life: float) -> float:
    """Events per day a decayed count stands for (0 for None)."""
    return _current(stored, now, half_life) * math.log(2) / half_life * DAY


def _current(stored: str | None, now: float, half_life: float) -> float:
    if not stored:
        return 0.0
    count, _, at = stored.partition(",")
    try:
        elapsed = max(now - float(at), 0.0)
        return float(count) * float(0.5 ** (elapsed / half_life))
    except ValueError:
        return 0.0
