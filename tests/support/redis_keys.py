"""Keys of a test's own on the shared Redis: a unique prefix, removing what is under it, and a
store on either backend under such a prefix."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore

REDIS_URL = os.environ.get("WXKF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    """A key prefix no other test uses: runs repeat and overlap on the shared Redis."""
    return f"wxkf-test:{uuid.uuid4().hex}:"


async def delete_prefixed(prefix: str, url: str = REDIS_URL) -> None:
    """Remove every key under ``prefix`` (the test's own)."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def store_on(backend: str, prefix: str) -> AsyncIterator[Store]:
    """A store on ``memory`` (one of its own) or ``redis`` (the shared server, keys under
    ``prefix``, removed after): the two backends a two-backend fixture runs on."""
    if backend == "memory":
        yield MemoryStore(prefix=prefix)
        return
    opened = await RedisStore.connect(REDIS_URL, prefix=prefix)
    try:
        yield opened
    finally:
        await opened.close()
        await delete_prefixed(prefix)
