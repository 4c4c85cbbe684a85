"""Declared capabilities (``server_mergeable``, ``inline_from_storage``) and the group
format's pieces (:mod:`aiostream.group_format`)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from aiostream import (
    Activity,
    AggregatedActivity,
    Love,
    NotificationActivity,
    NotificationAggregator,
    RecentVerbAggregator,
    group_format,
)
from aiostream import serializers as serializers_module
from aiostream.aggregators import BaseAggregator
from aiostream.group_format import (
    GROUP_OPENING,
    ID_WIDTH,
    IDS_SEPARATOR,
    ROW_SEPARATOR,
    TIME_WIDTH,
    group_header,
    ids_match,
    split_group,
    to_json,
)
from aiostream.serializers import ActivitySerializer, AggregatedActivitySerializer
from tests.helpers import T0


class ByVerb(BaseAggregator):
    def get_group(self, activity: Activity) -> str:
        return str(activity.verb.id)


class OwnMerge(ByVerb):
    def merge(self, aggregated: Any, activities: Any) -> Any:
        return super().merge(aggregated, activities)


class DeclaredMerge(OwnMerge):
    server_mergeable = True


class OwnGrouping(RecentVerbAggregator):
    def group_activities(self, activities: Any) -> Any:
        return super().group_activities(activities)


class MergeMixin:
    def merge(self, aggregated: Any, activities: Any) -> Any:
        return super().merge(aggregated, activities)  # type: ignore[misc]


class MixedIn(MergeMixin, RecentVerbAggregator):
    pass


class DeclaringMixin:
    server_mergeable = True

    def merge(self, aggregated: Any, activities: Any) -> Any:
        return super().merge(aggregated, activities)  # type: ignore[misc]


class DeclaredMixedIn(DeclaringMixin, RecentVerbAggregator):
    pass


class ChildOfOwnMerge(OwnMerge):
    def get_group(self, activity: Activity) -> str:
        return "child"


class ChildOfDeclared(DeclaredMerge):
    pass


class OwnRank(ByVerb):
    def rank(self, aggregated: Any) -> list[AggregatedActivity]:
        return sorted(aggregated, key=lambda a: a.group)


@pytest.mark.parametrize(
    ("aggregator", "mergeable"),
    [
        (BaseAggregator, True),
        (RecentVerbAggregator, True),
        (NotificationAggregator, True),
        (ByVerb, True),  # get_group does not decide how groups merge
        (OwnRank, True),  # nor does rank
        (OwnMerge, False),
        (OwnGrouping, False),
        (MixedIn, False),  # a mixin's override counts as much as the class's own
        (DeclaredMerge, True),
        (DeclaredMixedIn, True),
        (ChildOfOwnMerge, False),
        (ChildOfDeclared, True),
    ],
)
def test_aggregators_declare_the_stock_merge(
    aggregator: type[BaseAggregator], mergeable: bool
) -> None:
    assert aggregator.server_mergeable is mergeable


class OwnAppend(AggregatedActivity):
    def append(self, activity: Activity) -> None:
        super().append(activity)


class OwnIds(NotificationActivity):
    @property
    def activity_ids(self) -> list[int]:
        return super().activity_ids


class DeclaredAppend(OwnAppend):
    server_mergeable = True


class SmallGroup(AggregatedActivity):
    max_aggregated_activities_length = 3

    def is_seen(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("group_class", "mergeable"),
    [
        (AggregatedActivity, True),
        (NotificationActivity, True),
        (SmallGroup, True),  # the cap travels with each merge; is_seen is not merging
        (OwnAppend, False),
        (OwnIds, False),
        (DeclaredAppend, True),
    ],
)
def test_group_classes_declare_the_stock_merge(
    group_class: type[AggregatedActivity], mergeable: bool
) -> None:
    assert group_class.server_mergeable is mergeable


class OwnRows(ActivitySerializer[Activity]):
    def to_data(self, activity: Activity) -> list[Any]:
        return super().to_data(activity)


class OwnActivityDumps(ActivitySerializer[Activity]):
    def dumps(self, activity: Activity) -> str:  # the activity storage's form only
        return super().dumps(activity)


class OwnGroupDumps(AggregatedActivitySerializer[AggregatedActivity, Activity]):
    def dumps(self, aggregated: AggregatedActivity) -> str:
        return super().dumps(aggregated)


class OwnGroupLoads(AggregatedActivitySerializer[AggregatedActivity, Activity]):
    def loads(self, payload: str | bytes) -> AggregatedActivity:
        return super().loads(payload)


@pytest.mark.parametrize(
    ("serializer", "mergeable"),
    [
        (ActivitySerializer, True),
        (AggregatedActivitySerializer, True),
        (OwnRows, False),
        (OwnActivityDumps, True),
        (OwnGroupDumps, False),
        (OwnGroupLoads, False),
    ],
)
def test_serializers_declare_the_stock_merge(serializer: type[Any], mergeable: bool) -> None:
    assert serializer.server_mergeable is mergeable


class OwnFromStorage(Activity):
    @classmethod
    def from_storage(cls, *args: Any) -> OwnFromStorage:
        return super().from_storage(*args)


class DeclaredFromStorage(OwnFromStorage):
    inline_from_storage = True


class PlainSubclass(Activity):
    def describe(self) -> str:
        return "plain"


def test_activities_declare_whether_serializers_may_build_them_inline() -> None:
    assert Activity.inline_from_storage
    assert PlainSubclass.inline_from_storage
    assert not OwnFromStorage.inline_from_storage
    assert DeclaredFromStorage.inline_from_storage


def test_one_module_owns_the_group_format() -> None:
    # serializers re-exports the owner's names, not copies
    assert serializers_module.MergeParts is group_format.MergeParts
    assert serializers_module.group_header is group_header
    assert serializers_module.GROUP_FORMAT_VERSION == 2
    assert (ID_WIDTH, TIME_WIDTH) == (26, 13)
    # Lua compares ids by their two halves as doubles: each must fit 53 bits.
    assert max(TIME_WIDTH, ID_WIDTH - TIME_WIDTH) * 4 <= 53

    serializer = AggregatedActivitySerializer(AggregatedActivity, ActivitySerializer(Activity))
    group = AggregatedActivity(
        'a,"]]\x1f\x1e',
        [Activity(1, Love, 2, time=T0), Activity(2, Love, 2, time=T0 + dt.timedelta(seconds=1))],
    )
    parts = serializer.merge_parts(group)
    assert parts.header == group_header(group.group) == GROUP_OPENING + '"a,\\"]]\\u001f\\u001e",'
    assert parts.payload.startswith(parts.header)
    body, ids = split_group(parts.payload)
    assert body.count(ROW_SEPARATOR) == 1 and IDS_SEPARATOR not in body
    assert ids == "".join(format(a.serialization_id, f"0{ID_WIDTH}x") for a in group.activities)
    data = json.loads(to_json(body))
    assert ids_match(data, ids) and not ids_match(data, ids[:-1]) and not ids_match(data, None)
    assert serializer.loads(parts.payload) == group
