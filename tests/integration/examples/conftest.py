"""The history extension on ``memory://`` and on the real RabbitMQ, by the same tests.

On RabbitMQ the tests of a module share its vhost (deleted afterwards), and each test gives
the service a queue name of its own (``WXKF_HISTORY_QUEUE``), deleted with its delay and
dead-letter queues when the test ends: nothing one test leaves behind reaches another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.examples.history_rig import delete_queues, queue_name
from tests.support.bus_harness import AmqpHarness, Harness


@pytest.fixture
async def queue(harness: Harness) -> AsyncIterator[str]:
    """This test's name for the history's queues."""
    name = queue_name()
    yield name
    if isinstance(harness, AmqpHarness):
        await delete_queues(harness.url, name)
