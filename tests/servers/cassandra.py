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
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import LOOPBACK, ManagedProcess, ServerStartError, free_port, log_tail, port_open

# Newest 5.0.x verified on Maven Central (5.0.10 did not exist yet). Pinned
# rather than probed so runs are reproducible and need no network once cached.
DEFAULT_VERSION = "5.0.9"
DEPENDENCY_PLUGIN = "3.8.1"
CAP_IPC_LOCK = 14  # linux/capability.h
READY_MARKERS = ("Starting listening for CQL clients", "Startup complete")

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>aiostream.tests</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def cache_root() -> Path:
    """``$AIOSTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/aiostream``, else ``~/.cache/aiostream``."""
    if env := os.environ.get("AIOSTREAM_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aiostream"


def default_version() -> str:
    return os.environ.get("AIOSTREAM_CASSANDRA_VERSION") or DEFAULT_VERSION


def resolve_cassandra(version: str | None = None) -> Path:
    """Return the ``lib/`` dir holding cassandra-all ``version`` and its runtime deps.

    Resolved once into ``<cache>/cassandra-<version>/lib``; the ``.complete``
    marker means done. Work happens in a private temp dir that is renamed into
    place, so concurrent callers either win the rename or use the winner's copy.
    """
    version = version or default_version()
    home = cache_root() / f"cassandra-{version}"
    lib = home / "lib"
    if (home / ".complete").exists() and lib.is_dir():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerStartError("Maven ('mvn') is needed to fetch Cassandra; apt-get install maven")
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".cassandra-{version}.", dir=home.parent))
    try:
        (tmp / "pom.xml").write_text(_POM.format(version=version, plugin=DEPENDENCY_PLUGIN))
        log = tmp / "mvn.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            code = subprocess.call(
                [mvn, "-q", "-B", "-f", str(tmp / "pom.xml"), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={tmp / 'lib'}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
            )
        if code != 0 or not any((tmp / "lib").glob(f"cassandra-all-{version}.jar")):
            raise ServerStartError(f"mvn could not resolve cassandra-all {version} (code {code})", log)
        (tmp / ".complete").write_text(f"resolved in {time.monotonic() - started:.1f}s\n")
        try:
            if home.exists() and not (home / ".complete").exists():
                shutil.rmtree(home)  # a leftover from an interrupted older layout
            os.rename(tmp, home)
        except OSError:
            if not (home / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


# From Cassandra 5.0's conf/jvm17-server.options: what it needs to run on JDK 17.
JVM17_OPTIONS = [
    "-Djdk.attach.allowAttachSelf=true",
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
        "java.management/com.sun.jmx.remote.security", "java.rmi/sun.rmi.registry",
        "java.rmi/sun.rmi.server", "java.sql/java.sql", "java.base/java.lang.ref",
        "jdk.unsupported/sun.misc",
    )),
    *(f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
        "java.base/jdk.internal.reflect", "java.base/jdk.internal.math", "java.base/jdk.internal.module",
        "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal",
        "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.lang.reflect", "java.base/java.lang",
        "java.base/java.util", "java.base/java.nio",
    )),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Xss256k",
    "-Djava.net.preferIPv4Stack=true",
    "-Dchronicle.analytics.disable=true",
]

# What makes a throwaway single node start fast; see cassandra-local.md.
FAST_START_OPTIONS = [
    "-Dcassandra-foreground=yes",  # otherwise the daemon closes stdout/stderr
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.unsafesystem=true",  # no fsync of system tables
    "-Dcassandra.libjemalloc=-",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
]

_YAML = """\
cluster_name: aiostream-test
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{host}:{storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
ssl_storage_port: {ssl_storage_port}
native_transport_port: {native_port}
start_native_transport: true
auto_snapshot: false
hinted_handoff_enabled: false
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

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (Cassandra drains in its shutdown hook), SIGKILL after ``grace``."""
        self._proc.stop(grace=grace)

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
) -> CassandraServer:
    """Start Cassandra on free loopback ports and wait until CQL is served.

    Ready means the CQL port accepts TCP *and* the log says the native
    transport is listening. ``startup_seconds`` runs from launch to ready.
    Raises ServerStartError (with log tails) if the JVM exits or times out.
    """
    version = version or default_version()
    lib = resolve_cassandra(version)
    java = shutil.which("java")
    if java is None:
        raise ServerStartError("'java' (JDK 17) not found on PATH; apt-get install openjdk-17-jdk-headless")
    workdir = workdir.resolve()
    conf, logs, data = workdir / "conf", workdir / "logs", workdir / "data"
    for d in (conf, logs, data, workdir / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    native_port, storage_port, ssl_port = free_port(), free_port(), free_port()
    (conf / "cassandra.yaml").write_text(_YAML.format(
        host=LOOPBACK, storage_port=storage_port, ssl_storage_port=ssl_port, native_port=native_port,
    ))
    system_log = logs / "system.log"
    (conf / "logback.xml").write_text(_LOGBACK.format(log=system_log))
    jamm = sorted(lib.glob("jamm-*.jar"))
    argv = [
        java, f"-Xms{heap}", f"-Xmx{heap}", *JVM17_OPTIONS, *FAST_START_OPTIONS,
        *(f"-javaagent:{j}" for j in jamm[:1]),
        f"-Dcassandra.config={(conf / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={logs}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        # JNA unpacks its native part to a temp dir that must allow exec; keep it ours.
        f"-Djna.tmpdir={workdir / 'tmp'}",
        *jvm_options,
        "-cp", f"{conf}:{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    # Cassandra mlockall()s the JVM when it may; for root that faults in and
    # pins the whole heap (2.5 s of a 5.5 s start here). Without CAP_IPC_LOCK
    # and with RLIMIT_MEMLOCK=0 it logs one warning and goes on.
    proc = ManagedProcess(
        argv, logs / "stdout.log", cwd=workdir, name=f"cassandra-{version}",
        rlimits={} if lock_memory else {resource.RLIMIT_MEMLOCK: (0, 0)},
        drop_caps=() if lock_memory else (CAP_IPC_LOCK,),
    )
    deadline = proc.started_at + timeout
    seen, offset, ready_logged = "", 0, False
    try:
        while True:
            chunk, offset = _read_new(system_log, offset)
            seen = seen[-200:] + chunk  # keep an overlap so a marker split across reads is found
            ready_logged = ready_logged or any(m in seen for m in READY_MARKERS)
            if ready_logged and port_open(LOOPBACK, native_port):
                break
            if proc.poll() is not None:
                raise ServerStartError(
                    f"Cassandra exited early with code {proc.poll()}; stdout tail:\n"
                    f"{log_tail(proc.log_path, 30)}", system_log)
            if time.monotonic() > deadline:
                raise ServerStartError(f"Cassandra not ready after {timeout:.0f}s", system_log)
            time.sleep(0.1)
    except BaseException:
        proc.stop(grace=5.0)
        raise
    return CassandraServer(
        host=LOOPBACK, port=native_port, pid=proc.pid, version=version,
        startup_seconds=round(time.monotonic() - proc.started_at, 2),
        workdir=workdir, log_path=system_log, _proc=proc,
    )
