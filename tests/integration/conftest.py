"""Fixtures for the tests that use the real RabbitMQ: a vhost of their own.

The broker is shared with other people's test runs, so each test module gets a fresh vhost
(deleted afterwards) and closes only its own connections; tests that share a module name
their queues per test. One vhost per module, not per test: creating and deleting vhosts is
slow for RabbitMQ, and many at once can exhaust its file handles.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import rabbit


@pytest.fixture(scope="module")
def rabbit_vhost() -> Iterator[str]:
    vhost = rabbit.add_vhost()
    try:
        yield vhost
    finally:
        rabbit.delete_vhost(vhost)


@pytest.fixture(scope="module")
def amqp_url(rabbit_vhost: str) -> str:
    return rabbit.url(rabbit_vhost)
