"""Storage backends. Only the memory backend is imported here; Redis and Cassandra live in
``aiostream.storage.redis`` / ``aiostream.storage.cassandra`` behind their extras."""

from aiostream.storage.base import Entry, FeedStorage, GroupChange, GroupRecord
from aiostream.storage.memory import MemoryStorage, default_memory_storage

__all__ = [
    "Entry",
    "FeedStorage",
    "GroupChange",
    "GroupRecord",
    "MemoryStorage",
    "default_memory_storage",
]
