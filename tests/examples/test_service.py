"""Configuration of the example services: environment, command line, bad combinations,
and the startup ping."""

from __future__ import annotations

import pytest

from aiostream import ConfigurationError, StorageUnavailableError
from examples.web.service import Config, open_service, parse_args
from tests.servers import free_port


def test_config_from_env() -> None:
    assert Config.from_env({}) == Config()
    assert Config.from_env({}).backend == "memory"
    config = Config.from_env({"AIOSTREAM_REDIS_URL": "redis://h:1/2", "AIOSTREAM_ARQ": "1"})
    assert config == Config(redis_url="redis://h:1/2", arq=True)
    assert config.backend == "redis"
    assert Config.from_env({"AIOSTREAM_REDIS_URL": "", "AIOSTREAM_ARQ": "no"}) == Config()


def test_arq_needs_redis() -> None:
    with pytest.raises(ConfigurationError, match="AIOSTREAM_REDIS_URL"):
        Config(arq=True)


def test_command_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AIOSTREAM_REDIS_URL", raising=False)
    monkeypatch.delenv("AIOSTREAM_ARQ", raising=False)
    assert parse_args([], description="x", default_port=8000) == (Config(), "127.0.0.1", 8000)
    config, host, port = parse_args(
        ["--port", "9", "--host", "0.0.0.0", "--redis-url", "redis://h/0", "--arq"],
        description="x",
        default_port=8000,
    )
    assert (config, host, port) == (Config(redis_url="redis://h/0", arq=True), "0.0.0.0", 9)
    monkeypatch.setenv("AIOSTREAM_REDIS_URL", "redis://env/1")
    assert parse_args([], description="x", default_port=1)[0].redis_url == "redis://env/1"
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--arq", "--redis-url", ""], description="x", default_port=1)
    assert exit_info.value.code == 2
    assert "arq mode needs a Redis URL" in capsys.readouterr().err


@pytest.mark.anyio
@pytest.mark.redis
async def test_startup_pings_redis() -> None:
    # Nothing listens on a free port: the service must not start (it would fail at its
    # first request instead).
    port = free_port()
    opened = False
    with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port} is unavailable"):
        async with open_service(Config(redis_url=f"redis://127.0.0.1:{port}/0")):
            opened = True
    assert not opened
