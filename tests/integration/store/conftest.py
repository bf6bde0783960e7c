"""One store suite, two backends: ``memory://`` and the real Redis on loopback.

Each test gets its own key prefix (Redis) or its own URL (memory), and removes its keys after,
so runs can repeat and overlap on the shared Redis.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from tests.support.redis_sentinel import SentinelGroup

REDIS_URL = os.environ.get("WXKF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

StoreFactory = Callable[[str], Awaitable[Store]]


@pytest.fixture
def prefix() -> str:
    return f"wxkf-test:{uuid.uuid4().hex}:"


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


async def drop_prefix(client: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def raw_redis(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client for looking under the store, and for removing the test's keys after."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """One primary + replica + sentinel for the whole run, never failed over (tests that fail
    a group over make their own)."""
    with SentinelGroup(tmp_path_factory.mktemp("sentinel"), promotable=False) as group:
        yield group


@pytest.fixture(params=["memory", "redis", "sentinel"])
async def make_store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[StoreFactory]:
    """Opens stores on this test's backend; ``make_store("a:")`` gets a sibling prefix.

    ``sentinel`` is Redis reached through Sentinel (``redis+sentinel://``): the same contract
    must hold there, scripts and pipelines included.
    """
    opened: list[Store] = []
    memory_url = f"memory://test-{uuid.uuid4().hex}"
    cleanup: aioredis.Redis | None = None
    url = REDIS_URL
    if request.param == "sentinel":
        group: SentinelGroup = request.getfixturevalue("sentinel_group")
        url = group.url()

    async def make(sub: str = "") -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore.shared(memory_url, prefix=prefix + sub)
        else:
            store = await RedisStore.connect(url, prefix=prefix + sub)
        opened.append(store)
        return store

    if request.param == "redis":
        cleanup = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield make
    finally:
        for store in opened:
            await store.close()
        MemoryStore.forget(memory_url)
        if cleanup is not None:
            await drop_prefix(cleanup, prefix)
            await cleanup.aclose()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store("")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, noted, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


Poll = Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]


@pytest.fixture
def wait_until() -> Poll:
    """Poll a check until it is true; fail with a clear message at the deadline."""

    async def poll(check: Callable[[], Awaitable[bool]]) -> None:
        within = 15.0
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {within}s")
            await asyncio.sleep(0.02)

    return poll
