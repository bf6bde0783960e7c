"""Every ingress integration test runs on the memory twins and on RabbitMQ + Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.ingress.harness import Backend, memory_backend, real_backend


@pytest.fixture(params=["memory", "real"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        chosen = memory_backend()
    else:
        chosen = real_backend(request.getfixturevalue("rabbit_vhost"))
    try:
        yield chosen
    finally:
        await chosen.close()
