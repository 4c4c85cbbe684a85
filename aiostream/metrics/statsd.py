"""StatsD sink: counters and timers over UDP with the ``statsd`` package.

Needs the ``statsd`` extra (``pip install "aiostream-feeds[statsd]"``); importing this
module imports ``statsd``, importing ``aiostream`` does not.

Names (see :mod:`aiostream.metrics` for the table): ``<Feed>.reads``,
``<Feed>.read_latency``, ``<Feed>.writes``, ``<Feed>.deletes``,
``<Feed>.fanout.<operation>``, ``<Feed>.fanout_latency``, ``activities.published``,
``activities.removed`` (the names of Stream Framework's StatsD sink), plus
``storage.<operation>``, ``jobs.<job>.retries.<kind>`` and ``errors.<where>.<kind>``.
Timers are in milliseconds. Each name gets the client's ``prefix``.

Example::

    # STREAM_METRIC_CLASS=aiostream.metrics.statsd.StatsdMetrics
    # STREAM_METRICS_OPTIONS={"host": "statsd.internal", "port": 8125, "prefix": "stream"}
    metrics = Settings.from_env().metrics()
    manager = PinManager(metrics=metrics)
    ...
    metrics.close()
"""

from __future__ import annotations

from typing import Any

from aiostream.exceptions import ConfigurationError, requires_extra
from aiostream.metrics import Metrics

with requires_extra("aiostream.metrics.statsd", "the 'statsd' package", "statsd"):
    import statsd

__all__ = ["StatsdMetrics"]

# ':', '|' and '@' delimit the StatsD line format and whitespace ends a line: none may
# reach a name from a feed class, a job or an error.
_UNSAFE = str.maketrans(dict.fromkeys(":|@ \t\r\n", "_"))


def _clean(segment: str) -> str:
    return segment.translate(_UNSAFE)


class StatsdMetrics(Metrics):
    """Sends every hook to a StatsD server as counters (``|c``) and timers (``|ms``).

    Each hook sends one UDP datagram, fire and forget (a hook with two values sends both
    in one datagram): a StatsD server that is down loses the data, the caller sees no
    error and no wait.

    Args:
        host: StatsD server (``localhost``, as in Stream Framework). Resolved once, here.
        port: Its UDP port (8125).
        prefix: Prepended to every name with a dot (none by default, as in Stream
            Framework's ``statsd`` sink; Stream Framework's documentation uses ``"stream"``).
        client: A ``statsd`` client to use instead (``StatsClient``, ``TCPStatsClient``,
            …); ``host``, ``port`` and ``prefix`` are then ignored and :meth:`close`
            leaves it open.

    Raises:
        ConfigurationError: ``host`` / ``port`` / ``prefix`` of the wrong type, or a host
            that does not resolve.

    Example::

        metrics = StatsdMetrics(host="statsd.internal", prefix="stream")
        feed = PinFeed(13, metrics=metrics)
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8125,
        prefix: str | None = None,
        *,
        client: Any = None,
    ) -> None:
        self._owns_client = client is None
        if client is None:
            if not isinstance(host, str) or not host:
                raise ConfigurationError(
                    f"StatsdMetrics host: expected a non-empty str, got {type(host).__name__}"
                )
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigurationError(f"StatsdMetrics port: expected an int port, got {port!r}")
            if prefix is not None and not isinstance(prefix, str):
                raise ConfigurationError(
                    f"StatsdMetrics prefix: expected a str or None, got {type(prefix).__name__}"
                )
            try:
                client = statsd.StatsClient(host, port, prefix=prefix or None)
            except OSError as exc:
                raise ConfigurationError(
                    f"StatsdMetrics host {host!r} port {port} cannot be resolved: {exc}"
                ) from exc
        self.client: Any = client

    def close(self) -> None:
        """Close the socket of the client this sink created (a passed-in one stays open)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> StatsdMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StatsdMetrics {self.client!r}>"

    # -- hooks ---------------------------------------------------------------------------

    def on_feed_read(self, feed: str, count: int, seconds: float) -> None:
        """``<Feed>.reads`` += count; ``<Feed>.read_latency`` timer."""
        name = _clean(feed)
        with self.client.pipeline() as pipe:
            pipe.incr(f"{name}.reads", count)
            pipe.timing(f"{name}.read_latency", seconds * 1000.0)

    def on_feed_write(self, feed: str, count: int) -> None:
        """``<Feed>.writes`` += count."""
        self.client.incr(f"{_clean(feed)}.writes", count)

    def on_feed_remove(self, feed: str, count: int) -> None:
        """``<Feed>.deletes`` += count."""
        self.client.incr(f"{_clean(feed)}.deletes", count)

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        """``<Feed>.fanout.<operation>`` += feeds; ``<Feed>.fanout_latency`` timer."""
        name = _clean(feed)
        with self.client.pipeline() as pipe:
            pipe.incr(f"{name}.fanout.{_clean(operation)}", feeds)
            pipe.timing(f"{name}.fanout_latency", seconds * 1000.0)

    def on_activity_published(self) -> None:
        """``activities.published`` += 1."""
        self.client.incr("activities.published")

    def on_activity_removed(self) -> None:
        """``activities.removed`` += 1."""
        self.client.incr("activities.removed")

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        """``storage.<operation>`` timer."""
        self.client.timing(f"storage.{_clean(operation)}", seconds * 1000.0)

    def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
        """``jobs.<job>.retries.<kind>`` += 1."""
        self.client.incr(f"jobs.{_clean(job)}.retries.{_clean(type(error).__name__)}")

    def on_error(self, where: str, error: BaseException) -> None:
        """``errors.<where>.<kind>`` += 1."""
        self.client.incr(f"errors.{_clean(where)}.{_clean(type(error).__name__)}")
