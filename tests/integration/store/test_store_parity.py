"""memory:// and Redis answer random sequences of window and rate operations identically.

The contract suite checks chosen cases; this drives both backends through the same random
histories (seeded, so a failure names its seed) and compares every answer.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from libs.common.store import Grant, Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore

pytestmark = pytest.mark.integration

T0 = 1_750_000_000.0


@pytest.fixture
async def both(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> AsyncIterator[tuple[Store, Store]]:
    redis_store = await RedisStore.connect(redis_url, prefix=prefix)
    yield MemoryStore(prefix=prefix), redis_store
    await redis_store.close()


async def apply(store: Store, op: tuple[Any, ...]) -> object:
    name, key, now, *rest = op
    if name == "grant":
        kind, count, until = rest
        return await store.window_grant(key, Grant(kind=kind, count=count, until=until), now=now)
    if name == "take":
        return await store.window_take(key, now=now)
    if name == "room":
        return await store.window_room(key, now=now)
    if name == "release":
        return await store.window_release(key, rest[0], now=now)
    if name == "close":
        return await store.window_close(key, now=now, reason=rest[0])
    rate, burst = rest
    return await store.rate_acquire(key, rate=rate, burst=burst, now=now)


def history(rng: random.Random, length: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    now = T0
    for _ in range(length):
        now += rng.choice([0.0, 0.0, 0.001, 0.5, 7.0, 30.0, 61.0])
        key = rng.choice(["u1", "u2"])
        pick = rng.random()
        if pick < 0.25:
            kind = rng.choice(["message", "enter"])
            span = 48 * 3600.0 if kind == "message" else 60.0
            # Reuse an earlier start now and then: a redelivered event.
            start = now - rng.choice([0.0, 0.0, 10.0, 100.0])
            ops.append(("grant", key, now, kind, rng.randint(0, 5), start + span))
        elif pick < 0.55:
            ops.append(("take", key, now))
        elif pick < 0.65:
            ops.append(("room", key, now))
        elif pick < 0.8:
            ops.append(("release", key, now, rng.choice(["message", "enter"])))
        elif pick < 0.85:
            ops.append(("close", key, now, rng.choice(["window_expired", "quota_exhausted"])))
        else:
            ops.append(("rate", "r", now, rng.choice([0.5, 2.0, 10.0]), rng.randint(1, 3)))
    return ops


@pytest.mark.parametrize("seed", range(20))
async def test_both_backends_give_the_same_answers(both: tuple[Store, Store], seed: int) -> None:
    memory, redis_store = both
    # A fresh key space per seed: the memory store is new; Redis keys carry the seed.
    tag = f"s{seed}-{uuid.uuid4().hex[:6]}:"
    for step, op in enumerate(history(random.Random(seed), 120)):
        scoped = (op[0], tag + op[1], *op[2:])
        expected = await apply(memory, scoped)
        got = await apply(redis_store, scoped)
        if isinstance(expected, float):
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), (seed, step, op)
        else:
            assert got == expected, (seed, step, op)
