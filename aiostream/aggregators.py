"""Aggregators decide which activities are shown together as one group.

Subclass :class:`BaseAggregator` and implement :meth:`~BaseAggregator.get_group`::

    class MyAggregator(BaseAggregator):
        def get_group(self, activity):
            return f"{activity.verb.id}-{activity.time.date()}"

Groups are ranked newest first (by ``updated_at``) unless :meth:`~BaseAggregator.rank`
is overridden; the ranking orders what ``add_many`` returns, while feeds themselves are
always stored by group id (which follows ``updated_at``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar

from aiostream.activity import Activity, AggregatedActivity, NotificationActivity, group_key
from aiostream.exceptions import DuplicateActivityError
from aiostream.group_format import Capabilities, DeclaresCapabilities
from aiostream.ids import id_text

__all__ = [
    "BaseAggregator",
    "NotificationAggregator",
    "RecentRankMixin",
    "RecentVerbAggregator",
]

Changed = tuple[AggregatedActivity, AggregatedActivity]
# What the stock merge rule depends on (see server_mergeable).
_MERGE_RULE = ("merge", "group_activities")


class BaseAggregator(DeclaresCapabilities, ABC):
    """Groups activities into aggregated activities and merges new ones into groups.

    Args:
        aggregated_activity_class: Class of the groups it builds.
        activity_class: Class of the activities it groups (informational).

    Class attributes:
        server_mergeable: Whether a storage may merge new activities into the stored
            groups itself, as :meth:`merge` does here (by
            :meth:`~aiostream.activity.AggregatedActivity.append`), when the group class
            and the serializers allow it too. True here; a subclass that overrides
            :meth:`merge` or :meth:`group_activities` gets False unless it sets it in its
            own body (:meth:`get_group` and :meth:`rank` do not matter).
    """

    server_mergeable: ClassVar[bool] = True
    capability_rules: ClassVar[Capabilities] = {"server_mergeable": _MERGE_RULE}

    def __init__(
        self,
        aggregated_activity_class: type[AggregatedActivity] = AggregatedActivity,
        activity_class: type[Activity] = Activity,
    ) -> None:
        self.aggregated_activity_class = aggregated_activity_class
        self.activity_class = activity_class

    @abstractmethod
    def get_group(self, activity: Activity) -> str | int:
        """The group key of ``activity`` (a str; an int is taken as its decimal form)."""

    def group_of(self, activity: Activity) -> str:
        """:meth:`get_group` as the str the group is stored under (what feeds call)."""
        return group_key(self.get_group(activity))

    def rank(self, aggregated: Sequence[AggregatedActivity]) -> list[AggregatedActivity]:
        """Order groups for display; newest update first by default."""
        return sorted(aggregated, key=lambda a: a.serialization_id, reverse=True)

    def group_activities(self, activities: Iterable[Activity]) -> dict[str, AggregatedActivity]:
        """Group ``activities`` (oldest first inside each group); duplicates are skipped."""
        groups: dict[str, AggregatedActivity] = {}
        for activity in sorted(activities, key=lambda a: a.serialization_id):
            group = self.group_of(activity)
            if group not in groups:
                groups[group] = self.aggregated_activity_class(group)
            try:
                groups[group].append(activity)
            except DuplicateActivityError:
                continue
        return groups

    def aggregate(self, activities: Iterable[Activity]) -> list[AggregatedActivity]:
        """Group and rank ``activities``."""
        return self.rank(list(self.group_activities(activities).values()))

    def merge(
        self, aggregated: Iterable[AggregatedActivity], activities: Iterable[Activity]
    ) -> tuple[list[AggregatedActivity], list[Changed], list[AggregatedActivity]]:
        """Merge new ``activities`` into the existing groups ``aggregated``.

        Returns:
            ``(new, changed, deleted)``: groups that did not exist (ranked, as
            :meth:`aggregate` ranks them), ``(before, after)`` pairs for groups that gained
            activities (in the rank of ``after``), and groups to delete (always empty
            here; subclasses may use it).
        """
        current = {a.group: a for a in aggregated}
        new: list[AggregatedActivity] = []
        changed: list[Changed] = []
        for group, incoming in self.group_activities(activities).items():
            before = current.get(group)
            if before is None:
                new.append(incoming)
                continue
            after = before.copy()
            for activity in incoming.activities:
                try:
                    after.append(activity)
                except DuplicateActivityError:
                    continue
            if (after.activity_ids, after.minimized_activities) != (
                before.activity_ids,
                before.minimized_activities,
            ):
                changed.append((before, after))
        ranked = {id(a): i for i, a in enumerate(self.rank([after for _, after in changed]))}
        changed.sort(key=lambda pair: ranked[id(pair[1])])
        return self.rank(new), changed, []


class RecentRankMixin:
    """Ranking by last update, newest first: what :meth:`BaseAggregator.rank` does
    already. Kept, adding nothing, because Stream Framework aggregators mix it in
    (``class MyAggregator(RecentRankMixin, BaseAggregator)`` keeps working)."""


class RecentVerbAggregator(RecentRankMixin, BaseAggregator):
    """One group per verb per day (``"3-2024-05-01"``)."""

    def get_group(self, activity: Activity) -> str:
        """``"<verb id>-<UTC date>"``."""
        return f"{activity.verb.id}-{activity.time.date()}"


class NotificationAggregator(RecentRankMixin, BaseAggregator):
    """One group per verb, object and day: "alice and 3 others loved your pin"."""

    def __init__(
        self,
        aggregated_activity_class: type[AggregatedActivity] = NotificationActivity,
        activity_class: type[Activity] = Activity,
    ) -> None:
        super().__init__(aggregated_activity_class, activity_class)

    def get_group(self, activity: Activity) -> str:
        """``"<verb id>-<object id>-<UTC date>"`` (an object id as
        :func:`~aiostream.ids.id_text` writes it: ints in decimal, a str quoted)."""
        return f"{activity.verb.id}-{id_text(activity.object_id)}-{activity.time.date()}"
