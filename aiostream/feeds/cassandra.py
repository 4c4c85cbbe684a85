"""Feeds bound to Cassandra: Stream Framework's ``CassandraFeed`` and friends.

They differ from the backend-free feeds only in ``storage_backend = "cassandra"``:
without a ``storage=`` argument they use the
:class:`~aiostream.storage.cassandra.CassandraStorage` of the current
:class:`~aiostream.storage.registry.Storages`, built from its settings (or those
given to :func:`aiostream.storage.registry.configure`) or, with none given, from the
environment (``STREAM_CASSANDRA_HOSTS``, ``STREAM_CASSANDRA_PORT``,
``STREAM_DEFAULT_KEYSPACE``, ``STREAM_CASSANDRA_CONSISTENCY_LEVEL``,
``CASSANDRA_DRIVER_KWARGS``) when ``STREAM_CASSANDRA_HOSTS`` is set; otherwise a
:class:`~aiostream.exceptions.ConfigurationError` says what to configure. Flat feeds show the
activity storage's payloads; aggregated and notification feeds keep their groups in one
partition per feed, changed by lightweight transactions.

Create the tables once with ``python -m aiostream.storage.cassandra create-schema``.
Importing this module imports the driver; ``import aiostream`` does not.

Example::

    class PinFeed(CassandraFeed):
        key_format = "feed:normal:%(user_id)s"

    await PinFeed(13).add(activity)           # with STREAM_CASSANDRA_HOSTS set
    ...
    await close_default_storages()            # at shutdown (aiostream.storage.registry)
"""

from __future__ import annotations

from typing import ClassVar

from aiostream.feeds.aggregated import AggregatedFeed, GroupT
from aiostream.feeds.base import BaseFeed, ItemT, UserBaseFeed
from aiostream.feeds.notification import NotificationFeed, NotificationT

__all__ = [
    "CassandraAggregatedFeed",
    "CassandraBinding",
    "CassandraFeed",
    "CassandraNotificationFeed",
    "CassandraUserBaseFeed",
]


class CassandraBinding:
    """Mixin binding a feed class to the Cassandra storage of the current registry."""

    storage_backend: ClassVar[str] = "cassandra"


# Each binding keeps its kind's type parameter (and so its default): a plain subclass of
# CassandraFeed reads Activity, of CassandraAggregatedFeed AggregatedActivity, and so on.


class CassandraFeed(CassandraBinding, BaseFeed[ItemT]):
    """A flat feed stored in Cassandra."""


class CassandraUserBaseFeed(UserBaseFeed[ItemT], CassandraFeed[ItemT]):
    """The feed of a user's own activities, in Cassandra (``max_length`` 10**6)."""


class CassandraAggregatedFeed(CassandraBinding, AggregatedFeed[GroupT]):
    """An aggregated feed stored in Cassandra."""


class CassandraNotificationFeed(CassandraBinding, NotificationFeed[NotificationT]):
    """A notification feed stored in Cassandra."""
