"""Fanout work as plain data, and the dispatchers that carry it out.

The Manager cuts a fanout into :class:`FanoutChunk` objects: an operation, a feed by
its name in ``Manager.feed_classes``, a chunk of follower ids and the serialized
activities. Nothing in a chunk is a Python object that needs pickle, so the same chunk
can run in-process (:class:`InProcessDispatcher`, the default) or travel as a job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import anyio

from aiostream.exceptions import FanoutError

__all__ = ["Dispatcher", "FanoutChunk", "InProcessDispatcher"]

Operation = Literal["add", "remove"]


@dataclass(frozen=True, slots=True)
class FanoutChunk:
    """One unit of fanout work: apply ``operation`` of ``activities`` to the ``feed``
    of every user in ``user_ids``.

    Attributes:
        operation: ``"add"`` or ``"remove"``.
        feed: Name of the feed class in the manager's ``feed_classes``.
        user_ids: Follower ids of this chunk.
        activities: Serialized activities (the feed class's activity format).
        priority: The follower group's priority (``"HIGH"``, ``"LOW"``, …) or None.
        trim: Whether writes may trim the feeds.
    """

    operation: Operation
    feed: str
    user_ids: tuple[int | str, ...]
    activities: tuple[str, ...]
    priority: str | None = None
    trim: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        data = asdict(self)
        data["user_ids"] = list(self.user_ids)
        data["activities"] = list(self.activities)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FanoutChunk:
        """Inverse of :meth:`to_dict`."""
        return cls(
            operation=data["operation"],
            feed=data["feed"],
            user_ids=tuple(data["user_ids"]),
            activities=tuple(data["activities"]),
            priority=data.get("priority"),
            trim=bool(data.get("trim", True)),
        )

    @property
    def job_id(self) -> str:
        """Deterministic id: the same work always gets the same id (idempotent enqueue)."""
        digest = hashlib.blake2b(
            json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode(),
            digest_size=16,
        ).hexdigest()
        return f"aiostream:{self.operation}:{self.feed}:{digest}"


ChunkRunner = Callable[[FanoutChunk], Awaitable[None]]


class Dispatcher(Protocol):
    """Carries out fanout chunks (now, in this process, or later, in workers)."""

    async def dispatch(self, chunks: Sequence[FanoutChunk], run: ChunkRunner) -> None:
        """Make sure every chunk gets ``run``; raise if any could not be handed over."""


class InProcessDispatcher:
    """Runs chunks concurrently in this process, at most ``max_concurrency`` at a time.

    Every chunk runs even when some fail; the failures are then raised together as a
    :class:`~aiostream.exceptions.FanoutError` (each failed chunk is in it, so nothing
    is reported written that was not).
    """

    def __init__(self, max_concurrency: int = 8) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency

    async def dispatch(self, chunks: Sequence[FanoutChunk], run: ChunkRunner) -> None:
        """Run every chunk; raise :class:`FanoutError` listing those that failed."""
        failures: list[tuple[FanoutChunk, BaseException]] = []
        limiter = anyio.CapacityLimiter(self.max_concurrency)

        async def one(chunk: FanoutChunk) -> None:
            async with limiter:
                try:
                    await run(chunk)
                except Exception as exc:
                    failures.append((chunk, exc))

        async with anyio.create_task_group() as tg:
            for chunk in chunks:
                tg.start_soon(one, chunk)
        if failures:
            raise FanoutError(failures)
