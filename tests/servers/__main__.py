"""Run one private server in the foreground: ``python -m tests.servers {redis|cluster|cassandra}``.

Prints one JSON line (host, port, pid, ...) on stdout once the server is ready,
then waits for SIGINT or SIGTERM and stops it. Exits 1 if the server dies.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .cassandra import start_cassandra
from .common import ServerStartError
from .redis import start_redis, start_redis_cluster


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__)
    parser.add_argument("kind", choices=["redis", "cluster", "cassandra"])
    parser.add_argument(
        "--workdir", type=Path, help="data and logs (default: a temp dir, removed at exit)"
    )
    parser.add_argument("--masters", type=int, default=3, help="cluster: number of master nodes")
    parser.add_argument(
        "--version", help="cassandra: cassandra-all version (default: pinned 5.0.x)"
    )
    parser.add_argument("--heap", default="1G", help="cassandra: -Xms/-Xmx")
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="cassandra: startup timeout, seconds"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop_requested.is_set() and "info" not in started:
            # Still starting: abort; the start_* functions stop what they launched.
            raise KeyboardInterrupt
        stop_requested.set()

    started: dict[str, Any] = {}
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    temp = args.workdir is None
    workdir: Path = (
        Path(tempfile.mkdtemp(prefix=f"aiostream-{args.kind}-")) if temp else args.workdir
    )
    workdir.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any]
    stop: Callable[[], None]
    alive: Callable[[], bool]
    try:
        if args.kind == "redis":
            r = start_redis(workdir)
            info, stop, alive = (
                {"host": r.host, "port": r.port, "pid": r.pid, "url": r.url},
                r.stop,
                r.is_running,
            )
        elif args.kind == "cluster":
            c = start_redis_cluster(workdir, args.masters)
            info = {
                "host": c.nodes[0][0],
                "port": c.nodes[0][1],
                "pid": c.pids[0],
                "url": c.url,
                "nodes": [list(n) for n in c.nodes],
                "pids": c.pids,
            }
            stop, alive = c.stop, c.is_running
        else:
            s = start_cassandra(workdir, args.version, args.heap, timeout=args.timeout)
            info = {
                "host": s.host,
                "port": s.port,
                "pid": s.pid,
                "version": s.version,
                "startup_seconds": s.startup_seconds,
            }
            stop, alive = s.stop, s.is_running
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted while starting", file=sys.stderr)
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)
        return 130
    info["workdir"] = str(workdir)
    started["info"] = info
    print(json.dumps(info), flush=True)
    code = 0
    try:
        while not stop_requested.wait(0.5):
            if not alive():
                print(
                    f"error: {args.kind} exited unexpectedly; see logs in {workdir}",
                    file=sys.stderr,
                )
                code = 1
                break
    finally:
        stop()
        if temp and code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
