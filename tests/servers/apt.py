"""Install Debian packages for test servers, without starting their services.

Used only when a binary is missing and we are root (the project's machines and
CI). Non-interactive throughout: no stdin, ``DEBIAN_FRONTEND=noninteractive``,
old config files kept.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from .common import ServerStartError

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_POLICY = (
    "#!/bin/sh\n# temporary, written by aiostream tests/servers: start no services\nexit 101\n"
)
_lock = threading.Lock()
_updated = False


def can_install() -> bool:
    """Whether :func:`apt_install` can work here (root and apt-get present)."""
    return os.geteuid() == 0 and Path("/usr/bin/apt-get").exists()


def _apt_get(args: Sequence[str], log: Path) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", APT_LISTCHANGES_FRONTEND="none")
    # Wait for the dpkg lock rather than fail when a parallel test worker installs too.
    argv = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-o", "Dpkg::Options::=--force-confold"]
    with open(log, "ab") as out:
        code = subprocess.call(
            [*argv, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    if code != 0:
        raise ServerStartError(f"apt-get {' '.join(args)} failed with code {code}", log)


def apt_install(packages: Sequence[str]) -> None:
    """``apt-get update`` (once per process) and ``apt-get install -y packages``.

    Package maintainer scripts start services through ``invoke-rc.d``, which
    asks ``/usr/sbin/policy-rc.d``: while we install, a policy that exits 101
    ("action forbidden") is in place. An existing policy (containers ship one)
    is left untouched; ours is removed afterwards.
    """
    global _updated
    with _lock:
        log = Path(tempfile.gettempdir()) / f"aiostream-apt-{os.getpid()}.log"
        created = False
        try:
            try:
                fd = os.open(POLICY_RC_D, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(_POLICY)
                created = True
            if not _updated:
                _apt_get(["update"], log)
                _updated = True
            _apt_get(["install", "-y", "--no-install-recommends", *packages], log)
        finally:
            if created:
                POLICY_RC_D.unlink(missing_ok=True)
        log.unlink(missing_ok=True)


def process_titles(name: str) -> dict[int, str]:
    """PID -> command line of running processes whose program is ``name`` (from /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline and os.path.basename(cmdline.split(" ", 1)[0]) == name:
            found[int(entry.name)] = cmdline.strip()
    return found
