"""Developer tasks. ``nox -s demo`` runs the demo, ``nox -s tests`` the whole suite.

Every session installs what it needs into its own virtualenv, so a fresh machine needs
nothing but Python and nox. The test suite starts its own servers (redis-server from
Debian's package, installed if missing; Cassandra 5.0 from Maven Central on the JDK).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install(session: nox.Session, *groups: str, extras: str = "", newest: bool = False) -> None:
    """Install aiostream (editable, with ``extras``) and the named dependency groups.

    ``newest`` upgrades everything to the newest releases allowed, even in a reused
    virtualenv: a suite that tests "the newest stack" must not keep last week's."""
    upgrade = ["--upgrade", "--upgrade-strategy", "eager"] if newest else []
    session.install(*upgrade, "-e", f".[{extras}]" if extras else ".")
    for group in groups:
        session.install(*upgrade, *nox.project.dependency_groups(PYPROJECT, group))


def check_newest(session: nox.Session, package: str, extra: str) -> None:
    """Fail unless ``package`` is installed at the newest release on the package index
    that the ``extra``'s requirement allows (a new major release outside it is not ours
    to test until the cap moves)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    spec = next(
        Requirement(line).specifier
        for line in PYPROJECT["project"]["optional-dependencies"][extra]
        if Requirement(line).name == package
    )
    listing = session.run("python", "-m", "pip", "index", "versions", package, silent=True)
    available = str(listing).split("Available versions:", 1)[1].splitlines()[0]
    newest = max(v for v in map(Version, available.replace(",", " ").split()) if v in spec)
    version_of = f"import importlib.metadata as m; print(m.version({package!r}))"
    have = session.run("python", "-c", version_of, silent=True)
    if Version(str(have).strip()) != newest:
        session.error(f"{package} {str(have).strip()} is installed, the newest allowed is {newest}")


# Extras every test run installs. The two stacks below differ only in redis-py: arq pins
# redis<6, while `aiostream[redis]` alone must work with the newest redis-py.
TEST_EXTRAS = ["redis", "cassandra", "statsd", "prometheus", "otel"]
STACKS = {
    "newest": TEST_EXTRAS,
    "arq": [*TEST_EXTRAS, "arq"],
}


def find_python(version: str) -> str:
    """An interpreter of ``version``: ``python3.X`` on PATH if it runs, else pyenv's build
    (pyenv's shims answer only for the versions selected with ``pyenv global``). When
    neither exists, the bare version: nox then reports it missing, which fails the run
    under CI."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(
        (str(p) for p in pyenv_root.glob(f"versions/{version}.*/bin/python{version}")),
        key=lambda path: [int(n) for n in re.findall(r"\d+", path.split("/versions/")[1])[:3]],
        reverse=True,
    )
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return version


# The oldest and the newest Python the project claims (pyproject's classifiers): the
# newest redis-py stack runs on the newest Python, arq's stack on the oldest.
STACK_PYTHONS = {"newest": "3.13", "arq": "3.11"}


@nox.session
@nox.parametrize(
    ("python", "stack"),
    [(find_python(STACK_PYTHONS[stack]), stack) for stack in STACKS],
    ids=list(STACKS),
)
def tests(session: nox.Session, stack: str) -> None:
    """The whole suite against memory, Redis, Redis Cluster and Cassandra, once on the
    newest redis-py (without arq, on Python 3.13) and once on the redis-py that arq
    allows (with arq, on Python 3.11)."""
    install(session, "test", extras=",".join(STACKS[stack]), newest=True)
    if stack == "newest":
        check_newest(session, "redis", "redis")
    marks = [] if stack == "arq" else ["-m", "not arq"]
    # In the arq stack a missing arq fails the run (tests/conftest.py) instead of
    # leaving the arq tests uncollected; the newest stack declares that it has no arq.
    env = {"AIOSTREAM_REQUIRE_ARQ" if stack == "arq" else "AIOSTREAM_WITHOUT_ARQ": "1"}
    session.run("python", "-m", "pytest", *marks, *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on the package and the examples."""
    install(session, "typing", extras=",".join(STACKS["arq"]))
    session.run("mypy")


# mkdocstrings reads every public module, the backend ones included: their extras too.
DOCS_EXTRAS = ["redis", "cassandra", "arq", "statsd", "prometheus", "otel", "fastapi", "aiohttp"]


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (any warning fails): ``mkdocs build
    --strict`` into the session's directory (``.nox/docs/site``)."""
    install(session, "docs", extras=",".join(DOCS_EXTRAS))
    site = Path(session.virtualenv.location) / "site"
    # NO_MKDOCS_2_WARNING: Material's banner about its successor, not about this site.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs, env=env)


@nox.session
def demo(session: nox.Session) -> None:
    """The Pinterest-like demo on the in-memory backend (no server needed)."""
    install(session)
    session.run("python", "-m", "examples.pinterest_demo", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """An example web service: ``nox -s serve -- starlette --port 8000`` (or ``aiohttp``,
    ``fastapi``; add ``--redis-url redis://...`` for Redis, and ``--arq`` for arq workers)."""
    install(session, "examples", extras="redis,arq")
    args = list(session.posargs)
    frameworks = ("starlette", "aiohttp", "fastapi")
    framework = args.pop(0) if args and args[0] in frameworks else "starlette"
    session.run("python", "-m", f"examples.web.{framework}_app", *args)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Benchmarks against real servers; results land in benchmarks/results/."""
    install(session, "test", "benchmarks", extras="redis,cassandra")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def benchmarks_arq(session: nox.Session) -> None:
    """Fanout through arq worker processes (arq pins redis-py 5, hence its own session)."""
    install(session, "test", extras=",".join(STACKS["arq"]))
    session.run("python", "-m", "benchmarks", "arq", *session.posargs)
