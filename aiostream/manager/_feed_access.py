"""Typed access to a Manager's feeds: what ``Manager.get_feed`` and
``Manager.get_user_feed`` need beside the Manager itself (the core stays short)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, get_origin

from aiostream.exceptions import ConfigurationError
from aiostream.feeds.base import BaseFeed
from aiostream.metrics import Metrics
from aiostream.storage.base import FeedStorage

FeedT = TypeVar("FeedT", bound="BaseFeed[Any]")
FeedT_co = TypeVar("FeedT_co", bound="BaseFeed[Any]", covariant=True)


class HasUserFeed(Protocol[FeedT_co]):
    """A Manager seen through its ``user_feed_class``: as the ``self`` type of
    ``get_user_feed`` it lets a type checker read the feed class a subclass assigns
    (``user_feed_class = UserPinFeed`` makes ``get_user_feed`` return a ``UserPinFeed``).
    A ClassVar cannot hold a type variable, hence a protocol."""

    @property
    def user_feed_class(self) -> type[FeedT_co]:
        """The feed class of the user's own activities."""
        ...

    @property
    def storage(self) -> FeedStorage | None:
        """The storage given to every feed the Manager builds (None: the class's own)."""
        ...

    @property
    def feed_metrics(self) -> Metrics | None:
        """The metrics sink given to those feeds (None: the class's own)."""
        ...


def registered_feed_class(
    manager: object,
    feed_classes: Mapping[str, type[BaseFeed[Any]]],
    name: str,
    feed_class: type[FeedT],
) -> type[FeedT]:
    """The class registered as ``name``, checked to be ``feed_class`` or a subclass.

    ``feed_class`` may be subscripted (``NotificationFeed[MyGroup]``): its class is
    checked (a type argument means nothing at run time).

    Raises:
        ConfigurationError: no feed class is named ``name``, or the one that is is not a
            subclass of ``feed_class`` (the message names both).
    """
    owner = type(manager).__name__
    try:
        registered = feed_classes[name]
    except KeyError:
        raise ConfigurationError(
            f"{owner}.feed_classes has no feed class named {name!r} (it has {sorted(feed_classes)})"
        ) from None
    wanted: type = get_origin(feed_class) or feed_class
    if not issubclass(registered, wanted):
        raise ConfigurationError(
            f"{owner}.feed_classes[{name!r}] is {registered.__qualname__}, "
            f"not a subclass of {wanted.__qualname__}"
        )
    return registered  # type: ignore[return-value]  # FeedT's type argument: unchecked
