"""Fixtures of the Cassandra-only tests: the session's node, fresh keyspaces, storages.

Without scylla-driver installed these tests are not collected, except under ``CI=true``
where that is an error (no silent skips in CI).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.backends.cassandra import BACKENDS, CassandraHandle
from tests.conftest import IN_CI, Servers

if importlib.util.find_spec("cassandra") is None:
    if IN_CI:
        raise ImportError(
            "scylla-driver is not installed: pip install 'aiostream-feeds[cassandra]'"
        )
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def cassandra(servers: Servers) -> CassandraHandle:
    """The session's Cassandra node (started on first use)."""
    handle: CassandraHandle = servers.get(BACKENDS["cassandra"])
    return handle


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def cstorage(cassandra: CassandraHandle, namespace: str) -> AsyncIterator[Any]:
    """A CassandraStorage on the session keyspace, isolated by namespace."""
    async with cassandra.storage(namespace) as storage:
        yield storage


@pytest.fixture
def scratch_keyspace(cassandra: CassandraHandle) -> Iterator[str]:
    """A keyspace name no one uses yet; dropped at the end of the test."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    yield name
    cassandra.session.execute(f'DROP KEYSPACE IF EXISTS "{name}"')
