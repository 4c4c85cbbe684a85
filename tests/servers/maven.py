"""Resolve a Maven artifact with its runtime dependencies into a cached ``lib/``.

A tiny generated POM and ``mvn dependency:copy-dependencies`` do the work, so
nothing but Maven and Maven Central is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .common import ServerStartError

DEPENDENCY_PLUGIN = "3.8.1"  # pinned: Maven 3.8's implied default is the old 2.8

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>aiostream.tests</groupId>
  <artifactId>{artifact}-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
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


def resolve_runtime_lib(group: str, artifact: str, version: str, home: Path) -> Path:
    """Return ``home/lib`` holding ``group:artifact:version`` and its runtime deps.

    Resolved once: the ``home/.complete`` marker means done. Maven works in a
    private temp dir beside ``home`` that is renamed into place at the end, so
    concurrent callers either win the rename or use the winner's copy, and an
    interrupted run leaves nothing that looks complete.
    """
    lib = home / "lib"
    if (home / ".complete").exists() and lib.is_dir():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerStartError(
            f"Maven ('mvn') is needed to fetch {artifact}; apt-get install maven"
        )
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.", dir=home.parent))
    try:
        pom = tmp / "pom.xml"
        pom.write_text(
            _POM.format(group=group, artifact=artifact, version=version, plugin=DEPENDENCY_PLUGIN)
        )
        log, started = tmp / "mvn.log", time.monotonic()
        argv = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"]
        argv += ["-DincludeScope=runtime", f"-DoutputDirectory={tmp / 'lib'}"]
        with open(log, "wb") as out:
            # -B and no stdin: never waits for a terminal under CI.
            code = subprocess.call(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=tmp
            )
        if code != 0 or not (tmp / "lib" / f"{artifact}-{version}.jar").exists():
            raise ServerStartError(f"mvn could not resolve {group}:{artifact}:{version}", log)
        (tmp / ".complete").write_text(f"resolved in {time.monotonic() - started:.1f}s\n")
        try:
            if home.exists() and not (home / ".complete").exists():
                shutil.rmtree(home)  # leftover of an interrupted run of an older layout
            os.rename(tmp, home)
        except OSError:
            if not (home / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib
