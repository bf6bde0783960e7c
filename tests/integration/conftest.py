"""Fixtures every integration suite shares: the two backends, and a loop that must not block.

The broker is shared with other people's test runs, so each test module gets a fresh vhost
(deleted afterwards) and closes only its own connections; tests that share a module name
their queues per test. One vhost per module, not per test: creating and deleting vhosts is
slow for RabbitMQ, and many at once can exhaust its file handles.

Every test here fails when a callback holds its event loop too long
(tests/support/slow_callbacks.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from tests.support import rabbit
from tests.support.bus_harness import AmqpHarness, Harness, MemoryHarness

# Autouse: every test of the suite is checked.
from tests.support.slow_callbacks import loop_never_blocked, loop_timed  # noqa: F401


@pytest.fixture(scope="package", autouse=True)
def plain_tracebacks() -> Iterator[None]:
    """Exceptions logged with a plain traceback, as the services configure it, instead of the
    rich one (with locals) of structlog's default, which the services here never configure:
    rendering that takes a few tenths of a second on the loop and would fail the check."""
    previous = structlog.get_config()
    if isinstance(previous["processors"][-1], structlog.dev.ConsoleRenderer):
        plain = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        structlog.configure(processors=[*previous["processors"][:-1], plain])
    try:
        yield
    finally:
        structlog.configure(**previous)


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


@pytest.fixture(params=["memory", "real"])
def vhost(request: pytest.FixtureRequest) -> str | None:
    """The test once on ``memory://`` (None) and once on RabbitMQ (its module's vhost).

    A plain fixture on purpose: ``rabbitmqctl`` makes the vhost, a blocking call that an async
    fixture asking for it would make on the test's event loop.
    """
    return None if request.param == "memory" else request.getfixturevalue("rabbit_vhost")


@pytest.fixture
async def harness(vhost: str | None) -> AsyncIterator[Harness]:
    made: MemoryHarness | AmqpHarness = MemoryHarness() if vhost is None else AmqpHarness(vhost)
    try:
        yield made
    finally:
        await made.close()
