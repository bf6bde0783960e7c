"""Fixtures of the bus suite: a harness per backend; each test names its queues and keys
under its own namespace, so tests can share a vhost and run again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.integration.bus.harness import AmqpHarness, Harness, MemoryHarness


@pytest.fixture(params=["memory", "amqp"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    made: MemoryHarness | AmqpHarness
    if request.param == "memory":
        made = MemoryHarness()
    else:
        made = AmqpHarness(request.getfixturevalue("rabbit_vhost"))
    try:
        yield made
    finally:
        await made.close()


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
