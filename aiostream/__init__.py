"""aiostream: asyncio-native activity feeds (flat, aggregated, notification) with fanout.

The top level re-exports the backend-free API; backends are imported from
``aiostream.storage.redis`` / ``aiostream.storage.cassandra`` (behind their extras).
"""

from aiostream.activity import (
    Activity,
    AggregatedActivity,
    DehydratedActivity,
    NotificationActivity,
)
from aiostream.aggregators import (
    BaseAggregator,
    NotificationAggregator,
    RecentRankMixin,
    RecentVerbAggregator,
)
from aiostream.exceptions import (
    ActivityNotFound,
    ActivityNotFoundError,
    AiostreamError,
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

__version__ = "0.1.0"

__all__ = [
    "Activity",
    "ActivityNotFound",
    "ActivityNotFoundError",
    "Add",
    "AggregatedActivity",
    "AggregatedFeed",
    "AiostreamError",
    "BaseAggregator",
    "BaseFeed",
    "Comment",
    "ConfigurationError",
    "ConflictError",
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
    "get_verb_by_id",
    "register",
]
