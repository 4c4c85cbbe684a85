"""Building redis-py clients from URLs, and translating redis-py errors.

A URL is a standalone server unless told otherwise: ``cluster=True`` or the query
parameter ``?cluster=true`` (handy in ``STREAM_REDIS_URL``) builds a
:class:`redis.asyncio.RedisCluster`. Nothing is guessed from the server: building a
client does no network I/O.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiostream.exceptions import (
    AiostreamError,
    ConfigurationError,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def split_cluster_flag(url: str) -> tuple[str, bool | None]:
    """Remove a ``cluster=...`` query parameter from ``url``.

    Returns:
        The URL without it, and its value (``None`` when absent).

    Raises:
        ConfigurationError: the value is not a boolean word.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if all(name != "cluster" for name, _ in query):
        # Untouched: urlunsplit drops an empty authority (``unix:///s.sock`` would come
        # back as ``unix:/s.sock``, which redis-py 8.2 refuses).
        return url, None
    flag: bool | None = None
    kept = []
    for name, value in query:
        if name != "cluster":
            kept.append((name, value))
            continue
        if value.lower() in _TRUE:
            flag = True
        elif value.lower() in _FALSE:
            flag = False
        else:
            raise ConfigurationError(
                f"cluster= in a Redis URL must be true or false, got {value!r}"
            )
    # Only the query changes; everything before it is kept byte for byte, the empty
    # authority of ``unix:///path`` included.
    head = url.split("#", 1)[0].split("?", 1)[0]
    query_text = urlencode(kept)
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return (f"{head}?{query_text}" if query_text else head) + fragment, flag


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class ClientOptions:
    """Connection settings applied to clients aiostream builds (not to injected ones).

    Args:
        max_connections: Connections per server (per node on a cluster). On a standalone
            server, callers beyond it wait up to ``pool_timeout`` for a free one.
        socket_timeout: Seconds to wait for a reply before :class:`StorageTimeoutError`.
        socket_connect_timeout: Seconds to wait for a connection.
        pool_timeout: Seconds to wait for a free connection (standalone).
        retries: Retries after a connection error or timeout (a short exponential
            backoff between them), standalone servers only: a cluster client follows
            redis-py's own cluster retry policy. Every write aiostream sends is
            idempotent, so a retried write never applies twice.
    """

    __slots__ = (
        "max_connections",
        "pool_timeout",
        "retries",
        "socket_connect_timeout",
        "socket_timeout",
    )

    def __init__(
        self,
        *,
        max_connections: int = 64,
        socket_timeout: float | None = 5.0,
        socket_connect_timeout: float | None = 2.0,
        pool_timeout: float | None = 10.0,
        retries: int = 2,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        if retries < 0:
            raise ConfigurationError(f"retries must be >= 0, got {retries!r}")
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self.pool_timeout = pool_timeout
        self.retries = retries


def create_client(
    url: str, *, cluster: bool | None, options: ClientOptions, **kwargs: Any
) -> tuple[Redis | RedisCluster, bool]:
    """Build a client for ``url`` (no I/O).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL (cluster: not ``unix://``).
        cluster: Force a cluster client (True) or a standalone one (False); ``None``
            reads ``?cluster=`` from the URL and defaults to standalone.
        options: Pool size and timeouts.
        **kwargs: Passed to redis-py (``ConnectionPool`` / ``RedisCluster``); they win
            over ``options``.

    Returns:
        The client, and whether it is a cluster client.

    Raises:
        ConfigurationError: a malformed URL or an unsupported combination.
    """
    url, flag = split_cluster_flag(url)
    is_cluster = flag if cluster is None else cluster
    is_cluster = bool(is_cluster)
    scheme = urlsplit(url).scheme
    if scheme not in {"redis", "rediss", "unix"}:
        raise ConfigurationError(f"unsupported Redis URL scheme {scheme!r} in {redact(url)!r}")
    if is_cluster and scheme == "unix":
        raise ConfigurationError("a Redis Cluster cannot be reached through a unix:// URL")
    settings: dict[str, Any] = {
        "max_connections": options.max_connections,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.socket_connect_timeout,
        # str replies are decoded by hiredis in C, cheaper than bytes.decode() in Python.
        "decode_responses": True,
    }
    if not is_cluster:
        # Stated explicitly because redis-py 5.x and 6+ differ in what they retry by
        # default; this is the same on every supported version.
        settings["retry"] = Retry(ExponentialBackoff(cap=0.25, base=0.01), options.retries)
        settings["retry_on_error"] = [RedisConnectionError, RedisTimeoutError]
    settings.update(kwargs)
    try:
        if is_cluster:
            return RedisCluster.from_url(url, **settings), True
        pool = BlockingConnectionPool.from_url(url, timeout=options.pool_timeout, **settings)
    except (ValueError, TypeError, RedisError) as exc:
        raise ConfigurationError(f"cannot build a Redis client for {redact(url)!r}: {exc}") from exc
    return Redis(connection_pool=pool), False


def describe_server(client: Any) -> str:
    """``host:port`` (or the socket path) of a client, for error messages."""
    if isinstance(client, RedisCluster):
        names = [str(name) for name in client.nodes_manager.startup_nodes]
        return "cluster " + ",".join(names) if names else "cluster"
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def translate_error(exc: BaseException, server: str, *, operation: str) -> StorageError | None:
    """aiostream's exception for a redis-py one (None: not a Redis error, let it through).

    Args:
        exc: What redis-py raised.
        server: The server (or cluster) the storage talks to, named in the message.
        operation: The storage operation that failed, named in the message.

    Returns:
        :class:`StorageTimeoutError` when the server did not answer in time,
        :class:`StorageUnavailableError` when it is down or refused the connection,
        :class:`StorageError` for any other Redis error; each names the server and the
        operation. The caller raises it ``from exc``.
    """
    if isinstance(exc, AiostreamError) or not isinstance(exc, Exception):
        return None
    where = f"Redis at {server}"
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return StorageTimeoutError(f"{where} did not answer in time ({operation}): {exc}")
    if isinstance(exc, AuthenticationError):
        return StorageError(f"{where} refused the credentials ({operation}): {exc}")
    if isinstance(exc, RedisConnectionError | ClusterDownError | OSError):
        return StorageUnavailableError(f"{where} is unavailable ({operation}): {exc}")
    if isinstance(exc, TryAgainError) or (
        isinstance(exc, ClusterError) and "TTL exhausted" in str(exc)
    ):
        # A slot in migration (its keys split between two nodes) or redirections that
        # did not settle: redis-py gave up retrying; a retry later succeeds.
        return StorageUnavailableError(f"{where} is moving slots ({operation}): {exc}")
    if isinstance(exc, RedisClusterException) and "connect" in str(exc).lower():
        # redis-py reports "no reachable node" with this generic class.
        return StorageUnavailableError(f"{where} is unavailable ({operation}): {exc}")
    if isinstance(exc, RedisError):
        return StorageError(f"{where} failed ({operation}): {exc}")
    if isinstance(exc, TypeError | AttributeError) and _inside_redis_connection(exc):
        # redis-py 8's cluster client can close a connection under a call in flight
        # while it refreshes the topology (a slot moved, a failover): retryable.
        return StorageUnavailableError(
            f"{where}: the connection closed under the call ({operation}; a topology "
            f"change?): {exc!r}"
        )
    return None


def _inside_redis_connection(exc: BaseException) -> bool:
    """Whether ``exc`` was raised under redis-py's connection layer."""
    tb = exc.__traceback__
    while tb is not None:
        if "redis/asyncio/connection" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False
