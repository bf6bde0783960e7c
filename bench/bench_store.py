"""Store throughput: the reply-window and rate-limit scripts beside a bare Redis round trip.

Run: .venv/bin/python bench/bench_store.py [--ops N] [--concurrency C] [--redis URL]

The baseline is redis-py's own GET on the same server, pool size and concurrency, measured in
the same run, so the ratio says what the Lua scripts and the store layer cost on top of the
network round trip that any Redis call pays. The memory backend is printed for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from services.sender import windows
from services.sender.window_rules import Grant

Op = Callable[[int], Awaitable[object]]


async def measure(op: Op, *, ops: int, concurrency: int) -> float:
    """Operations per second for ``ops`` calls spread over ``concurrency`` tasks."""
    per_task = ops // concurrency

    async def worker(w: int) -> None:
        for i in range(per_task):
            await op(w * per_task + i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return per_task * concurrency / (time.perf_counter() - start)


async def store_ops(store: Store, users: int) -> dict[str, Op]:
    now = time.time()
    for u in range(users):
        grant = Grant(kind="message", count=1_000_000, until=now + 3600)
        await windows.grant(store, f"w{u}", grant, now=now)

    async def take(i: int) -> object:
        return await windows.take(store, f"w{i % users}", now=now)

    async def grant(i: int) -> object:
        g = Grant(kind="enter", count=2, until=now + 60 + i)
        return await windows.grant(store, f"w{i % users}", g, now=now)

    async def rate(i: int) -> object:
        return await store.rate_acquire("bucket", rate=1e9, burst=1_000_000, now=now + i * 1e-6)

    async def dedupe(i: int) -> object:
        return await store.set_if_absent(f"d{i}", b"pending", ttl_s=60)

    return {
        "window_take": take,
        "window_grant": grant,
        "rate_acquire": rate,
        "set_if_absent": dedupe,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"wxkf-bench:{uuid.uuid4().hex}:"
    users = 1000

    raw = aioredis.Redis.from_url(args.redis)
    store = await RedisStore.connect(args.redis, prefix=prefix, max_connections=args.concurrency)
    memory = MemoryStore(prefix=prefix)
    try:
        await raw.set(prefix + "baseline", b"x")

        async def bare_get(_: int) -> object:
            return await raw.get(prefix + "baseline")

        await measure(bare_get, ops=2_000, concurrency=args.concurrency)  # warm the pools
        baseline = await measure(bare_get, ops=args.ops, concurrency=args.concurrency)
        print(f"ops={args.ops} concurrency={args.concurrency} redis={args.redis}")
        print(f"{'operation':<16}{'redis ops/s':>14}{'vs bare GET':>14}{'memory ops/s':>16}")
        print(f"{'bare GET':<16}{baseline:>14,.0f}{1.0:>14.2f}{'':>16}")
        redis_ops = await store_ops(store, users)
        memory_ops = await store_ops(memory, users)
        for name, op in redis_ops.items():
            rate = await measure(op, ops=args.ops, concurrency=args.concurrency)
            mem = await measure(memory_ops[name], ops=args.ops, concurrency=args.concurrency)
            print(f"{name:<16}{rate:>14,.0f}{rate / baseline:>14.2f}{mem:>16,.0f}")
        # The machine is shared: a second baseline at the end shows how much it drifted.
        again = await measure(bare_get, ops=args.ops, concurrency=args.concurrency)
        print(f"{'bare GET again':<16}{again:>14,.0f}{again / baseline:>14.2f}{'':>16}")
    finally:
        keys = [k async for k in raw.scan_iter(match=prefix + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await raw.delete(*keys[i : i + 1000])
        await store.close()
        await raw.aclose()


if __name__ == "__main__":
    asyncio.run(main())
