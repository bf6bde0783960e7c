"""Keys of a test's own on the shared Redis: a unique prefix, and removing what is under it."""

from __future__ import annotations

import os
import uuid

import redis.asyncio as aioredis

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
