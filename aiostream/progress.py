"""Progress of long bulk work: a dependency-free terminal bar, or your own callback.

The bar draws on a terminal and stays silent otherwise (pipes, CI logs), so scripts and
workers can always use it. Calls that take ``progress=`` (``Manager.batch_import``)
accept a callable ``(done, total)`` instead, to drive tqdm, rich or a log line::

    bar = tqdm.tqdm(total=len(activities))
    await manager.batch_import(1, activities, progress=lambda done, total: bar.update(done - bar.n))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from aiostream.exceptions import ArgumentTypeError

__all__ = ["Progress", "ProgressCallback", "ProgressOption"]

ProgressCallback = Callable[[int, int], object]
"""Called with ``(done, total)`` after each step of work."""

ProgressOption = bool | ProgressCallback | None
"""What a ``progress=`` argument takes: ``None`` (the bar, on a terminal only), ``True``
(the bar on stderr), ``False`` (nothing) or a :data:`ProgressCallback`."""


class Progress:
    """Counts work done out of ``total`` and redraws one line at most ~10 times a second.

    Example::

        with Progress(len(users), "fanout") as bar:
            for user in users:
                ...
                bar.advance()
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        callback: ProgressCallback | None = None,
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.callback = callback
        # A callback replaces the bar.
        self.enabled = callback is None and (self.stream.isatty() if enabled is None else enabled)
        self._started = time.monotonic()
        self._drawn_at = 0.0

    @classmethod
    def of(cls, progress: ProgressOption, total: int, label: str) -> Progress:
        """The progress a ``progress=`` argument asks for (see :data:`ProgressOption`).

        Raises:
            ArgumentTypeError: naming ``progress``: none of those (a ``TypeError`` too).
        """
        if progress is None or isinstance(progress, bool):
            return cls(total, label, enabled=progress)
        if callable(progress):
            return cls(total, label, callback=progress)
        raise ArgumentTypeError(
            "progress",
            f"progress must be a bool, None or a callable (done, total), got {progress!r}",
        )

    def advance(self, amount: int = 1) -> None:
        """Record ``amount`` more units of work done."""
        self.done += amount
        if self.callback is not None:
            self.callback(self.done, self.total)
            return
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at >= 0.1 or self.done >= self.total):
            self._drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        fraction = self.done / self.total if self.total else 1.0
        filled = int(width * min(fraction, 1.0))
        rate = self.done / max(now - self._started, 1e-9)
        self.stream.write(
            f"\r{self.label:<12} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} ({rate:,.0f}/s)"
        )
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
