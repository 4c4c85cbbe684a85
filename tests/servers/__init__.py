"""Private database servers on free loopback ports, for tests and benchmarks.

Stdlib only. Usage::

    from tests.servers import start_redis

    server = start_redis(tmp_path)
    try:
        ...  # connect to server.url
    finally:
        server.stop()

``python -m tests.servers {redis|cluster|cassandra}`` runs one in the foreground.
"""

from __future__ import annotations

from .cassandra import (
    CassandraRing,
    CassandraServer,
    resolve_cassandra,
    start_cassandra,
    start_cassandra_ring,
)
from .common import ManagedProcess, ServerStartError, free_port, wait_for_port
from .redis import (
    RedisCluster,
    RedisServer,
    ensure_redis_binaries,
    start_redis,
    start_redis_cluster,
)

__all__ = [
    "CassandraRing",
    "CassandraServer",
    "ManagedProcess",
    "RedisCluster",
    "RedisServer",
    "ServerStartError",
    "ensure_redis_binaries",
    "free_port",
    "resolve_cassandra",
    "start_cassandra",
    "start_cassandra_ring",
    "start_redis",
    "start_redis_cluster",
    "wait_for_port",
]
