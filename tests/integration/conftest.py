"""Fixtures for the tests that use the real RabbitMQ: a vhost of their own.

The broker is shared with other people's test runs, so a test session gets a fresh vhost
(deleted afterwards), names its queues per test, and closes only its own connections.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import rabbit


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str]:
    vhost = rabbit.add_vhost()
    try:
        yield vhost
    finally:
        rabbit.delete_vhost(vhost)


@pytest.fixture(scope="session")
def amqp_url(rabbit_vhost: str) -> str:
    return rabbit.url(rabbit_vhost)
