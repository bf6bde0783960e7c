"""A Redis database of a test run's own: the services' key prefix is fixed (``wxkf:``), so the
database is what sets runs apart on the shared Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

REDIS = os.environ.get("WXKF_TEST_REDIS_HOST_URL", "redis://127.0.0.1:6379")
_LEASE = "wxkf-test:redis-db-lease:"


@contextlib.asynccontextmanager
async def redis_database() -> AsyncIterator[str]:
    """A Redis database no other run uses now (leased in database 0), emptied of wxkf's keys
    afterwards: the services' key prefix is fixed, so the database is what sets them apart."""
    lease = secrets.token_hex(8)
    admin = aioredis.Redis.from_url(f"{REDIS}/0")
    try:
        # Database 14 is the e2e suites' own (tests/e2e/deployments.py), 0 everyone else's.
        for db in range(13, 0, -1):
            if await admin.set(f"{_LEASE}{db}", lease, nx=True, ex=1800):
                break
        else:
            raise RuntimeError("every Redis database 1-13 is leased by another test run")
        try:
            yield f"{REDIS}/{db}"
        finally:
            data = aioredis.Redis.from_url(f"{REDIS}/{db}")
            try:
                keys = [k async for k in data.scan_iter(match="wxkf:*", count=500)]
                if keys:
                    await data.delete(*keys)
            finally:
                await data.aclose()
            if await admin.get(f"{_LEASE}{db}") == lease.encode():
                await admin.delete(f"{_LEASE}{db}")
    finally:
        await admin.aclose()
