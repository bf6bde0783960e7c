"""Every ingress integration test runs on the memory twins and on RabbitMQ + Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.ingress.harness import Backend, memory_backend, real_backend


@pytest.fixture
async def backend(vhost: str | None) -> AsyncIterator[Backend]:
    chosen = memory_backend() if vhost is None else real_backend(vhost)
    try:
        yield chosen
    finally:
        await chosen.close()
