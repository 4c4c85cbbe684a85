"""Feeds: flat (:class:`BaseFeed`), aggregated and notification feeds."""

from aiostream.feeds.aggregated import AggregatedFeed
from aiostream.feeds.base import BaseFeed, UserBaseFeed
from aiostream.feeds.notification import NotificationData, NotificationFeed
from aiostream.ids import format_key

__all__ = [
    "AggregatedFeed",
    "BaseFeed",
    "NotificationData",
    "NotificationFeed",
    "UserBaseFeed",
    "format_key",
]
