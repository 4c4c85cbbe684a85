"""The CQL schema of the Cassandra backend, and the code that creates and checks it.

Three tables live in one keyspace. Every partition key starts with ``namespace`` (``''``
by default) so several applications, or test runs, can share the tables without seeing
each other's data::

    timeline    ((namespace, feed), activity_id DESC)  payload text [, extra columns]
    activities  ((namespace, activity_id))             payload text [, extra columns]
    groups      ((namespace, feed), group_id DESC)     name text, payload text,
                group_version bigint, version bigint STATIC,
                names map<text, frozen<tuple<varint, bigint>>> STATIC,
                unseen set<varint> STATIC, unread set<varint> STATIC

* ``timeline`` holds flat feeds with the activity denormalized into each row, so a page
  is one single-partition query.
* ``activities`` is the shared activity storage (``store_activities`` and friends).
* ``groups`` holds aggregated and notification feeds. Everything one compare-and-set
  touches lives in the feed's single partition: the group rows (ordered by group id,
  each with its ``group_version``), the ``names`` index (group name to ``(id,
  group_version)``), the marker sets, and ``version``, the feed-wide counter every
  lightweight transaction is conditioned on.

Ids are ``varint`` because they reach ``2**104`` (see :mod:`aiostream.ids`).

Nothing is created implicitly: call :func:`create_schema` or run
``python -m aiostream.storage.cassandra create-schema``. CQL never embeds values; the
only names spliced into statements (keyspace, extra columns, their types and the
replication options) are validated first.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiostream.exceptions import ConfigurationError, SchemaError, StorageError

TIMELINE = "timeline"
ACTIVITIES = "activities"
GROUPS = "groups"
LEASES = "leases"
STATES = "states"
TABLES = (TIMELINE, ACTIVITIES, GROUPS, LEASES, STATES)

# Columns aiostream owns, per table; extra columns must not reuse these names.
BASE_COLUMNS: dict[str, tuple[str, ...]] = {
    TIMELINE: ("namespace", "feed", "activity_id", "payload"),
    ACTIVITIES: ("namespace", "activity_id", "payload"),
    GROUPS: (
        "namespace",
        "feed",
        "group_id",
        "name",
        "payload",
        "group_version",
        "version",
        "names",
        "unseen",
        "unread",
    ),
}
# Extra columns (for a custom activity model) go where activities are stored.
EXTRA_COLUMN_TABLES = (TIMELINE, ACTIVITIES)


class SchemaTarget(Protocol):
    """What creating and checking the schema needs of a storage: where it points, and a
    way to run CQL without the schema check (a
    :class:`~aiostream.storage.cassandra.CassandraStorage` is one)."""

    @property
    def hosts(self) -> Sequence[str]: ...

    @property
    def port(self) -> int: ...

    @property
    def keyspace(self) -> str: ...

    @property
    def extra_columns(self) -> Mapping[str, str]: ...

    async def execute_cql(
        self, cql: str, params: Sequence[Any] = (), *, prepare: bool = True
    ) -> list[tuple[Any, ...]]: ...


_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_COLUMN = re.compile(r"[a-z][a-z0-9_]{0,47}")
# Native types and collections of them: lower-case words, <, >, commas and spaces only,
# so a type can never close the statement or smuggle in a quote.
_COLUMN_TYPE = re.compile(r"[a-z]+(<[a-z, <>]+>)?")
_REPLICATION_WORD = re.compile(r"[A-Za-z0-9_.]{1,100}")


def validate_identifier(name: str, what: str = "keyspace") -> str:
    """Return ``name`` if it is a valid CQL identifier (letters, digits, ``_``; 48 max).

    Raises:
        ConfigurationError: it is not.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"{what} must be a letter followed by up to 47 letters, digits or '_', got {name!r}"
        )
    return name


def quote(name: str) -> str:
    """A validated identifier, double-quoted so its case is kept."""
    return f'"{validate_identifier(name, "identifier")}"'


def validate_column_type(cql_type: str) -> str:
    """Return ``cql_type`` if it looks like a CQL type (``text``, ``set<int>``, ...)."""
    if not isinstance(cql_type, str) or not _COLUMN_TYPE.fullmatch(cql_type.strip()):
        raise ConfigurationError(f"not a CQL column type: {cql_type!r}")
    return cql_type.strip()


def validate_extra_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """Validate ``{name: cql type}`` for extra activity columns.

    Raises:
        ConfigurationError: a bad name, a name aiostream uses itself, or a bad type.
    """
    checked: dict[str, str] = {}
    reserved = set(BASE_COLUMNS[TIMELINE]) | set(BASE_COLUMNS[ACTIVITIES])
    for name, cql_type in (columns or {}).items():
        if not isinstance(name, str) or not _COLUMN.fullmatch(name):
            raise ConfigurationError(
                f"extra column names are lower-case letters, digits and '_', got {name!r}"
            )
        if name in reserved:
            raise ConfigurationError(f"extra column {name!r} clashes with a column of aiostream")
        checked[name] = validate_column_type(cql_type)
    return checked


def _replication_cql(replication: Mapping[str, Any]) -> str:
    parts = []
    for key, value in replication.items():
        text = str(value)
        if (
            not _REPLICATION_WORD.fullmatch(str(key))
            or isinstance(value, bool)
            or not isinstance(value, str | int)
            or not _REPLICATION_WORD.fullmatch(text)
        ):
            raise ConfigurationError(f"bad replication option {key!r}: {value!r}")
        parts.append(f"'{key}': '{text}'")
    if not any(k == "class" for k in replication):
        raise ConfigurationError("replication options need a 'class'")
    return "{" + ", ".join(parts) + "}"


def table_ddl(keyspace: str) -> dict[str, str]:
    """``CREATE TABLE IF NOT EXISTS`` statements of the tables."""
    ks = quote(keyspace)
    return {
        TIMELINE: (
            f"CREATE TABLE IF NOT EXISTS {ks}.{TIMELINE} ("
            "namespace text, feed text, activity_id varint, payload text, "
            "PRIMARY KEY ((namespace, feed), activity_id)"
            ") WITH CLUSTERING ORDER BY (activity_id DESC)"
        ),
        ACTIVITIES: (
            f"CREATE TABLE IF NOT EXISTS {ks}.{ACTIVITIES} ("
            "namespace text, activity_id varint, payload text, "
            "PRIMARY KEY ((namespace, activity_id)))"
        ),
        GROUPS: (
            f"CREATE TABLE IF NOT EXISTS {ks}.{GROUPS} ("
            "namespace text, feed text, group_id varint, name text, payload text, "
            "group_version bigint, version bigint STATIC, "
            "names map<text, frozen<tuple<varint, bigint>>> STATIC, "
            "unseen set<varint> STATIC, unread set<varint> STATIC, "
            "PRIMARY KEY ((namespace, feed), group_id)"
            ") WITH CLUSTERING ORDER BY (group_id DESC)"
        ),
        # One row per held lease, written by lightweight transactions, expiring by TTL.
        LEASES: (
            f"CREATE TABLE IF NOT EXISTS {ks}.{LEASES} ("
            "namespace text, name text, owner text, PRIMARY KEY ((namespace, name)))"
        ),
        # Small named values (aiostream.materialize): one partition per name.
        STATES: (
            f"CREATE TABLE IF NOT EXISTS {ks}.{STATES} ("
            "namespace text, name text, value text, PRIMARY KEY ((namespace, name)))"
        ),
    }


def create_schema_command(
    hosts: Sequence[str], port: int, keyspace: str, extra_columns: Mapping[str, str] | None = None
) -> str:
    """The shell command that creates this schema (quoted in error messages)."""
    command = (
        "python -m aiostream.storage.cassandra create-schema "
        f"--hosts {','.join(hosts)} --port {port} --keyspace {keyspace}"
    )
    for name, cql_type in (extra_columns or {}).items():
        command += f" --column {name}={cql_type.replace(' ', '')}"
    return command


async def _columns(storage: SchemaTarget, keyspace: str, table: str) -> dict[str, str]:
    rows = await storage.execute_cql(
        "SELECT column_name, type FROM system_schema.columns "
        "WHERE keyspace_name = ? AND table_name = ?",
        (keyspace, table),
    )
    return {str(name): str(cql_type) for name, cql_type in rows}


def _same_type(declared: str, stored: str) -> bool:
    return declared.replace(" ", "").lower() == stored.replace(" ", "").lower()


async def create_schema(
    storage: SchemaTarget,
    *,
    replication: Mapping[str, Any] | None = None,
    extra_columns: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the keyspace and tables if missing, and add missing extra columns.

    Idempotent: safe to run at every deploy. Existing tables are never dropped or
    changed, except that missing extra columns are added with ``ALTER TABLE ... ADD``.

    Args:
        storage: A storage pointing at the cluster and keyspace (it connects if needed).
        replication: Keyspace replication options; default
            ``{"class": "SimpleStrategy", "replication_factor": 1}``. Ignored when the
            keyspace exists.
        extra_columns: ``{name: cql type}`` for a custom activity model; defaults to the
            storage's own ``extra_columns``.

    Returns:
        The DDL statements that were executed.

    Raises:
        ConfigurationError: bad names, types or replication options.
        SchemaError: an extra column exists with another type.
        StorageError: the cluster failed.

    Example::

        async with CassandraStorage(hosts=["10.0.0.5"], keyspace="feeds") as storage:
            await create_schema(storage, extra_columns={"category": "text"})
    """
    keyspace = validate_identifier(storage.keyspace)
    columns = validate_extra_columns(
        storage.extra_columns if extra_columns is None else extra_columns
    )
    replication = replication or {"class": "SimpleStrategy", "replication_factor": 1}
    executed = [
        f"CREATE KEYSPACE IF NOT EXISTS {quote(keyspace)} "
        f"WITH replication = {_replication_cql(replication)}",
        *table_ddl(keyspace).values(),
    ]
    for statement in executed:
        await _execute_ddl(storage, statement)
    for table in EXTRA_COLUMN_TABLES:
        existing = await _columns(storage, keyspace, table)
        for name, cql_type in columns.items():
            if name in existing:
                if not _same_type(cql_type, existing[name]):
                    raise SchemaError(
                        f"column {keyspace}.{table}.{name} exists with type {existing[name]}, "
                        f"not {cql_type}"
                    )
                continue
            statement = f"ALTER TABLE {quote(keyspace)}.{table} ADD {quote(name)} {cql_type}"
            await storage.execute_cql(statement, prepare=False)
            executed.append(statement)
    return executed


# How long a DDL statement waits for the keyspace created just before it: on a ring,
# another coordinator may not have the new keyspace yet (the driver's wait for schema
# agreement gives up after 10 s, which a loaded machine can exceed).
SCHEMA_AGREEMENT_WAIT = 60.0


async def _execute_ddl(storage: SchemaTarget, statement: str) -> None:
    """Run ``statement``, again while it fails only because the keyspace is not known
    to its coordinator yet (up to :data:`SCHEMA_AGREEMENT_WAIT`)."""
    deadline = time.monotonic() + SCHEMA_AGREEMENT_WAIT
    while True:
        try:
            await storage.execute_cql(statement, prepare=False)
            return
        except StorageError as exc:
            if "doesn't exist" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def check_schema(storage: SchemaTarget) -> None:
    """Raise :class:`SchemaError` naming the fix if a keyspace, table or column is missing."""
    keyspace = storage.keyspace
    command = create_schema_command(storage.hosts, storage.port, keyspace, storage.extra_columns)
    rows = await storage.execute_cql(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?", (keyspace,)
    )
    tables = {str(name) for (name,) in rows}
    if not tables:
        keyspaces = await storage.execute_cql(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        if not keyspaces:
            raise SchemaError(
                f"Cassandra keyspace {keyspace!r} does not exist; create it with: {command}"
            )
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise SchemaError(
            f"Cassandra table(s) {', '.join(f'{keyspace}.{t}' for t in missing)} do not exist; "
            f"create them with: {command}"
        )
    for table in EXTRA_COLUMN_TABLES if storage.extra_columns else ():
        existing = await _columns(storage, keyspace, table)
        absent = [c for c in storage.extra_columns if c not in existing]
        if absent:
            raise SchemaError(
                f"column(s) {', '.join(absent)} missing from {keyspace}.{table}; "
                f"add them with: {command}"
            )
