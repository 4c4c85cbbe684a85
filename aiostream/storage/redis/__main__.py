"""``python -m aiostream.storage.redis migrate``: bring stored data to the current layout.

Timelines written before 13-byte members held 26 hex digits per entry; ``migrate``
rewrites them (see :meth:`~aiostream.storage.redis.RedisStorage.migrate_timelines`).
It is idempotent and safe beside live traffic; run it once after upgrading. The URL
defaults to ``STREAM_REDIS_URL`` (add ``?cluster=true`` for a Redis Cluster)::

    python -m aiostream.storage.redis migrate --url redis://cache:6379/0 --prefix myapp:
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from aiostream.exceptions import AiostreamError
from aiostream.settings import Settings
from aiostream.storage.redis._storage import RedisStorage


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiostream.storage.redis",
        description="Bring aiostream's Redis data to the current layout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate", help="rewrite timelines stored in an older layout (idempotent)"
    )
    migrate.add_argument("--url", default=settings.redis_url, help="the server's URL")
    migrate.add_argument("--prefix", default="", help="the storage's key prefix")
    return parser


async def _migrate(args: argparse.Namespace) -> tuple[int, int]:
    async with RedisStorage.from_url(args.url, prefix=args.prefix) as storage:
        return await storage.migrate_timelines()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser(Settings.from_env()).parse_args(argv)
    try:
        scanned, rewritten = anyio.run(_migrate, args)
    except AiostreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"timelines scanned: {scanned}, members rewritten: {rewritten}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
