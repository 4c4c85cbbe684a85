"""Activity factories and feed classes shared by the tests."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from aiostream import (
    Activity,
    AggregatedActivity,
    AggregatedFeed,
    BaseFeed,
    NotificationActivity,
    NotificationFeed,
    RecentVerbAggregator,
    UserBaseFeed,
    Verb,
)
from examples.pinterest_demo import PinVerb

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


# The demo's verb (id 5, "pin"): one class per id in a process, and the example services
# under test use the demo's.
Pin = PinVerb


def at(seconds: float) -> dt.datetime:
    """T0 plus ``seconds``."""
    return T0 + dt.timedelta(seconds=seconds)


def make_activities(
    n: int, *, actor: int = 1, verb: type[Verb] = Pin, start: int = 0, step: float = 1.0, **kw: Any
) -> list[Activity]:
    """``n`` activities of one actor, one second apart, objects ``start..start+n-1``."""
    return [Activity(actor, verb, start + i, time=at((start + i) * step), **kw) for i in range(n)]


class CustomActivity(Activity):
    """An Activity subclass with a method, as in the seed's "Extend the activity class"."""

    def mymethod(self) -> str:
        return f"custom {self.object_id}"


class CustomAggregated(AggregatedActivity):
    """A custom aggregated activity class."""


class CustomNotification(NotificationActivity):
    """A custom notification activity class."""


class TestFeed(BaseFeed):
    __test__ = False
    key_format = "test:flat:%(user_id)s"


class TestUserFeed(UserBaseFeed):
    __test__ = False
    key_format = "test:user:%(user_id)s"


class TestAggregatedFeed(AggregatedFeed):
    __test__ = False
    key_format = "test:aggregated:%(user_id)s"
    aggregator_class = RecentVerbAggregator


class TestNotificationFeed(NotificationFeed):
    __test__ = False
    key_format = "test:notification:%(user_id)s"


class CustomFeed(TestFeed):
    activity_class: ClassVar[type[Activity]] = CustomActivity


class CustomAggregatedFeed(TestAggregatedFeed):
    activity_class: ClassVar[type[Activity]] = CustomActivity
    aggregated_activity_class: ClassVar[type[AggregatedActivity]] = CustomAggregated
