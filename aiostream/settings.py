"""Explicit settings. Nothing is read at import time; build a :class:`Settings` and pass
it on, or call :meth:`Settings.from_env` where your application starts.

The defaults below are what :meth:`Settings.from_env` (and ``Settings()``) fill in when
you ask for them. The library never asks on its own behalf: where no settings are given
(a feed's implicit registry, ``aiostream.connect()``, ``worker_settings()``,
``RedisStorage()``), a server is built from the environment only when its variable is
set, and is otherwise a :class:`~aiostream.exceptions.ConfigurationError`, never a
server on 127.0.0.1 that nobody named.

Environment variables (all optional) keep the Stream Framework names:

=================================== ==============================================
``STREAM_REDIS_URL``                 default Redis server (``redis://127.0.0.1:6379/0``)
``STREAM_REDIS_SERVERS``             more named servers: ``name=url,name=url``
``STREAM_ARQ_REDIS_URL``             Redis of the arq job queues (default: ``STREAM_REDIS_URL``)
``STREAM_CASSANDRA_HOSTS``           comma-separated hosts (``localhost``)
``STREAM_CASSANDRA_PORT``            CQL port (``9042``)
``STREAM_DEFAULT_KEYSPACE``          keyspace (``stream_framework``)
``STREAM_CASSANDRA_CONSISTENCY_LEVEL`` consistency level name (``ONE``)
``CASSANDRA_DRIVER_KWARGS``          JSON object of extra ``Cluster(...)`` arguments
``STREAM_METRIC_CLASS``              dotted path of a metrics class
``STREAM_METRICS_OPTIONS``           JSON object of keyword arguments for it
=================================== ==============================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiostream.exceptions import ConfigurationError
from aiostream.metrics import Metrics, load_metrics

__all__ = ["Settings"]


def _json_object(name: str, raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not valid JSON: {raw!r}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name} must be a JSON object, got {raw!r}")
    return value


def _servers(raw: str | None) -> dict[str, str]:
    servers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (raw or "").split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigurationError(f"STREAM_REDIS_SERVERS entries are name=url, got {item!r}")
        servers[name.strip()] = url.strip()
    return servers


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Connection and behaviour settings for aiostream.

    Example::

        settings = Settings(redis_url="redis://cache:6379/0")
        settings = Settings.from_env()
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_servers: Mapping[str, str] = field(default_factory=dict)
    arq_redis_url: str | None = None
    cassandra_hosts: tuple[str, ...] = ("localhost",)
    cassandra_port: int = 9042
    cassandra_keyspace: str = "stream_framework"
    cassandra_consistency: str = "ONE"
    cassandra_driver_kwargs: Mapping[str, Any] = field(default_factory=dict)
    metrics_class: str | None = None
    metrics_options: Mapping[str, Any] = field(default_factory=dict)

    def metrics(self) -> Metrics:
        """The metrics sink named by :attr:`metrics_class` (no-op when unset)."""
        return load_metrics(self.metrics_class, self.metrics_options)

    def redis_server_url(self, name: str = "default") -> str:
        """URL of the named Redis server (``"default"`` is :attr:`redis_url`).

        Raises:
            ConfigurationError: the name is not configured.
        """
        if name in self.redis_servers:
            return self.redis_servers[name]
        if name == "default":
            return self.redis_url
        raise ConfigurationError(
            f"no Redis server named {name!r}; configured: {['default', *self.redis_servers]}"
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, require: Iterable[str] = ()
    ) -> Settings:
        """Settings from environment variables (defaults where unset).

        Args:
            environ: The variables (default: ``os.environ``).
            require: Variables that must be set (and not empty): the defaults of the
                servers they name are no configuration.

        Raises:
            ConfigurationError: a variable of ``require`` is unset, or one is malformed.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in require if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} not set: set it, or give the server explicitly "
                "(a url, Settings(...), a storage); aiostream never falls back to a "
                "server on 127.0.0.1 by itself"
            )
        defaults = cls()
        hosts = env.get("STREAM_CASSANDRA_HOSTS")
        port = env.get("STREAM_CASSANDRA_PORT")
        try:
            cassandra_port = int(port) if port else defaults.cassandra_port
        except ValueError:
            raise ConfigurationError(
                f"STREAM_CASSANDRA_PORT must be an int, got {port!r}"
            ) from None
        return cls(
            redis_url=env.get("STREAM_REDIS_URL", defaults.redis_url),
            redis_servers=_servers(env.get("STREAM_REDIS_SERVERS")),
            arq_redis_url=env.get("STREAM_ARQ_REDIS_URL") or None,
            cassandra_hosts=(
                tuple(h.strip() for h in hosts.split(",") if h.strip())
                if hosts
                else defaults.cassandra_hosts
            ),
            cassandra_port=cassandra_port,
            cassandra_keyspace=env.get("STREAM_DEFAULT_KEYSPACE", defaults.cassandra_keyspace),
            cassandra_consistency=env.get(
                "STREAM_CASSANDRA_CONSISTENCY_LEVEL", defaults.cassandra_consistency
            ),
            cassandra_driver_kwargs=_json_object(
                "CASSANDRA_DRIVER_KWARGS", env.get("CASSANDRA_DRIVER_KWARGS")
            ),
            metrics_class=env.get("STREAM_METRIC_CLASS") or None,
            metrics_options=_json_object(
                "STREAM_METRICS_OPTIONS", env.get("STREAM_METRICS_OPTIONS")
            ),
        )
