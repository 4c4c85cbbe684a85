"""Private ``redis-server`` instances (standalone and cluster) for tests.

The binaries come from Debian's ``redis-server`` package (which pulls in
``redis-tools`` for ``redis-cli``); they are installed on demand when we are
root. Servers bind 127.0.0.1 only, on free ports, with persistence off unless
asked for (``start_redis(..., persistent=True)``: an AOF fsynced on every write,
so a server killed and restarted on its port keeps every acknowledged write).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .apt import apt_install, can_install, process_titles
from .common import (
    LOOPBACK,
    ManagedProcess,
    ServerStartError,
    free_port,
    free_port_with_offset,
    log_tail,
)

CLUSTER_BUS_OFFSET = 10000
SYSTEM_PORT = 6379


def ensure_redis_binaries() -> tuple[str, str]:
    """Return the paths of ``redis-server`` and ``redis-cli``, installing them if needed.

    When missing and running as root: ``apt-get install redis-server`` (Debian's
    ``redis-server`` package; it depends on ``redis-tools``, which has
    ``redis-cli``). Its postinst would start a system redis on port 6379:
    :func:`apt.apt_install` forbids that, and a redis on 6379 that still
    appeared during the install is stopped by its PID.
    """
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server and cli:
        return server, cli
    if not can_install():
        raise ServerStartError(
            "redis-server / redis-cli not found on PATH and cannot install them "
            "(needs root and apt-get); install Debian's 'redis-server' package"
        )
    before = process_titles("redis-server")
    try:
        apt_install(["redis-server"])
    finally:
        for pid, title in process_titles("redis-server").items():
            if pid not in before and f":{SYSTEM_PORT}" in title:  # title: redis-server HOST:PORT
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not (server and cli):
        raise ServerStartError("apt-get installed redis-server but it is still not on PATH")
    return server, cli


def redis_call(host: str, port: int, *args: str, timeout: float = 2.0) -> str:
    """Send one command over RESP and return a simple/bulk/integer reply as text.

    Just enough protocol for readiness checks (PING, CLUSTER INFO); error
    replies raise RuntimeError.
    """
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        reader = sock.makefile("rb")
        line = reader.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode()
        if kind == b"-":
            raise RuntimeError(rest)
        if kind == b"$":
            size = int(rest)
            return "" if size < 0 else reader.read(size + 2)[:-2].decode()
        return rest


def _wait_ping(host: str, port: int, proc: ManagedProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc.check_alive()
        try:
            if redis_call(host, port, "PING", timeout=0.5) == "PONG":
                return
        except (OSError, RuntimeError):
            pass  # not listening yet, or still LOADING
        if time.monotonic() > deadline:
            proc.stop()
            raise ServerStartError(
                f"redis on port {port} did not answer PING in {timeout:.0f}s", proc.log_path
            )
        time.sleep(0.05)


def _spawn(
    server: str, workdir: Path, port: int, extra: list[str], *, persistent: bool = False
) -> ManagedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    aof = ["yes", "--appendfsync", "always"] if persistent else ["no"]
    argv = [
        server,
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--appendonly",
        *aof,
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--logfile",
        "",
        *extra,
    ]
    return ManagedProcess(
        argv, workdir / f"redis-{port}.log", cwd=workdir, name=f"redis-server:{port}"
    )


@dataclass
class RedisServer:
    """A standalone redis-server; ``stop()`` ends it by PID (idempotent).

    ``kill()`` (SIGKILL) and ``restart()`` (on the same port and data directory) are
    for fault tests; ``pid`` is the current process's.
    """

    host: str
    port: int
    url: str
    pid: int
    log_path: Path
    _proc: ManagedProcess = field(repr=False, compare=False)
    _workdir: Path | None = field(default=None, repr=False, compare=False)
    _persistent: bool = field(default=False, repr=False, compare=False)

    def stop(self) -> None:
        self._proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        with contextlib.suppress(ProcessLookupError):
            self._proc.popen.kill()
        self._proc.popen.wait(timeout=30)
        self._proc.stop()  # reaped already: only forgets it

    def restart(self, timeout: float = 30.0) -> None:
        """Stop the server if it still runs, then start it again on the same port with
        the same data directory (a persistent server reloads its AOF), and wait for PING."""
        if self._workdir is None:
            raise RuntimeError("restart() needs a server started by start_redis()")
        self._proc.stop()
        server, _ = ensure_redis_binaries()
        self._proc = _spawn(server, self._workdir, self.port, [], persistent=self._persistent)
        self.pid = self._proc.pid
        _wait_ping(self.host, self.port, self._proc, timeout)

    def is_running(self) -> bool:
        return self._proc.is_running()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(
    workdir: Path, *, port: int | None = None, timeout: float = 30.0, persistent: bool = False
) -> RedisServer:
    """Start a standalone redis-server on a free loopback port and wait for PING.

    ``persistent``: append-only file on, fsynced on every write (for restart tests).
    """
    server, _ = ensure_redis_binaries()
    port = port or free_port()
    proc = _spawn(server, workdir, port, [], persistent=persistent)
    _wait_ping(LOOPBACK, port, proc, timeout)
    return RedisServer(
        LOOPBACK,
        port,
        f"redis://{LOOPBACK}:{port}/0",
        proc.pid,
        proc.log_path,
        proc,
        workdir,
        persistent,
    )


@dataclass
class RedisCluster:
    """A Redis Cluster (masters, and replicas when asked); ``stop()`` ends every node
    by PID."""

    nodes: list[tuple[str, int]]
    url: str
    pids: list[int]
    workdir: Path
    _procs: list[ManagedProcess] = field(repr=False, compare=False)

    def stop(self) -> None:
        for proc in self._procs:
            proc.stop()

    def is_running(self) -> bool:
        """Whether every node is still running."""
        return all(proc.is_running() for proc in self._procs)

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on ``port``, as a crash would; waits until it is gone."""
        index = [p for _, p in self.nodes].index(port)
        proc = self._procs[index]
        with contextlib.suppress(ProcessLookupError):
            proc.popen.kill()
        proc.popen.wait(timeout=30)
        proc.stop()  # reaped already: only forgets it

    def live_ports(self) -> list[int]:
        return [
            p for (_, p), proc in zip(self.nodes, self._procs, strict=True) if proc.is_running()
        ]

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _replica_synced(port: int) -> bool:
    """A master, or a replica whose link to its master is up."""
    try:
        info = redis_call(LOOPBACK, port, "INFO", "replication", timeout=1.0)
    except (OSError, RuntimeError):
        return False
    return "role:master" in info or "master_link_status:up" in info


def _cluster_ok(port: int) -> bool:
    try:
        info = redis_call(LOOPBACK, port, "CLUSTER", "INFO", timeout=1.0)
    except (OSError, RuntimeError):
        return False
    return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info


def start_redis_cluster(
    workdir: Path,
    masters: int = 3,
    *,
    replicas: int = 0,
    node_timeout_ms: int = 5000,
    timeout: float = 60.0,
) -> RedisCluster:
    """Start ``masters`` cluster-enabled nodes (and ``replicas`` per master), join them,
    wait for ``cluster_state:ok`` and, with replicas, for every replica to be in sync.

    Each node's cluster bus listens on port + 10000, so both must be free.
    ``node_timeout_ms`` is how long a silent master takes to be failed over.
    """
    if masters < 3:
        raise ValueError(f"Redis Cluster needs at least 3 masters, got {masters!r}")
    server, cli = ensure_redis_binaries()
    procs: list[ManagedProcess] = []
    ports: list[int] = []
    try:
        for _ in range(masters * (1 + replicas)):
            port = free_port_with_offset(CLUSTER_BUS_OFFSET)
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
            ]
            procs.append(_spawn(server, workdir / f"node-{port}", port, extra))
            ports.append(port)
        for port, proc in zip(ports, procs, strict=True):
            _wait_ping(LOOPBACK, port, proc, timeout)
        create_log = workdir / "cluster-create.log"
        with open(create_log, "wb") as out:
            code = subprocess.call(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"{LOOPBACK}:{p}" for p in ports),
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if code != 0:
            raise ServerStartError(
                f"redis-cli --cluster create failed with code {code}", create_log
            )
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(p) for p in ports):
            for proc in procs:
                proc.check_alive()
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {p.log_path} ---\n{log_tail(p.log_path, 15)}" for p in procs
                )
                raise ServerStartError(f"cluster not ok after {timeout:.0f}s\n{tails}")
            time.sleep(0.1)
        while replicas and not all(_replica_synced(p) for p in ports):
            if time.monotonic() > deadline:
                raise ServerStartError(f"replicas not in sync after {timeout:.0f}s", create_log)
            time.sleep(0.1)
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return RedisCluster(
        nodes=[(LOOPBACK, p) for p in ports],
        url=f"redis://{LOOPBACK}:{ports[0]}",
        pids=[p.pid for p in procs],
        workdir=workdir,
        _procs=procs,
    )
