"""Schema creation, checking and the ``create-schema`` command, on the real node."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from aiostream import Activity, ConfigurationError, Love, SchemaError
from aiostream.storage.cassandra import CassandraStorage, activity_columns, create_schema
from tests.backends.cassandra import CassandraHandle
from tests.helpers import TestFeed, at

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra]


def _storage(cassandra: CassandraHandle, keyspace: str, **options: Any) -> CassandraStorage:
    options.setdefault("session", cassandra.session)
    return CassandraStorage(
        hosts=[cassandra.host], port=cassandra.port, keyspace=keyspace, **options
    )


def _columns(cassandra: CassandraHandle, keyspace: str, table: str) -> dict[str, str]:
    rows = cassandra.session.execute(
        "SELECT column_name, type FROM system_schema.columns "
        "WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table),
    )
    return {r.column_name: r.type for r in rows}


async def test_create_schema_is_idempotent(
    cassandra: CassandraHandle, scratch_keyspace: str
) -> None:
    async with _storage(cassandra, scratch_keyspace) as storage:
        first = await create_schema(storage)
        second = await create_schema(storage)
        assert first == second  # IF NOT EXISTS only: nothing else the second time
        assert all("IF NOT EXISTS" in statement for statement in second)
        feed = TestFeed(1, storage=storage)
        await feed.add(Activity(1, Love, 1, time=at(0)))
        await create_schema(storage)  # existing data survives
        assert await feed.count() == 1
    assert set(_columns(cassandra, scratch_keyspace, "groups")) >= {
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
    }


async def test_custom_columns_are_added_and_filled(
    cassandra: CassandraHandle, scratch_keyspace: str
) -> None:
    async with _storage(cassandra, scratch_keyspace) as storage:
        await create_schema(storage)
        executed = await create_schema(storage, extra_columns={"category": "text", "score": "int"})
        alters = [s for s in executed if s.startswith("ALTER TABLE")]
        assert len(alters) == 4  # two columns on timeline and activities
        again = await create_schema(storage, extra_columns={"category": "text", "score": "int"})
        assert not [s for s in again if s.startswith("ALTER TABLE")]
        with pytest.raises(SchemaError, match="category exists with type text, not int"):
            await create_schema(storage, extra_columns={"category": "int"})
    assert _columns(cassandra, scratch_keyspace, "timeline")["category"] == "text"
    assert _columns(cassandra, scratch_keyspace, "activities")["score"] == "int"

    hook = activity_columns(
        lambda a: {"category": a.extra_context.get("category")}, activity_class=Activity
    )
    async with _storage(
        cassandra,
        scratch_keyspace,
        namespace="custom",
        extra_columns={"category": "text", "score": "int"},
        column_values=hook,
    ) as storage:
        feed = TestFeed(7, storage=storage)
        activity = Activity(1, Love, 2, time=at(0), extra_context={"category": "shoes"})
        await feed.add(activity)
        assert await feed[:1] == [activity]
    rows = cassandra.session.execute(
        f'SELECT category, score FROM "{scratch_keyspace}".timeline '
        "WHERE namespace = %s AND feed = %s",
        ("custom", feed.key),
    )
    assert [(r.category, r.score) for r in rows] == [("shoes", None)]  # score left unset
    rows = cassandra.session.execute(
        f'SELECT category FROM "{scratch_keyspace}".activities '
        "WHERE namespace = %s AND activity_id = %s",
        ("custom", activity.serialization_id),
    )
    assert [r.category for r in rows] == ["shoes"]


async def test_column_hook_errors_write_nothing(
    cassandra: CassandraHandle, scratch_keyspace: str
) -> None:
    async with _storage(cassandra, scratch_keyspace) as storage:
        await create_schema(storage, extra_columns={"category": "text"})

    def bad(activity_id: int, payload: str) -> dict[str, Any]:
        return {"colour": "red"}

    async with _storage(
        cassandra, scratch_keyspace, extra_columns={"category": "text"}, column_values=bad
    ) as storage:
        feed = TestFeed(1, storage=storage)
        with pytest.raises(ValueError, match="colour"):
            await feed.add(Activity(1, Love, 1, time=at(0)))
        assert await feed.count() == 0


async def test_missing_keyspace_names_the_command(
    cassandra: CassandraHandle, scratch_keyspace: str
) -> None:
    async with _storage(cassandra, scratch_keyspace) as storage:
        with pytest.raises(SchemaError) as caught:
            await TestFeed(1, storage=storage).count()
    message = str(caught.value)
    assert f"keyspace {scratch_keyspace!r} does not exist" in message
    assert "python -m aiostream.storage.cassandra create-schema" in message
    assert f"--keyspace {scratch_keyspace}" in message
    assert f"--port {cassandra.port}" in message


async def test_missing_table_names_the_command(
    cassandra: CassandraHandle, scratch_keyspace: str
) -> None:
    async with _storage(cassandra, scratch_keyspace) as storage:
        await create_schema(storage)
    cassandra.session.execute(f'DROP TABLE "{scratch_keyspace}".groups')
    async with _storage(cassandra, scratch_keyspace) as storage:
        with pytest.raises(
            SchemaError, match=rf"{scratch_keyspace}\.groups do not exist"
        ) as caught:
            await TestFeed(1, storage=storage).count()
        assert "create-schema" in str(caught.value)
        await create_schema(storage)  # what the message says fixes it
        assert await TestFeed(1, storage=storage).count() == 0


async def test_missing_extra_column_names_the_command(
    cassandra: CassandraHandle, scratch_keyspace: str
) -> None:
    async with _storage(cassandra, scratch_keyspace) as storage:
        await create_schema(storage)
    async with _storage(cassandra, scratch_keyspace, extra_columns={"category": "text"}) as storage:
        with pytest.raises(SchemaError, match="--column category=text"):
            await TestFeed(1, storage=storage).count()


def test_bad_names_fail_before_any_io() -> None:
    with pytest.raises(ConfigurationError, match="keyspace"):
        CassandraStorage(keyspace='x"; DROP KEYSPACE y; --')
    with pytest.raises(ConfigurationError, match="extra column"):
        CassandraStorage(extra_columns={"Bad Name": "text"})
    with pytest.raises(ConfigurationError, match="clashes"):
        CassandraStorage(extra_columns={"payload": "text"})
    with pytest.raises(ConfigurationError, match="CQL column type"):
        CassandraStorage(extra_columns={"x": "text) WITH comment='x"})
    with pytest.raises(ConfigurationError, match="consistency"):
        CassandraStorage(consistency="MOST")


async def test_bad_replication_fails_before_any_io(scratch_keyspace: str) -> None:
    storage = CassandraStorage(keyspace=scratch_keyspace, hosts=["192.0.2.1"])
    with pytest.raises(ConfigurationError, match="replication"):
        await create_schema(storage, replication={"class": "SimpleStrategy", "x": "1'}"})


def test_create_schema_command(cassandra: CassandraHandle, scratch_keyspace: str) -> None:
    argv = [
        sys.executable,
        "-m",
        "aiostream.storage.cassandra",
        "create-schema",
        "--hosts",
        cassandra.host,
        "--port",
        str(cassandra.port),
        "--keyspace",
        scratch_keyspace,
        "--column",
        "category=text",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert f'CREATE KEYSPACE IF NOT EXISTS "{scratch_keyspace}"' in done.stdout
    assert 'ADD "category" text' in done.stdout
    assert _columns(cassandra, scratch_keyspace, "timeline")["category"] == "text"
    failed = subprocess.run(
        [*argv[:-2], "--column", "oops"], capture_output=True, text=True, timeout=120, check=False
    )
    assert failed.returncode != 0
    assert "NAME=TYPE" in failed.stderr
