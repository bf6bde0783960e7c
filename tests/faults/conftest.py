"""The fault suite's broker and Redis: a RabbitMQ node of its own for the whole session (a
vhost per test), and a Redis server per test, so a test may stop, pause or kill either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.rig import COUNTS
from tests.support.rabbit_node import RabbitNode
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    with RabbitNode.started(tmp_path_factory.mktemp("rabbit")) as node:
        yield node


@pytest.fixture
def broker_url(broker: RabbitNode) -> Iterator[str]:
    vhost = broker.add_vhost()
    try:
        yield broker.url(vhost)
    finally:
        if broker.pid() is not None:
            broker.ctl("delete_vhost", vhost)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer.started(tmp_path / "redis") as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS:
        terminalreporter.write_sep("=", "what each fault scenario counted")
        for line in COUNTS:
            terminalreporter.write_line(line)
