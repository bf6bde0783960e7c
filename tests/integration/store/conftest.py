"""One store suite, two backends: ``memory://`` and the real Redis on loopback.

Each test gets its own key prefix (Redis) or its own URL (memory), and removes its keys after,
so runs can repeat and overlap on the shared Redis.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from tests.support.redis_keys import REDIS_URL, delete_prefixed, unique_prefix
from tests.support.redis_sentinel import SentinelGroup

StoreFactory = Callable[[str], Awaitable[Store]]


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def raw_redis(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client for looking under the store, and for removing the test's keys after."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()
        await delete_prefixed(prefix)


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """One primary + replica + sentinel for the whole run, never failed over (tests that fail
    a group over make their own)."""
    with SentinelGroup(tmp_path_factory.mktemp("sentinel"), promotable=False) as group:
        yield group


@pytest.fixture(params=["memory", "redis", "sentinel"])
def store_url(request: pytest.FixtureRequest) -> str:
    """This test's backend. ``sentinel`` is Redis reached through Sentinel
    (``redis+sentinel://``): the same contract must hold there, scripts and pipelines included.

    A plain fixture on purpose: the Sentinel group starts Redis processes, which an async
    fixture asking for it would wait for on the test's event loop.
    """
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if request.param == "sentinel":
        group: SentinelGroup = request.getfixturevalue("sentinel_group")
        return group.url()
    return REDIS_URL


@pytest.fixture
async def make_store(store_url: str, prefix: str) -> AsyncIterator[StoreFactory]:
    """Opens stores on this test's backend; ``make_store("a:")`` gets a sibling prefix."""
    opened: list[Store] = []

    async def make(sub: str = "") -> Store:
        store: Store
        if store_url.startswith("memory://"):
            store = MemoryStore.shared(store_url, prefix=prefix + sub)
        else:
            store = await RedisStore.connect(store_url, prefix=prefix + sub)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()
        if store_url.startswith("memory://"):
            MemoryStore.forget(store_url)
        elif store_url == REDIS_URL:
            await delete_prefixed(prefix)


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
