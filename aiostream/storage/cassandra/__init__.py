"""Cassandra (and ScyllaDB) storage for aiostream, on scylla-driver, from asyncio.

Install with ``pip install "aiostream-feeds[cassandra]"``. ``import aiostream`` never
imports this package (nor the driver)::

    from aiostream.storage.cassandra import CassandraStorage, create_schema

    async with CassandraStorage(hosts=["10.0.0.5"], keyspace="feeds") as storage:
        await create_schema(storage)  # or: python -m aiostream.storage.cassandra create-schema
        feed = PinFeed(13, storage=storage)
        await feed.add(activity)

Feed classes that find their storage in the current registry (``CassandraFeed``,
``CassandraAggregatedFeed``, ...) are in :mod:`aiostream.feeds.cassandra`; with no
settings given to the registry, it builds the cluster from the environment only when
``STREAM_CASSANDRA_HOSTS`` is set (``configure`` and ``close_default_storages`` are in
:mod:`aiostream.storage.registry`).

How it behaves, and why:

* **Schema** (:mod:`~aiostream.storage.cassandra._schema`): one partition per feed,
  clustered by id descending. Flat feeds keep the serialized activity in the row
  (Stream Framework's denormalized design); a page is two queries, the timeline rows
  and then the stored activities of their ids, so a page shows each activity's stored
  version and passes over (and removes) entries of deleted ones. Nothing is created
  implicitly; a missing keyspace, table or column raises
  :class:`~aiostream.exceptions.SchemaError` with the command that creates it.
* **Never blocking the loop**: requests go through ``execute_async`` and come back with
  ``call_soon_threadsafe``; connecting, preparing and shutting down run in worker
  threads. Fanout keeps at most ``max_concurrency`` (128) requests in flight, pipelined
  on the driver's I/O thread (:mod:`~aiostream.storage.cassandra._pipeline`): the loop
  hears back once per call, not once per feed.
* **Exact trims**: the newest ``max_length`` stay, whatever the write order (one
  range tombstone per trim).
* **Aggregated and notification feeds** change through lightweight transactions on
  the feed's partition, conditioned on a per-feed version: concurrent writers in any
  number of processes never lose an update, and marker counts cannot drift. Marking
  seen / read is a lightweight transaction too, so it is ordered with group writes.
* **Tombstones**: each group update replaces a row and each trim writes a range
  tombstone; they are purged after the table's ``gc_grace_seconds`` (10 days by
  default). Tune it to your repair schedule if feeds are updated very often.
* **Errors**: no host reachable is :class:`~aiostream.exceptions.StorageUnavailableError`
  naming the hosts, a client or server timeout :class:`~aiostream.exceptions.StorageTimeoutError`,
  anything else :class:`~aiostream.exceptions.StorageError`; the driver's exception is
  the ``__cause__``.
* **Driver defaults changed**: rows as tuples (our own execution profile, also on an
  injected session) and compression off unless ``driver_kwargs`` turn it on (the driver
  compresses on the calling thread, which is the event loop).
* **Custom activity models**: ``extra_columns={"category": "text"}`` plus a
  ``column_values`` hook (see :func:`activity_columns`) fill extra columns for your own
  CQL; the payload stays the source of truth.
"""

from aiostream.exceptions import ConfigurationError
from aiostream.settings import Settings
from aiostream.storage.cassandra._client import ColumnValues
from aiostream.storage.cassandra._columns import activity_columns
from aiostream.storage.cassandra._schema import create_schema, create_schema_command
from aiostream.storage.cassandra._storage import CassandraStorage

__all__ = [
    "CassandraStorage",
    "ColumnValues",
    "activity_columns",
    "create_schema",
    "create_schema_command",
    "storage_from_settings",
]


def storage_from_settings(settings: Settings, server: str = "default") -> CassandraStorage:
    """The Cassandra backend of :class:`~aiostream.storage.registry.Storages`: a storage
    (unconnected until its first query) on the cluster the settings name.

    Raises:
        ConfigurationError: a server other than ``"default"`` (settings name one
            cluster), or settings that cannot work.
    """
    if server != "default":
        raise ConfigurationError(
            f"Cassandra settings name one cluster: storage_server must be 'default', got {server!r}"
        )
    return CassandraStorage.from_settings(settings)


# A registry with no settings builds the cluster from the environment only when this is
# set: ``localhost`` by default is a guess, not a configuration.
storage_from_settings.environment_variable = "STREAM_CASSANDRA_HOSTS"  # type: ignore[attr-defined]
