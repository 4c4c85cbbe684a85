"""A three-node Cassandra ring (127.0.0.1-3, replication factor 3) losing a node: at
QUORUM, fanout into flat, aggregated (lightweight transactions) and notification feeds
and reads go on with one node down; the node, started again, catches up by hinted
handoff and, for the groups' lightweight transactions, by the read repair of a read at
ALL (its own replica, read with the two others stopped, then holds exactly what the ring
holds); at ONE, writes and reads go on too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import (
    Activity,
    FanoutError,
    FanoutPriority,
    Manager,
    StorageTimeoutError,
    StorageUnavailableError,
)
from aiostream.storage.cassandra import CassandraStorage, create_schema
from tests.helpers import (
    Pin,
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    at,
)
from tests.servers import CassandraRing, CassandraServer, start_cassandra_ring

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra, pytest.mark.slow]

FOLLOWERS = list(range(100, 140))
KEYSPACE = "ring"
CATCH_UP = 120.0  # seconds hints may take to reach a node started again
HINTS_WRITTEN = 30.0  # seconds a coordinator may take to put its hints on disk (1 s flushes)
ALONE = 60.0  # seconds a node may take to see that the two others stopped


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


def opened(
    ring: CassandraRing,
    consistency: str,
    hosts: list[str] | None = None,
    namespace: str | None = None,
) -> Any:
    return CassandraStorage(
        hosts=hosts or ring.hosts,
        port=ring.port,
        keyspace=KEYSPACE,
        consistency=consistency,
        namespace=namespace or f"n{uuid.uuid4().hex[:8]}",
        request_timeout=20.0,
    )


async def assert_feeds_hold(manager: Manager, activity: Activity) -> None:
    """Every feed the fanout wrote holds exactly ``activity`` (a notification unseen)."""
    assert await manager.get_user_feed(1)[:] == [activity]
    for user in FOLLOWERS:
        feeds = manager.get_feeds(user)
        assert await feeds["flat"][:] == [activity]
        (group,) = await feeds["aggregated"][:]
        assert group.activities == [activity]
        (notification,) = await feeds["notification"][:]
        assert notification.activities == [activity]
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


@pytest.mark.timeout(600)  # the ring's start, then three nodes stopped and started again
async def test_quorum_goes_on_with_a_node_down_and_the_node_catches_up(
    ring: CassandraRing, quorum: Any
) -> None:
    manager = RingManager(storage=quorum)
    activity = Activity(1, Pin, 1, time=at(1))
    down = ring.nodes[2]
    others = [node for node in ring.nodes if node is not down]
    down_id = await host_id_of(quorum, down)
    await anyio.to_thread.run_sync(down.stop)
    try:
        await fanout_as_a_job_would(manager, activity)  # two replicas of three answer
        await assert_feeds_hold(manager, activity)
        # What the node missed waits as hints on the coordinators' disks.
        with anyio.fail_after(HINTS_WRITTEN):
            await wait_for_hints(others, down_id, held=True)
    finally:
        await anyio.to_thread.run_sync(down.start_again)
    # Hinted handoff: each hints file is deleted once every hint in it was delivered to
    # the node and acknowledged. Only the handoff is waited for (bounded): what the node
    # then holds is read once, below, never polled until it looks right.
    with anyio.fail_after(CATCH_UP):
        await wait_for_hints(others, down_id, held=False)
    # Hints replay the plain writes (user and flat feeds); the groups are written by
    # lightweight transactions, whose commit a replica that was down may still lack
    # after the handoff (seen in CI: the flat feed replayed, the group not). A read at
    # ALL repairs every replica that differs (blocking read repair), as `nodetool
    # repair` would; then the node's own replica holds everything.
    async with opened(ring, "ALL", namespace=quorum.namespace) as everything:
        await assert_feeds_hold(RingManager(storage=everything), activity)
    await assert_holds_alone(ring, down, down_id, quorum.namespace, activity)


async def host_id_of(storage: Any, node: CassandraServer) -> uuid.UUID:
    """The host id the ring knows ``node`` by (what its hints files are named after)."""
    session = await storage.get_session()
    (host,) = [h for h in session.cluster.metadata.all_hosts() if h.address == node.host]
    return host.host_id


def hint_files(nodes: Sequence[CassandraServer], host_id: uuid.UUID) -> list[Path]:
    """The hints files ``nodes`` keep for the node ``host_id`` (``hints_directory``
    defaults to ``<cassandra.storagedir>/hints``; a file is named ``<host id>-<time>-
    <version>.hints``)."""
    files: list[Path] = []
    for node in nodes:
        directory = node.workdir / "data" / "hints"
        assert directory.is_dir(), f"{node.host} keeps no hints in {directory}"
        files.extend(directory.glob(f"{host_id}-*.hints"))
    return files


async def wait_for_hints(
    nodes: Sequence[CassandraServer], host_id: uuid.UUID, *, held: bool
) -> None:
    """Wait until ``nodes`` keep hints for ``host_id`` (``held``) or keep none."""
    # Files of other processes: no event to wait for.
    while bool(hint_files(nodes, host_id)) is not held:  # noqa: ASYNC110
        await anyio.sleep(0.2)


async def assert_holds_alone(
    ring: CassandraRing,
    node: CassandraServer,
    node_id: uuid.UUID,
    namespace: str,
    activity: Activity,
) -> None:
    """Every feed shows ``activity`` when read from ``node``'s own replica.

    Sending every request to the node (``connect_only``) is not enough: at ONE the node
    coordinates the read but takes the data from the first live replica in ring order
    (SimpleSnitch does not put the node itself first), so two reads in three would come
    from the other nodes' replicas. With the two others stopped, whatever answers comes
    from the node's own. Reads that time out or find no replica while the node has not
    yet seen the others go are tried again; a wrong answer fails at once.
    """
    cluster, session = await anyio.to_thread.run_sync(connect_only, node.host, ring.port)
    others = [other for other in ring.nodes if other is not node]
    try:
        (host,) = [h for h in cluster.metadata.all_hosts() if h.address == node.host]
        rows = await anyio.to_thread.run_sync(
            lambda: list(session.execute("SELECT host_id FROM system.local", host=host))
        )
        assert [row[0] for row in rows] == [node_id]  # the session's coordinator is the node
        for other in others:
            await anyio.to_thread.run_sync(other.stop)
        alone = CassandraStorage(
            session=session,
            keyspace=KEYSPACE,
            consistency="ONE",
            namespace=namespace,
            request_timeout=20.0,
        )
        lone = RingManager(storage=alone)
        with anyio.fail_after(ALONE):
            while True:
                try:
                    await assert_feeds_hold(lone, activity)
                    break
                except (StorageTimeoutError, StorageUnavailableError):
                    await anyio.sleep(1.0)  # a read sent to a stopped node
    finally:
        try:
            for other in others:  # the seed (127.0.0.1) first
                if not other.is_running():
                    await anyio.to_thread.run_sync(other.start_again)
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
