"""``python -m aiostream.storage.cassandra create-schema``: create keyspace and tables.

Defaults come from the environment (``STREAM_CASSANDRA_HOSTS``,
``STREAM_CASSANDRA_PORT``, ``STREAM_DEFAULT_KEYSPACE``, ``CASSANDRA_DRIVER_KWARGS``)::

    python -m aiostream.storage.cassandra create-schema --hosts 10.0.0.5 --keyspace feeds
    python -m aiostream.storage.cassandra create-schema --keyspace feeds \\
        --replication '{"class": "NetworkTopologyStrategy", "dc1": 3}' --column category=text
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from aiostream.exceptions import AiostreamError
from aiostream.settings import Settings
from aiostream.storage.cassandra._schema import create_schema
from aiostream.storage.cassandra._storage import CassandraStorage


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiostream.storage.cassandra",
        description="Manage aiostream's Cassandra schema.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-schema", help="create the keyspace and tables if missing (idempotent)"
    )
    create.add_argument(
        "--hosts", default=",".join(settings.cassandra_hosts), help="comma-separated contact points"
    )
    create.add_argument("--port", type=int, default=settings.cassandra_port)
    create.add_argument("--keyspace", default=settings.cassandra_keyspace)
    create.add_argument(
        "--replication-factor", type=int, default=1, help="SimpleStrategy replication factor"
    )
    create.add_argument(
        "--replication", help="replication options as a JSON object (overrides the factor)"
    )
    create.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="extra activity column for a custom activity model (repeatable)",
    )
    create.add_argument("--connect-timeout", type=float, default=10.0)
    return parser


def _columns(specs: Sequence[str]) -> dict[str, str]:
    columns: dict[str, str] = {}
    for spec in specs:
        name, sep, cql_type = spec.partition("=")
        if not sep:
            raise SystemExit(f"--column expects NAME=TYPE, got {spec!r}")
        columns[name.strip()] = cql_type.strip()
    return columns


async def _create(args: argparse.Namespace, settings: Settings) -> list[str]:
    replication: dict[str, Any] = (
        json.loads(args.replication)
        if args.replication
        else {"class": "SimpleStrategy", "replication_factor": args.replication_factor}
    )
    driver_kwargs = {"connect_timeout": args.connect_timeout, **settings.cassandra_driver_kwargs}
    async with CassandraStorage(
        hosts=[h.strip() for h in args.hosts.split(",") if h.strip()],
        port=args.port,
        keyspace=args.keyspace,
        driver_kwargs=driver_kwargs,
    ) as storage:
        return await create_schema(
            storage, replication=replication, extra_columns=_columns(args.column)
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    settings = Settings.from_env()
    args = _parser(settings).parse_args(argv)
    try:
        executed = anyio.run(_create, args, settings)
    except (AiostreamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for statement in executed:
        print(f"{statement};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
