"""A real UDP socket on a free loopback port standing in for a StatsD server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Stat:
    """One StatsD line: ``name:value|type``."""

    name: str
    value: float
    type: str


class StatsdServer:
    """Receives StatsD datagrams and parses their lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: list[str] = []

    def receive(self, quiet: float = 0.2) -> list[Stat]:
        """Every stat received so far (waits until ``quiet`` seconds pass without one)."""
        self.sock.settimeout(quiet)
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            self.datagrams.append(data.decode("ascii"))
        stats = []
        for datagram in self.datagrams:
            for line in datagram.split("\n"):
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                stats.append(Stat(name, float(value), kind))
        return stats

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd_server() -> Iterator[StatsdServer]:
    server = StatsdServer()
    try:
        yield server
    finally:
        server.close()
