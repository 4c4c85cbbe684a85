"""A Pinterest-like demo of aiostream on the in-memory backend (no server needed).

A few hundred users follow each other, pin items to boards and love each other's pins.
Pins fan out to followers' flat and aggregated feeds through a Manager; loves and follows
land in the notification feed of the user they concern. The demo then prints one user's
three feeds in sentences.

Run it with ``python -m examples.pinterest_demo`` (``--users``, ``--seed``, ``--user``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
from collections.abc import Sequence
from typing import Any, ClassVar

from aiostream import (
    Activity,
    AggregatedActivity,
    AggregatedFeed,
    BaseFeed,
    FanoutPriority,
    Follow,
    Love,
    Manager,
    NotificationActivity,
    NotificationFeed,
    RecentVerbAggregator,
    UserBaseFeed,
    Verb,
    register,
)
from aiostream.ids import ItemId
from aiostream.progress import Progress

NAMES = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "xena",
    "yusuf",
    "zoe",
]
BOARDS = ("Surf Girls", "Kitchen", "Tiny Houses", "Road Trips", "Succulents", "Typography")
START = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)


class PinVerb(Verb):
    """Verb 5, as in Stream Framework's example app."""

    id = 5
    infinitive = "pin"
    past_tense = "pinned"


register(PinVerb)


class PinFeed(BaseFeed):
    """What the people you follow pinned."""

    key_format = "feed:normal:%(user_id)s"


class AggregatedPinFeed(AggregatedFeed):
    """The same, grouped per verb and day."""

    key_format = "feed:aggregated:%(user_id)s"
    aggregator_class = RecentVerbAggregator


class UserPinFeed(UserBaseFeed):
    """What a user pinned themselves."""

    key_format = "feed:user:%(user_id)s"


class DemoNotificationFeed(NotificationFeed):
    """Loves of your pins and new followers, grouped per verb, object and day."""

    key_format = "feed:notification:%(user_id)s"


class Network:
    """The demo's social graph: who follows whom."""

    def __init__(self, users: int, rng: random.Random) -> None:
        self.users = list(range(users))
        self.followers: dict[int, set[int]] = {u: set() for u in self.users}
        self.follows: list[tuple[int, int]] = []
        for user in self.users:
            for target in rng.sample(self.users, k=min(12, users - 1)):
                if target != user and user not in self.followers[target]:
                    self.followers[target].add(user)
                    self.follows.append((user, target))


class PinManager(Manager):
    """Fans pins out to followers' flat and aggregated feeds."""

    feed_classes: ClassVar[dict[str, type[BaseFeed[Any]]]] = {
        "normal": PinFeed,
        "aggregated": AggregatedPinFeed,
    }
    user_feed_class = UserPinFeed

    def __init__(self, network: Network, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network = network

    async def get_user_follower_ids(self, user_id: int) -> dict[FanoutPriority, list[int]]:
        followers = sorted(self.network.followers[user_id])
        # Pretend the first half are active users: their feeds are updated first.
        half = len(followers) // 2
        return {FanoutPriority.HIGH: followers[:half], FanoutPriority.LOW: followers[half:]}


def name(user_id: ItemId) -> str:
    """A readable name for a user id (the demo's are ints)."""
    if not isinstance(user_id, int):
        return str(user_id)
    base = NAMES[user_id % len(NAMES)]
    return base if user_id < len(NAMES) else f"{base}{user_id // len(NAMES)}"


def people(actor_ids: Sequence[int], total: int) -> str:
    """'alice', 'alice and bob', 'alice, bob and 3 others'."""
    shown = [name(a) for a in actor_ids[:2]]
    others = total - len(shown)
    if others > 0:
        return f"{', '.join(shown)} and {others} other{'s' if others > 1 else ''}"
    return " and ".join(shown)


def describe_pin(activity: Activity) -> str:
    board = activity.extra_context["board"]
    return f"{name(activity.actor_id)} pinned pin #{activity.object_id} to {board!r}"


def describe_group(group: AggregatedActivity) -> str:
    actors = list(reversed(group.actor_ids))
    count = group.activity_count
    day = group.updated_at.date() if group.updated_at else "?"
    noun = "pin" if count == 1 else "pins"
    return f"{people(actors, group.actor_count)} {group.verb.past_tense} {count} {noun} on {day}"


def describe_notification(group: NotificationActivity) -> str:
    actors = list(reversed(group.actor_ids))
    new = "" if group.is_seen() else "  (new)"
    who = people(actors, group.actor_count)
    if group.verb is Follow:
        return f"{who} started following you{new}"
    return f"{who} {group.verb.past_tense} your pin #{group.activities[0].object_id}{new}"


async def build(users: int, seed: int) -> tuple[PinManager, Network]:
    """Generate the network, pins, loves and follows (the bulk part)."""
    rng = random.Random(seed)
    network = Network(users, rng)
    manager = PinManager(network)
    pins: list[Activity] = []
    clock = START
    with Progress(users * 3, "pinning") as bar:
        for round_ in range(3):
            for user in network.users:
                clock += dt.timedelta(seconds=rng.randint(60, 600))
                pin = Activity(
                    user,
                    PinVerb,
                    len(pins) + 1,
                    time=clock,
                    extra_context={"board": BOARDS[(user + round_) % len(BOARDS)]},
                )
                pins.append(pin)
                await manager.add_user_activity(user, pin)
                bar.advance()
    loves = [(rng.choice(network.users), rng.choice(pins)) for _ in range(users * 4)]
    with Progress(len(loves) + len(network.follows), "notifying") as bar:
        for lover, pin in loves:
            if lover != pin.actor_id:
                clock += dt.timedelta(seconds=rng.randint(1, 30))
                love = Activity(lover, Love, pin.object_id, time=clock)
                await DemoNotificationFeed(pin.actor_id).add(love)
            bar.advance()
        for follower, target in network.follows:
            follow = Activity(follower, Follow, target, time=START + dt.timedelta(minutes=follower))
            await DemoNotificationFeed(target).add(follow)
            bar.advance()
    return manager, network


async def show(manager: PinManager, user: int) -> None:
    """Print one user's flat, aggregated and notification feeds."""
    # Typed accessors: the pages read as list[Activity] and list[AggregatedActivity].
    flat = manager.get_feed(user, "normal", PinFeed)
    print(f"\n== {name(user)}'s feed (people they follow) ==")
    for activity in await flat[:8]:
        print(f"  {activity.time:%b %d %H:%M}  {describe_pin(activity)}")
    print(f"  … {await flat.count()} entries in all")

    print(f"\n== {name(user)}'s aggregated feed ==")
    for group in await manager.get_feed(user, "aggregated", AggregatedPinFeed)[:5]:
        print(f"  {describe_group(group)}")

    notifications = DemoNotificationFeed(user)
    data = await notifications.get_notification_data()
    print(
        f"\n== {name(user)}'s notifications: "
        f"{data['unseen_count']} unseen, {data['unread_count']} unread =="
    )
    groups = await notifications[:8]
    for group in groups:
        print(f"  {describe_notification(group)}")
    if groups:
        await notifications.mark_activity(groups[0], seen=True, read=True)
        await notifications.mark_all(seen=True)
    data = await notifications.get_notification_data()
    print(
        f"  after opening the first one and the menu: "
        f"{data['unseen_count']} unseen, {data['unread_count']} unread"
    )


async def main(argv: Sequence[str] | None = None) -> None:
    """Build the demo network and print one user's feeds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--user", type=int, default=0, help="whose feeds to print")
    args = parser.parse_args(argv)
    manager, network = await build(args.users, args.seed)
    print(
        f"{len(network.users)} users, {len(network.follows)} follow edges, "
        f"{len(network.users) * 3} pins fanned out"
    )
    await show(manager, args.user)


if __name__ == "__main__":
    asyncio.run(main())
