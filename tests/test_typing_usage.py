"""The typed API: ``tests/typing/typed_usage.py`` passes ``mypy --strict`` (so a type that
regresses fails the suite too), imports without doing anything, and the typed accessors
of the Manager hand out the feeds their types promise."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aiostream import (
    Activity,
    AggregatedActivity,
    AggregatedFeed,
    BaseFeed,
    ConfigurationError,
    Love,
    Manager,
    MemoryStorage,
    NotificationActivity,
    NotificationFeed,
    UserBaseFeed,
)
from tests.helpers import at

ROOT = Path(__file__).resolve().parents[1]
USAGE = "tests/typing/typed_usage.py"


def test_typed_usage_passes_mypy_strict(tmp_path: Path) -> None:
    # A cache of its own: other mypy runs in the same tree never share it.
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), USAGE]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_usage_imports_without_running_anything() -> None:
    module = importlib.import_module("tests.typing.typed_usage")
    assert module.PinManager.user_feed_class is module.UserPinFeed
    assert module.MyAggregatedFeed.aggregated_activity_class is module.MyGroup
    # Subscripted bases leave the bindings' runtime attributes as they were.
    assert module.MyRedisFeed.storage_backend == "redis"
    assert module.MyCassandraAggregatedFeed.storage_backend == "cassandra"


class Pin(Activity):
    pass


class Flat(BaseFeed[Pin]):
    key_format = "typing:flat:%(user_id)s"
    activity_class = Pin


class Own(UserBaseFeed):
    key_format = "typing:own:%(user_id)s"


class Groups(AggregatedFeed):
    key_format = "typing:groups:%(user_id)s"


class Notes(NotificationFeed):
    key_format = "typing:notes:%(user_id)s"


class TypedManager(Manager):
    feed_classes: ClassVar[dict[str, type[BaseFeed[Any]]]] = {
        "normal": Flat,
        "aggregated": Groups,
        "notification": Notes,
    }
    user_feed_class = Own

    async def get_user_follower_ids(self, user_id: Any) -> dict[str | None, list[int]]:
        return {None: [2]}


@pytest.mark.anyio
async def test_get_feed_hands_out_the_registered_class_on_the_managers_storage() -> None:
    storage = MemoryStorage()
    manager = TypedManager(storage=storage)
    pin = Pin(1, Love, 42, time=at(0))
    await manager.add_user_activity(1, pin)

    flat = manager.get_feed(2, "normal", Flat)
    assert type(flat) is Flat and flat.user_id == 2 and flat.storage is storage
    (read,) = await flat[:]
    assert type(read) is Pin and read == pin
    # A base class of the registered one, bare or subscripted, gives the same feed.
    notes = manager.get_feed(2, "notification", NotificationFeed[NotificationActivity])
    assert type(notes) is Notes and notes.storage is storage
    (group,) = await notes[:]
    assert type(group) is NotificationActivity and group.activities == [pin]
    groups = manager.get_feed(2, "aggregated", AggregatedFeed)
    assert type(groups) is Groups
    assert [type(g) for g in await groups[:]] == [AggregatedActivity]
    assert type(manager.get_feed(2, "aggregated", BaseFeed)) is Groups

    own = manager.get_user_feed(1)
    assert type(own) is Own and own.user_id == 1 and own.storage is storage
    assert await own[:] == [pin]


def test_get_feed_refuses_a_class_the_registered_one_does_not_subclass() -> None:
    manager = TypedManager(storage=MemoryStorage())
    with pytest.raises(ConfigurationError) as refused:
        manager.get_feed(1, "aggregated", NotificationFeed)
    assert str(refused.value) == (
        "TypedManager.feed_classes['aggregated'] is Groups, not a subclass of NotificationFeed"
    )
    with pytest.raises(ConfigurationError) as flat:
        manager.get_feed(1, "normal", AggregatedFeed[AggregatedActivity])
    assert str(flat.value) == (
        "TypedManager.feed_classes['normal'] is Flat, not a subclass of AggregatedFeed"
    )


def test_get_feed_names_the_feeds_there_are_for_an_unknown_name() -> None:
    manager = TypedManager(storage=MemoryStorage())
    with pytest.raises(ConfigurationError) as unknown:
        manager.get_feed(1, "notifications", NotificationFeed)
    assert str(unknown.value) == (
        "TypedManager.feed_classes has no feed class named 'notifications' "
        "(it has ['aggregated', 'normal', 'notification'])"
    )
