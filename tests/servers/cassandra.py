"""A private single-node Apache Cassandra 5.0, run from Maven Central jars.

There is no Debian or PyPI package of Cassandra and no Docker here, but Maven
Central has ``cassandra-all`` with every runtime dependency, so a tiny POM and
``mvn dependency:copy-dependencies`` yield a complete ``lib/``. The jar ships no
``conf/``: we write ``cassandra.yaml`` and ``logback.xml`` ourselves.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    LOOPBACK,
    ManagedProcess,
    ServerStartError,
    free_port,
    log_tail,
    port_is_free,
    port_open,
)
from .maven import cache_root, resolve_runtime_lib

# Newest 5.0.x verified on Maven Central (5.0.10 did not exist yet). Pinned
# rather than probed so runs are reproducible and need no network once cached;
# $AIOSTREAM_CASSANDRA_VERSION overrides it.
DEFAULT_VERSION = "5.0.9"
CAP_IPC_LOCK = 14  # linux/capability.h
READY_MARKERS = ("Starting listening for CQL clients", "Startup complete")


def default_version() -> str:
    return os.environ.get("AIOSTREAM_CASSANDRA_VERSION") or DEFAULT_VERSION


def resolve_cassandra(version: str | None = None) -> Path:
    """Return ``<cache>/cassandra-<version>/lib``: cassandra-all and its runtime deps.

    Idempotent and safe to call concurrently (see ``maven.resolve_runtime_lib``).
    """
    version = version or default_version()
    home = cache_root() / f"cassandra-{version}"
    return resolve_runtime_lib("org.apache.cassandra", "cassandra-all", version, home)


# From Cassandra 5.0's conf/jvm17-server.options: what it needs to run on JDK 17.
_JVM17_TEXT = """
-Djdk.attach.allowAttachSelf=true
--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports=java.management/com.sun.jmx.remote.security=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports=java.sql/java.sql=ALL-UNNAMED
--add-exports=java.base/java.lang.ref=ALL-UNNAMED
--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
--add-opens=java.base/java.lang.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens=java.base/jdk.internal.math=ALL-UNNAMED
--add-opens=java.base/jdk.internal.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
--add-opens=java.base/java.nio=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Xss256k
-Djava.net.preferIPv4Stack=true
-Dchronicle.analytics.disable=true
"""
JVM17_OPTIONS = _JVM17_TEXT.split()

# What makes a throwaway single node start (and stop) fast; see cassandra-local.md.
FAST_START_OPTIONS = [
    "-Dcassandra-foreground=yes",  # otherwise the daemon closes stdout/stderr
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.unsafesystem=true",  # no fsync of system tables
    "-Dcassandra.libjemalloc=-",
    # Stop in under 1 s instead of 5: no 2 s shutdown gossip announcement and no
    # 2 s wait for internode messaging to quiesce (a test-only switch; one node).
    "-Dcassandra.shutdown_announce_in_ms=0",
    "-Dcassandra.test.messagingService.nonGracefulShutdown=true",
    # Cassandra's own collector on JDK 17. Serial GC and -XX:TieredStopAtLevel=1
    # were measured too: no faster start within the noise (3-6 s), worse later.
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",  # no hsperfdata files in /tmp
]

_YAML = """\
cluster_name: aiostream-test
num_tokens: 1
initial_token: {initial_token}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seeds}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
ssl_storage_port: {ssl_storage_port}
native_transport_port: {native_port}
start_native_transport: true
auto_snapshot: false
hinted_handoff_enabled: {hinted_handoff}
max_hint_window: 3h
hints_flush_period: 1000ms
auto_bootstrap: false
concurrent_compactors: 1
"""

_LOGBACK = """\
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter"><level>WARN</level></filter>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
"""


@dataclass
class CassandraServer:
    """A single-node Cassandra; ``stop()`` ends it by PID (idempotent)."""

    host: str
    port: int
    pid: int
    version: str
    startup_seconds: float
    workdir: Path
    log_path: Path
    _proc: ManagedProcess = field(repr=False, compare=False)

    _launch_args: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (Cassandra drains in its shutdown hook), SIGKILL after ``grace``."""
        self._proc.stop(grace=grace)

    def start_again(self) -> None:
        """Start the stopped node again, on its data, and wait until it serves CQL."""
        argv, name, options, timeout = self._launch_args
        self._proc = _launch(
            argv, self.workdir, name, options, self.log_path, self.host, self.port, timeout
        )
        self.pid = self._proc.pid

    def is_running(self) -> bool:
        return self._proc.is_running()

    def __enter__(self) -> CassandraServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_new(path: Path, offset: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return "", offset
    return data.decode("utf-8", "replace"), offset + len(data)


def start_cassandra(
    workdir: Path,
    version: str | None = None,
    heap: str = "1G",
    *,
    timeout: float = 180.0,
    jvm_options: tuple[str, ...] = (),
    lock_memory: bool = False,
    host: str = LOOPBACK,
    ports: tuple[int, int, int] | None = None,
    seeds: str | None = None,
    initial_token: int = 0,
    hinted_handoff: bool = False,
) -> CassandraServer:
    """Start Cassandra on free loopback ports and wait until CQL is served.

    Ready means the CQL port accepts TCP *and* the log says the native
    transport is listening. ``startup_seconds`` runs from launch to ready.
    Raises ServerStartError (with log tails) if the JVM exits or times out.

    A node of a ring (:func:`start_cassandra_ring`) gives its ``host`` (another
    loopback address), the ring's ``ports`` (native, storage, ssl storage), its
    ``seeds`` and its ``initial_token``.
    """
    version = version or default_version()
    lib = resolve_cassandra(version)
    java = shutil.which("java")
    if java is None:
        raise ServerStartError(
            "'java' (JDK 17) not found on PATH; apt-get install openjdk-17-jdk-headless"
        )
    workdir = workdir.resolve()
    conf, logs, data = workdir / "conf", workdir / "logs", workdir / "data"
    for d in (conf, logs, data, workdir / "tmp", workdir / "triggers"):
        d.mkdir(parents=True, exist_ok=True)
    native_port, storage_port, ssl_port = ports or (free_port(), free_port(), free_port())
    (conf / "cassandra.yaml").write_text(
        _YAML.format(
            host=host,
            seeds=seeds or f"{host}:{storage_port}",
            initial_token=initial_token,
            hinted_handoff="true" if hinted_handoff else "false",
            storage_port=storage_port,
            ssl_storage_port=ssl_port,
            native_port=native_port,
        )
    )
    system_log = logs / "system.log"
    (conf / "logback.xml").write_text(_LOGBACK.format(log=system_log))
    jamm = sorted(lib.glob("jamm-*.jar"))
    argv = [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *JVM17_OPTIONS,
        *FAST_START_OPTIONS,
        *(f"-javaagent:{j}" for j in jamm[:1]),
        f"-Dcassandra.config={(conf / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={logs}",
        f"-Dcassandra.triggers_dir={workdir / 'triggers'}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        # JNA, lz4, snappy, zstd and netty unpack native libraries into a temp dir
        # that must allow exec; keep them in ours rather than littering /tmp.
        f"-Djna.tmpdir={workdir / 'tmp'}",
        f"-Djava.io.tmpdir={workdir / 'tmp'}",
        *jvm_options,
        "-cp",
        f"{conf}:{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    # Cassandra mlockall()s the JVM when it may; for root that faults in and
    # pins the whole heap (2.5 s of a 5.5 s start here). Without CAP_IPC_LOCK
    # and with RLIMIT_MEMLOCK=0 it logs one warning and goes on.
    options = {
        "rlimits": {} if lock_memory else {resource.RLIMIT_MEMLOCK: (0, 0)},
        "drop_caps": () if lock_memory else (CAP_IPC_LOCK,),
    }
    proc = _launch(
        argv, workdir, f"cassandra-{version}", options, system_log, host, native_port, timeout
    )
    return CassandraServer(
        host=host,
        port=native_port,
        pid=proc.pid,
        version=version,
        startup_seconds=round(time.monotonic() - proc.started_at, 2),
        workdir=workdir,
        log_path=system_log,
        _proc=proc,
        _launch_args=(argv, f"cassandra-{version}", options, timeout),
    )


def _launch(
    argv: list[str],
    workdir: Path,
    name: str,
    options: dict[str, Any],
    system_log: Path,
    host: str,
    native_port: int,
    timeout: float,
) -> ManagedProcess:
    """Start the JVM and wait until it serves CQL (see :func:`start_cassandra`)."""
    offset = system_log.stat().st_size if system_log.exists() else 0
    proc = ManagedProcess(argv, workdir / "logs" / "stdout.log", cwd=workdir, name=name, **options)
    deadline = proc.started_at + timeout
    seen, ready_logged = "", False
    try:
        while True:
            chunk, offset = _read_new(system_log, offset)
            seen = seen[-200:] + chunk  # keep an overlap so a marker split across reads is found
            ready_logged = ready_logged or any(m in seen for m in READY_MARKERS)
            if ready_logged and port_open(host, native_port):
                return proc
            if proc.poll() is not None:
                raise ServerStartError(
                    f"Cassandra exited early with code {proc.poll()}; stdout tail:\n"
                    f"{log_tail(proc.log_path, 30)}",
                    system_log,
                )
            if time.monotonic() > deadline:
                raise ServerStartError(f"Cassandra not ready after {timeout:.0f}s", system_log)
            time.sleep(0.1)
    except BaseException:
        proc.stop(grace=5.0)
        raise


RING_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
# Joining a ring waits for gossip to settle (30 s by default): a loopback ring of empty
# nodes with fixed tokens needs none of it.
RING_JVM_OPTIONS = (
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.consistent.rangemovement=false",
)


@dataclass
class CassandraRing:
    """Three nodes on 127.0.0.1-3, one port set; ``stop()`` ends them all."""

    nodes: list[CassandraServer]
    port: int

    @property
    def hosts(self) -> list[str]:
        return [n.host for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> CassandraRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cassandra_ring(
    workdir: Path, size: int = 3, heap: str = "512M", *, timeout: float = 240.0
) -> CassandraRing:
    """Start ``size`` nodes on the loopback addresses ``RING_HOSTS``, one after the
    other (the first is the seed), tokens evenly spread, hinted handoff on."""
    hosts = RING_HOSTS[:size]
    ports = _ring_ports(hosts)
    seeds = f"{hosts[0]}:{ports[1]}"
    nodes: list[CassandraServer] = []
    try:
        for index, host in enumerate(hosts):
            token = -(2**63) + index * (2**64 // size)
            nodes.append(
                start_cassandra(
                    workdir / f"node{index + 1}",
                    heap=heap,
                    timeout=timeout,
                    jvm_options=RING_JVM_OPTIONS,
                    host=host,
                    ports=ports,
                    seeds=seeds,
                    initial_token=token,
                    hinted_handoff=True,
                )
            )
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return CassandraRing(nodes, ports[0])


def _ring_ports(hosts: Sequence[str]) -> tuple[int, int, int]:
    """Three ports free on every host of the ring."""
    for _ in range(100):
        ports = (free_port(), free_port(), free_port())
        if all(port_is_free(p, h) for p in ports for h in hosts):
            return ports
    raise ServerStartError(f"no ports free on all of {', '.join(hosts)}")
