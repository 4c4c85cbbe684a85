"""aiostream: asyncio-native activity feeds (flat, aggregated, notification) with fanout.

The top level re-exports the backend-free API; backends are imported from
``aiostream.storage.redis`` / ``aiostream.storage.cassandra`` (behind their extras).
"""

# First: refuses to run beside the unrelated PyPI package "aiostream" (see the module).
from aiostream import _name_clash  # noqa: F401
from aiostream._version import __version__
from aiostream.activity import (
    Activity,
    ActivityDict,
    AggregatedActivity,
    AggregatedActivityDict,
    DehydratedActivity,
    NotificationActivity,
    NotificationActivityDict,
)
from aiostream.aggregators import (
    BaseAggregator,
    NotificationAggregator,
    RecentRankMixin,
    RecentVerbAggregator,
)
from aiostream.connection import Connection, connect
from aiostream.exceptions import (
    ActivityConflictError,
    ActivityNotFound,
    ActivityNotFoundError,
    AiostreamError,
    ArgumentTypeError,
    ConfigurationError,
    ConflictError,
    DuplicateActivityError,
    FanoutError,
    InvalidQueryError,
    SchemaError,
    SerializationError,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
    UnknownVerbError,
    ValidationError,
)
from aiostream.fanout import FanoutChunk, InProcessDispatcher
from aiostream.feeds import (
    AggregatedFeed,
    BaseFeed,
    NotificationData,
    NotificationFeed,
    UserBaseFeed,
)
from aiostream.manager import FanoutPriority, Manager
from aiostream.metrics import Metrics, NoopMetrics
from aiostream.settings import Settings
from aiostream.storage import FeedStorage, MemoryStorage
from aiostream.verbs import Add, Comment, Follow, Love, Verb, get_verb_by_id, register

__all__ = [
    "Activity",
    "ActivityConflictError",
    "ActivityDict",
    "ActivityNotFound",
    "ActivityNotFoundError",
    "Add",
    "AggregatedActivity",
    "AggregatedActivityDict",
    "AggregatedFeed",
    "AiostreamError",
    "ArgumentTypeError",
    "BaseAggregator",
    "BaseFeed",
    "Comment",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "DehydratedActivity",
    "DuplicateActivityError",
    "FanoutChunk",
    "FanoutError",
    "FanoutPriority",
    "FeedStorage",
    "Follow",
    "InProcessDispatcher",
    "InvalidQueryError",
    "Love",
    "Manager",
    "MemoryStorage",
    "Metrics",
    "NoopMetrics",
    "NotificationActivity",
    "NotificationActivityDict",
    "NotificationAggregator",
    "NotificationData",
    "NotificationFeed",
    "RecentRankMixin",
    "RecentVerbAggregator",
    "SchemaError",
    "SerializationError",
    "Settings",
    "StorageError",
    "StorageTimeoutError",
    "StorageUnavailableError",
    "UnknownVerbError",
    "UserBaseFeed",
    "ValidationError",
    "Verb",
    "__version__",
    "connect",
    "get_verb_by_id",
    "register",
]
