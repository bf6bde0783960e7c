"""The history extension on ``memory://`` and on the real RabbitMQ, by the same tests.

On RabbitMQ the tests of a module share its vhost (deleted afterwards), and each test gives
the service a queue name of its own (``WXKF_HISTORY_QUEUE``), deleted with its delay and
dead-letter queues when the test ends: nothing one test leaves behind reaches another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.bus.harness import AmqpHarness, Harness, MemoryHarness
from tests.integration.examples.history_rig import delete_queues, queue_name


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
async def queue(harness: Harness) -> AsyncIterator[str]:
    """This test's name for the history's queues."""
    name = queue_name()
    yield name
    if isinstance(harness, AmqpHarness):
        await delete_queues(harness.url, name)
