"""Process and port helpers shared by the private test servers.

Everything here is stdlib only so that the test tooling works before any
project dependency is installed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Ports handed out by this process: the kernel may return the same ephemeral
# port twice once the probing socket is closed, and several servers of one
# test session pick their ports before any of them binds.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


class ServerStartError(RuntimeError):
    """A private server could not be installed, started or made ready.

    The message ends with the tail of the server's log, because the reason is
    almost always in there and CI output is all one gets.
    """

    def __init__(self, message: str, log_path: Path | None = None, lines: int = 60) -> None:
        self.log_path = log_path
        tail = log_tail(log_path, lines) if log_path is not None else ""
        if tail:
            message = f"{message}\n--- last {lines} lines of {log_path} ---\n{tail}"
        super().__init__(message)


def log_tail(path: Path, lines: int = 60) -> str:
    """Return the last ``lines`` lines of a text file ('' if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``port`` can be bound on ``host`` right now.

    No SO_REUSEADDR on purpose: a port that still has TIME_WAIT connections is
    reported busy, which is the conservative answer.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _claim(port: int) -> bool:
    with _handed_out_lock:
        if port in _handed_out:
            return False
        _handed_out.add(port)
        return True


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` and not yet handed out here."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if _claim(port):
            return port
    raise ServerStartError("could not find a free TCP port")


def free_port_with_offset(offset: int, host: str = LOOPBACK) -> int:
    """Return a port ``p`` such that ``p`` and ``p + offset`` are both free.

    Redis Cluster listens on its bus port at ``port + 10000``.
    """
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(20000, 65535 - offset)
        if port_is_free(port, host) and port_is_free(port + offset, host):
            with _handed_out_lock:
                if port in _handed_out or port + offset in _handed_out:
                    continue
                _handed_out.update((port, port + offset))
            return port
    raise ServerStartError(f"could not find free TCP ports p and p+{offset}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connect to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 30.0,
    *,
    process: ManagedProcess | None = None,
) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises ServerStartError on timeout, or at once if ``process`` exits first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check_alive()
        if port_open(host, port):
            return
        if time.monotonic() > deadline:
            log = process.log_path if process is not None else None
            raise ServerStartError(f"{host}:{port} not open after {timeout:.0f}s", log)
        time.sleep(0.1)


def _make_preexec(
    rlimits: Mapping[int, tuple[int, int]], drop_caps: Sequence[int]
) -> Callable[[], None] | None:
    """A preexec_fn that applies ``rlimits``, drops ``drop_caps`` and ties the child to us.

    Capabilities are dropped from the bounding set, so root's exec of the
    server does not get them back (best effort: needs CAP_SETPCAP).

    PR_SET_PDEATHSIG (Linux) keeps servers from outliving a test run that was
    SIGKILLed. It fires when the *thread* that forked exits, so it is only set
    from the main thread: a worker thread (anyio.to_thread) may end long before
    the tests do.
    """
    prctl: Callable[..., int] | None = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl
    deathsig = prctl is not None and threading.current_thread() is threading.main_thread()
    if not (deathsig or rlimits or (drop_caps and prctl is not None)):
        return None
    limits, caps = dict(rlimits), list(drop_caps)

    def preexec() -> None:
        for which, value in limits.items():
            resource.setrlimit(which, value)
        if prctl is not None:
            for cap in caps:
                prctl(24, cap)  # PR_CAPBSET_DROP; a failure only leaves the cap
            if deathsig:
                prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return preexec


# Strong references on purpose: a server whose handle was dropped unstopped
# is still ended when the interpreter exits.
_live: set[ManagedProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Safety net for callers that forgot ``stop()`` (PDEATHSIG covers SIGKILL)."""
    for proc in list(_live):
        proc.stop(grace=5.0)


class ManagedProcess:
    """A server subprocess with its own log file, stopped by its PID.

    stdin is /dev/null (CI has none), stdout and stderr go to ``log_path``, and
    the child gets its own session so a terminal's Ctrl-C reaches only us and we
    decide how to stop it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        rlimits: Mapping[int, tuple[int, int]] | None = None,
        drop_caps: Sequence[int] = (),
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.name = name or Path(self.argv[0]).name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else dict(env),
                start_new_session=True,
                preexec_fn=_make_preexec(rlimits or {}, drop_caps),
            )
        self.started_at = time.monotonic()
        _live.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """Return the exit code, or None while running."""
        return self.popen.poll()

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise ServerStartError (with the log tail) if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise ServerStartError(
                f"{self.name} (pid {self.pid}) exited early with code {code}", self.log_path
            )

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``grace`` seconds; return the exit code.

        Idempotent and safe to call from several threads. Popen's own
        terminate/kill are used because they never signal an already reaped
        (and so possibly reused) PID.
        """
        with self._lock:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.terminate()
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.popen.kill()
                    self.popen.wait(timeout=30)
            _live.discard(self)
            return self.popen.returncode

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} returncode={self.popen.returncode}>"
