"""The progress bar draws on a terminal and stays silent anywhere else."""

from __future__ import annotations

import io
from typing import ClassVar

import pytest

from aiostream import Manager
from aiostream.progress import Progress
from aiostream.storage.memory import MemoryStorage
from tests.helpers import TestFeed, TestUserFeed, make_activities


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_on_a_terminal() -> None:
    stream = Terminal()
    with Progress(3, "fanout", stream=stream) as bar:
        for _ in range(3):
            bar.advance()
    out = stream.getvalue()
    assert "\rfanout" in out and "3/3" in out and "#" * 30 in out
    assert out.endswith("\n")


def test_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(3, "fanout", stream=stream) as bar:
        bar.advance(3)
    assert stream.getvalue() == ""
    assert bar.done == 3


class ImportManager(Manager):
    feed_classes: ClassVar[dict[str, type[TestFeed]]] = {"normal": TestFeed}
    user_feed_class = TestUserFeed

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {"HIGH": [7]}


@pytest.mark.anyio
@pytest.mark.parametrize("progress", [True, None])
async def test_batch_import_progress(
    progress: bool | None, capsys: pytest.CaptureFixture[str]
) -> None:
    async with MemoryStorage() as storage:
        manager = ImportManager(storage=storage)
        await manager.batch_import(1, make_activities(5), chunk_size=2, progress=progress)
        assert await manager.get_feeds(7)["normal"].count() == 5
    err = capsys.readouterr().err
    if progress:
        assert "import" in err and "5/5" in err
    else:  # pytest's captured stderr is not a terminal
        assert err == ""


@pytest.mark.anyio
async def test_batch_import_reports_to_a_callable(capsys: pytest.CaptureFixture[str]) -> None:
    reports: list[tuple[int, int]] = []
    async with MemoryStorage() as storage:
        manager = ImportManager(storage=storage)
        await manager.batch_import(
            1, make_activities(5), chunk_size=2, progress=lambda d, t: reports.append((d, t))
        )
    assert reports == [(2, 5), (4, 5), (5, 5)]
    assert capsys.readouterr().err == ""  # a callback replaces the bar


@pytest.mark.anyio
async def test_batch_import_refuses_a_bad_progress_before_writing() -> None:
    async with MemoryStorage() as storage:
        manager = ImportManager(storage=storage)
        with pytest.raises(TypeError, match="progress must be a bool, None or a callable"):
            await manager.batch_import(1, make_activities(2), progress="yes")  # type: ignore[arg-type]
        assert await manager.get_feeds(7)["normal"].count() == 0
