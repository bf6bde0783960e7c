"""memory:// and Redis answer random sequences of rate operations identically (the sender's
window rules have their own: tests/integration/sender/test_window_rules.py).

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

from libs.common.store import Store
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
    _, key, now, rate, burst = op
    return await store.rate_acquire(key, rate=rate, burst=burst, now=now)


def history(rng: random.Random, length: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    now = T0
    for _ in range(length):
        now += rng.choice([0.0, 0.0, 0.001, 0.5, 7.0, 30.0, 61.0])
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
