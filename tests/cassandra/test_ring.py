"""A three-node Cassandra ring (127.0.0.1-3, replication factor 3) losing a node: at
QUORUM, fanout into flat, aggregated (lightweight transactions) and notification feeds
and reads go on with one node down; the node, started again, catches up by hinted
handoff; at ONE, writes and reads go on too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import Activity, FanoutError, FanoutPriority, Manager, StorageTimeoutError
from aiostream.storage.cassandra import CassandraStorage, create_schema
from tests.helpers import (
    Pin,
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    at,
)
from tests.servers import CassandraRing, start_cassandra_ring

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra, pytest.mark.slow]

FOLLOWERS = list(range(100, 140))
KEYSPACE = "ring"
CATCH_UP = 120.0  # seconds hints may take to reach a node started again


class RingManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "flat": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }
    user_feed_class = TestUserFeed
    fanout_chunk_size = 10

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: FOLLOWERS}


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraRing]:
    with start_cassandra_ring(Path(tmp_path_factory.mktemp("ring"))) as started:
        yield started


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def schema(ring: CassandraRing) -> str:
    async with CassandraStorage(hosts=ring.hosts, port=ring.port, keyspace=KEYSPACE) as storage:
        await create_schema(
            storage, replication={"class": "SimpleStrategy", "replication_factor": 3}
        )
    return KEYSPACE


def opened(ring: CassandraRing, consistency: str, hosts: list[str] | None = None) -> Any:
    return CassandraStorage(
        hosts=hosts or ring.hosts,
        port=ring.port,
        keyspace=KEYSPACE,
        consistency=consistency,
        namespace=f"n{uuid.uuid4().hex[:8]}",
        request_timeout=20.0,
    )


async def assert_feeds_hold(manager: Manager, activity: Activity) -> None:
    for user in FOLLOWERS:
        feeds = manager.get_feeds(user)
        assert [a.serialization_id for a in await feeds["flat"][:]] == [activity.serialization_id]
        (group,) = await feeds["aggregated"][:]
        assert group.activity_ids == [activity.serialization_id]
        assert await feeds["notification"].count_unseen() == 1


async def fanout_as_a_job_would(manager: Manager, activity: Activity) -> int:
    """``add_user_activity``, tried again after a timeout as an arq job is: in the
    seconds after a node stops, before the others mark it down, a lightweight
    transaction may still wait for it and time out. The number of failed tries."""
    failed = 0
    with anyio.fail_after(CATCH_UP):
        while True:
            try:
                await manager.add_user_activity(1, activity)
                return failed
            except (StorageTimeoutError, FanoutError) as exc:
                causes = exc.errors if isinstance(exc, FanoutError) else [exc]
                assert all(isinstance(e, StorageTimeoutError) for e in causes), causes
                failed += 1
                await anyio.sleep(1.0)


@pytest.fixture
async def quorum(ring: CassandraRing, schema: str) -> AsyncIterator[Any]:
    async with opened(ring, "QUORUM") as storage:
        yield storage


async def test_quorum_goes_on_with_a_node_down_and_the_node_catches_up(
    ring: CassandraRing, quorum: Any
) -> None:
    manager = RingManager(storage=quorum)
    activity = Activity(1, Pin, 1, time=at(1))
    down = ring.nodes[2]
    await anyio.to_thread.run_sync(down.stop)
    try:
        await fanout_as_a_job_would(manager, activity)  # two replicas of three answer
        await assert_feeds_hold(manager, activity)
    finally:
        await anyio.to_thread.run_sync(down.start_again)
    # Hints replay the writes the node missed: read from it alone (at ONE, the others
    # up and holding the hints), every feed shows what the ring shows.
    cluster, session = await anyio.to_thread.run_sync(connect_only, down.host, ring.port)
    try:
        alone = CassandraStorage(
            session=session, keyspace=KEYSPACE, consistency="ONE", namespace=quorum.namespace
        )
        lone = RingManager(storage=alone)
        with anyio.fail_after(CATCH_UP):
            while True:
                try:
                    await assert_feeds_hold(lone, activity)
                    break
                except AssertionError:
                    await anyio.sleep(1.0)  # hints are still on their way
    finally:
        await anyio.to_thread.run_sync(cluster.shutdown)


def connect_only(host: str, port: int) -> tuple[Any, Any]:
    """A driver session that sends every request to ``host`` alone."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy
    from cassandra.query import tuple_factory

    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([host]), row_factory=tuple_factory
    )
    cluster = Cluster(
        [host], port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile}, compression=False
    )
    return cluster, cluster.connect()


async def test_one_goes_on_with_a_node_down(ring: CassandraRing, schema: str) -> None:
    async with opened(ring, "ONE") as storage:
        manager = RingManager(storage=storage)
        activity = Activity(1, Pin, 2, time=at(2))
        down = ring.nodes[0]
        await anyio.to_thread.run_sync(down.stop)
        try:
            await fanout_as_a_job_would(manager, activity)
            await assert_feeds_hold(manager, activity)
        finally:
            await anyio.to_thread.run_sync(down.start_again)
