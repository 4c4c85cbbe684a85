"""The Cassandra backend: one private node per test session, one namespace per test.

``start`` launches Cassandra 5.0 from the cached Maven jars (see ``tests/servers``),
creates a keyspace for the session with ``create_schema``, and connects one driver
session that every test's storage shares (connecting costs a metadata refresh; prepared
statements are cached per session). Tests are isolated by ``namespace``, the first part
of every partition key, which costs nothing, unlike a keyspace per test.

Set ``AIOSTREAM_TEST_CASSANDRA=host:port`` to use a node you started yourself; the
suite then makes (and finally drops) its own keyspace there and touches nothing else.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from tests.backends import Backend


@dataclass
class CassandraHandle:
    """What the session-wide node gives the tests."""

    host: str
    port: int
    keyspace: str
    cluster: Any
    session: Any
    server: Any = None  # tests.servers.CassandraServer when we started it

    def storage(self, namespace: str = "", **options: Any) -> Any:
        """A storage on the shared session (left open when the storage closes)."""
        from aiostream.storage.cassandra import CassandraStorage

        options.setdefault("session", self.session)
        return CassandraStorage(
            hosts=[self.host],
            port=self.port,
            keyspace=self.keyspace,
            namespace=namespace,
            **options,
        )


async def _create_schema(host: str, port: int, keyspace: str) -> None:
    from aiostream.storage.cassandra import CassandraStorage, create_schema

    async with CassandraStorage(hosts=[host], port=port, keyspace=keyspace) as storage:
        await create_schema(storage)


def _connect(host: str, port: int) -> tuple[Any, Any]:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    cluster = Cluster(
        [host],
        port=port,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
        },
    )
    return cluster, cluster.connect()


def start(workdir: Path) -> CassandraHandle:
    """Start (or attach to) the node, create the session's keyspace, connect."""
    keyspace = f"aiostream_test_{uuid.uuid4().hex[:8]}"
    server = None
    if external := os.environ.get("AIOSTREAM_TEST_CASSANDRA"):
        host, _, port_text = external.rpartition(":")
        port = int(port_text)
    else:
        from tests.servers import start_cassandra

        server = start_cassandra(workdir)
        host, port = server.host, server.port
    try:
        anyio.run(_create_schema, host, port, keyspace)
        cluster, session = _connect(host, port)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return CassandraHandle(host, port, keyspace, cluster, session, server)


def stop(handle: CassandraHandle) -> None:
    """Drop our keyspace from a node we did not start; stop the node we did."""
    try:
        if handle.server is None:
            handle.session.execute(f'DROP KEYSPACE IF EXISTS "{handle.keyspace}"')
    finally:
        handle.cluster.shutdown()
        if handle.server is not None:
            handle.server.stop()


@asynccontextmanager
async def _open(handle: CassandraHandle, prefix: str) -> AsyncIterator[Any]:
    async with handle.storage(prefix) as storage:
        yield storage


BACKENDS = {"cassandra": Backend(name="cassandra", open_storage=_open, start=start, stop=stop)}
