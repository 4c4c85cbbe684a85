"""Exceptions raised by aiostream.

Everything aiostream raises on purpose derives from :class:`AiostreamError`::

    AiostreamError
    ├── ConfigurationError            settings or class attributes that cannot work
    ├── ValidationError (ValueError)  bad input, raised before anything is written
    │   ├── SerializationError        a value that cannot be stored (names the field)
    │   ├── UnknownVerbError          a verb id that is not registered
    │   ├── ActivityConflictError     an add naming an id stored with other content
    │   ├── ArgumentTypeError         (TypeError) an argument of the wrong type
    │   └── InvalidQueryError         a bad slice, filter keyword or ordering
    ├── DuplicateActivityError        appending an activity a group already holds
    ├── ActivityNotFoundError         (LookupError) an activity that is not there
    ├── StorageError                  a backend failed; the driver error is ``__cause__``
    │   ├── StorageUnavailableError   server down or refusing connections (names it)
    │   ├── StorageTimeoutError       server did not answer in time (names it)
    │   ├── SchemaError               keyspace / table missing (says which command creates it)
    │   └── ConflictError             optimistic update retried too often under contention
    └── FanoutError                   several parts of a fanout failed (carries each error)

``ActivityNotFound`` and ``DuplicateActivityException`` are aliases kept because the
Stream Framework API names them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ActivityConflictError",
    "ActivityNotFound",
    "ActivityNotFoundError",
    "AiostreamError",
    "ArgumentTypeError",
    "ConfigurationError",
    "ConflictError",
    "DuplicateActivityError",
    "DuplicateActivityException",
    "FanoutError",
    "InvalidQueryError",
    "SchemaError",
    "SerializationError",
    "SerializationException",
    "StorageError",
    "StorageTimeoutError",
    "StorageUnavailableError",
    "UnknownVerbError",
    "ValidationError",
    "requires_extra",
]


class AiostreamError(Exception):
    """Root of every exception aiostream raises on purpose."""


class ConfigurationError(AiostreamError):
    """A setting, class attribute or environment variable cannot work."""


class ValidationError(AiostreamError, ValueError):
    """Bad input, detected before anything was written.

    Args:
        field: Name of the offending field or argument.
        message: What was wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class SerializationError(ValidationError):
    """A value cannot be stored: not JSON-compatible, or a payload cannot be read back."""


class UnknownVerbError(ValidationError):
    """A verb id that is not registered (register verbs before reading data)."""

    def __init__(self, verb_id: object) -> None:
        self.verb_id = verb_id
        super().__init__(
            "verb", f"no verb is registered with id {verb_id!r}; call aiostream.register(...) first"
        )


class ActivityConflictError(ValidationError):
    """An add names an id under which another activity is stored.

    Adds never change a stored activity (updates do): adding one that is stored with the
    same content changes nothing, and adding a different one under a stored id (same
    actor, verb, object, target and time, or the same foreign id and time, with other
    content or by another actor) is refused before anything is written.
    """


class ArgumentTypeError(ValidationError, TypeError):
    """An argument of the wrong type (a list expected, a bool, a callable), named in the
    message; a ``TypeError`` too, as Python's own errors for wrong types are."""


class InvalidQueryError(ValidationError):
    """A negative or non-integer slice, an unknown filter keyword or ordering."""


class DuplicateActivityError(AiostreamError):
    """The aggregated activity already contains this activity."""


class ActivityNotFoundError(AiostreamError, LookupError):
    """The activity is not in the feed, group or activity storage."""


class StorageError(AiostreamError):
    """A storage backend failed. The driver's exception is chained as ``__cause__``."""


class StorageUnavailableError(StorageError):
    """The server is down, unreachable or refusing connections."""


class StorageTimeoutError(StorageError, TimeoutError):
    """The server did not answer in time."""


class SchemaError(StorageError):
    """A keyspace or table is missing or has the wrong shape."""


class ConflictError(StorageError):
    """An optimistic read-modify-write lost the race too many times in a row.

    aiostream logs each one it raises at WARNING (on the raising module's logger)
    before raising it: a conflict given up is a sign of hot contention on one feed.
    """

    @classmethod
    def given_up(cls, logger: logging.Logger, message: str) -> ConflictError:
        """The error for a compare-and-set given up, logged at WARNING on ``logger``."""
        logger.warning("compare-and-set given up: %s", message)
        return cls(message)


class FanoutError(AiostreamError):
    """Several parts of a fanout failed: chunks of a dispatch, or the follower feeds or
    feed classes of one chunk or follow written concurrently.

    Args:
        failures: ``(part, exception)`` pairs for every part that failed (the part is
            a job for a dispatcher, a follower id or a feed otherwise).
    """

    def __init__(self, failures: Sequence[tuple[Any, BaseException]]) -> None:
        self.failures = list(failures)
        first = self.failures[0][1] if self.failures else None
        super().__init__(f"{len(self.failures)} fanout part(s) failed; first error: {first!r}")

    @property
    def errors(self) -> list[BaseException]:
        """The exceptions of :attr:`failures`, in order."""
        return [error for _, error in self.failures]


# Names from the Stream Framework API.
ActivityNotFound = ActivityNotFoundError
DuplicateActivityException = DuplicateActivityError
SerializationException = SerializationError


@contextmanager
def requires_extra(module: str, needs: str, extra: str) -> Iterator[None]:
    """Imports of an optional dependency, whose absence says which extra installs it.

    Example::

        with requires_extra("aiostream.metrics.statsd", "the 'statsd' package", "statsd"):
            import statsd

    Raises:
        ImportError: ``"<module> needs <needs>: pip install 'aiostream-feeds[<extra>]'"``,
            from the original one.
    """
    try:
        yield
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{module} needs {needs}: pip install 'aiostream-feeds[{extra}]'"
        ) from exc
