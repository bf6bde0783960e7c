"""Fixtures of the bus suite (the harness per backend is tests/integration/conftest.py's);
each test names its queues and keys under its own namespace, so tests can share a vhost and
run again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support.bus_harness import AmqpHarness


@pytest.fixture
async def amqp(rabbit_vhost: str) -> AsyncIterator[AmqpHarness]:
    made = AmqpHarness(rabbit_vhost)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def ns() -> str:
    """This test's namespace for queue names and routing keys."""
    return "t" + uuid.uuid4().hex[:10]
