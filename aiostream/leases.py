"""Leases: one holder at a time for a named piece of work, across processes and hosts.

A lease lives in a storage (the memory storage for one process, Redis or Cassandra for
many), so arq workers on different hosts exclude each other as tasks in one process do.
The Manager holds one per user while it follows or unfollows for that user: without it,
a follow and an unfollow of the same pair running at once could leave the user's flat
feed followed and their aggregated feed unfollowed, a state no order of the two
explains.

A lease expires ``ttl`` seconds after it was last renewed, so a holder that dies (a
killed worker) blocks the next one for at most that long; while the work runs, the
holder renews it every ``ttl / 3`` seconds. A holder paused for longer than ``ttl``
(a frozen process) loses it without noticing: ``ttl`` must exceed the longest pause
you want to ride out.

Example::

    async with lease(storage, "follow:42"):
        ...  # nobody else holds "follow:42" meanwhile
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

import anyio

from aiostream.exceptions import ConfigurationError, ConflictError

__all__ = ["LeaseStorage", "lease"]

logger = logging.getLogger(__name__)


@runtime_checkable
class LeaseStorage(Protocol):
    """Named leases with an owner and an expiry: the ``leases`` capability of a storage
    (:class:`~aiostream.storage.base.Capability`), which follows and unfollows through
    a Manager need.

    Defined here, not in :mod:`aiostream.storage.base` (which re-exports it), so this
    module needs nothing from the storage layer.
    """

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``owner``, expiring in ``ttl`` seconds, unless
        someone holds it (atomically). Returns whether it was taken."""
        ...

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Make ``owner``'s lease on ``name`` expire ``ttl`` seconds from now, if
        ``owner`` still holds it (atomically). Returns whether it did."""
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease ``name`` back, if ``owner`` still holds it (atomically)."""


@asynccontextmanager
async def lease(
    storage: LeaseStorage, name: str, *, ttl: float = 30.0, wait: float = 120.0
) -> AsyncIterator[None]:
    """Hold the lease ``name`` for the body of the ``async with``.

    Args:
        storage: Where the lease lives (every contender must use the same one).
        name: What is being held (e.g. ``"follow:<user>"``).
        ttl: Seconds the lease outlives its holder's last renewal.
        wait: Seconds to wait for another holder before giving up.

    Raises:
        ConflictError: another holder kept it for ``wait`` seconds (transient: a
            background job is retried).
    """
    if not ttl > 0 or not wait >= 0:
        raise ConfigurationError(f"lease ttl must be > 0 and wait >= 0, got {ttl!r}, {wait!r}")
    owner = uuid.uuid4().hex
    deadline = anyio.current_time() + wait
    delay = 0.002
    while not await storage.acquire_lease(name, owner, ttl):
        if anyio.current_time() >= deadline:
            raise ConflictError.given_up(
                logger, f"lease {name!r} was held by someone else for {wait} s"
            )
        # Jittered and growing: waiters spread out instead of polling in step.
        await anyio.sleep(random.uniform(delay / 2, delay))
        delay = min(delay * 2, 0.1)
    # A plain task, not a task group around the body: anyio's task group would wrap the
    # body's own exception in an ExceptionGroup.
    renewer = asyncio.create_task(_renew(storage, name, owner, ttl))
    try:
        yield
    finally:
        renewer.cancel()
        # Shielded (arq cancels a job that outlasts its timeout): the lease is given back
        # at once instead of making the next holder wait for it to expire.
        await asyncio.shield(_give_back(renewer, storage, name, owner, ttl))


async def _give_back(
    renewer: asyncio.Task[None], storage: LeaseStorage, name: str, owner: str, ttl: float
) -> None:
    await asyncio.gather(renewer, return_exceptions=True)
    try:
        await storage.release_lease(name, owner)
    except Exception:
        logger.warning("could not release lease %r; it expires within %s s", name, ttl)


async def _renew(storage: LeaseStorage, name: str, owner: str, ttl: float) -> None:
    while True:
        await anyio.sleep(ttl / 3)
        try:
            if not await storage.renew_lease(name, owner, ttl):
                logger.warning(
                    "lease %r expired while held (paused for longer than %s s?)", name, ttl
                )
                return
        except Exception:
            # A storage hiccup: the next renewal may succeed before the lease expires.
            logger.warning("could not renew lease %r", name, exc_info=True)
