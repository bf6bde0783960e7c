"""The history extension on ``memory://`` and on the real RabbitMQ, by the same tests.

On RabbitMQ the tests of a module share its vhost (deleted afterwards), and each test gives
the service a queue name of its own (``WXKF_HISTORY_QUEUE``), deleted with its delay and
dead-letter queues when the test ends: nothing one test leaves behind reaches another.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from examples.extension.queues import history_queues
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
async def queue(harness: Harness) -> AsyncIterator[str]:
    """This test's name for the history's queues."""
    name = "wxkf.ext.history.t" + uuid.uuid4().hex[:10]
    yield name
    if isinstance(harness, AmqpHarness):
        await delete_queues(harness.url, name)


async def delete_queues(url: str, name: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection, connection.channel() as channel:
        for spec in history_queues(name):
            delays = [spec.delay_queue(d) for d in spec.delay_steps()]
            for queue in (spec.name, spec.dlq, *delays):
                await channel.queue_delete(queue)
