"""Claims and set_many calls of one loop turn go to Redis in one script call; each keeps its own
answer or error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from libs.common.store import StoreError, Write
from libs.common.store.pipeline import MAX_BATCH, Batches
from libs.common.store.redis import RedisStore, batch_source
from tests.support.scripts import ADD, SEAT

pytestmark = pytest.mark.integration

HANG_GUARD_S = 30.0
"""Only so that a hang fails the test instead of stalling the run; not a speed check."""


class CountingProxy:
    """A TCP proxy to Redis that counts the connections made through it, and the script
    calls sent."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self.sent = bytearray()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [writer, up_writer]

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
        ) -> None:
            try:
                while data := await src.read(65536):
                    if upstream:
                        self.sent += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, upstream=True), pipe(up_reader, writer, upstream=False)
        )

    @property
    def script_calls(self) -> int:
        return self.sent.count(b"EVALSHA")

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxied(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> AsyncIterator[tuple[RedisStore, CountingProxy]]:
    proxy = CountingProxy(urlsplit(redis_url).port or 6379)
    port = await proxy.start()
    store = await RedisStore.connect(f"redis://127.0.0.1:{port}/0", prefix=prefix)
    yield store, proxy
    await store.close()
    await proxy.close()


async def test_claims_of_one_loop_turn_share_one_script_call(
    proxied: tuple[RedisStore, CountingProxy],
) -> None:
    store, proxy = proxied
    await store.run(ADD, "w", 0)
    assert proxy.connections == 1
    before = proxy.script_calls
    async with asyncio.timeout(HANG_GUARD_S):
        claims = await asyncio.gather(
            *(
                store.claim(Write(key=f"m{i}", value=b"x"), step=SEAT.on("w", 40))
                for i in range(50)
            ),
            store.set_many([Write(key="after", value=b"y")]),
        )
    # Sent one at a time, 51 calls in flight would have needed 51 connections and commands.
    assert proxy.connections == 1
    assert proxy.script_calls - before == 1
    assert claims.pop() is None
    assert await store.get("after") == b"y"
    assert sorted(c.step for c in claims if c.ok and isinstance(c.step, int)) == list(range(1, 41))
    assert {c.step for c in claims if not c.ok} == {"full"}


async def test_a_burst_beyond_one_batch_is_split(
    proxied: tuple[RedisStore, CountingProxy],
) -> None:
    store, proxy = proxied
    writes = [[Write(key=f"k{i}", value=str(i).encode())] for i in range(2 * MAX_BATCH + 5)]
    async with asyncio.timeout(HANG_GUARD_S):
        await asyncio.gather(*(store.set_many(w) for w in writes))
        assert proxy.script_calls == 3
        assert [await store.get(f"k{i}") for i in range(len(writes))] == [
            str(i).encode() for i in range(len(writes))
        ]


async def test_one_failing_call_does_not_fail_its_neighbours(
    redis_store: RedisStore,
) -> None:
    await redis_store.set("plain", b"v")
    async with asyncio.timeout(HANG_GUARD_S):
        good, bad, later, written = await asyncio.gather(
            redis_store.claim(Write(key="a", value=b"x"), step=SEAT.on("w", 5)),
            redis_store.claim(
                Write(key="b", value=b"x"),
                step=SEAT.on("plain", 5),
                also=[Write(key="c", value=b"")],
            ),
            redis_store.claim(Write(key="d", value=b"x"), step=SEAT.on("w", 5), also=[]),
            redis_store.set_many([Write(key="e", value=b"y")]),
            return_exceptions=True,
        )
    assert not isinstance(good, BaseException)
    assert good.ok
    assert isinstance(bad, StoreError)
    assert "claim" in str(bad)
    # The failed claim wrote nothing; the calls after it in the same batch went on.
    assert await redis_store.get("b") is None
    assert await redis_store.get("c") is None
    assert not isinstance(later, BaseException)
    assert later.ok
    assert written is None
    assert await redis_store.get("e") == b"y"


async def test_a_script_the_server_does_not_know_is_loaded_and_run(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    # batch.lua as no server has seen it: its first run meets NOSCRIPT.
    script = client.register_script(batch_source(()) + f"\n-- {uuid.uuid4().hex}\n")
    batched = Batches(client, script, where="test", memory_key="wxkf:test:store:memory")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            answers = await asyncio.gather(
                *(
                    batched.call("set_many", ["set", f"{prefix}n{i}", 1, 0], [b"v"])
                    for i in range(3)
                )
            )
        assert answers == [["ok", 1]] * 3
        assert await raw_redis.get(f"{prefix}n2") == b"v"
        assert await raw_redis.script_exists(script.sha) == [True]
    finally:
        await batched.close()
        await client.aclose()


async def test_unreachable_redis_fails_batched_calls_by_name(closed_port: int) -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    store = await RedisStore.connect(url, prefix="wxkf-test:", timeout_s=1.0)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            for op, call in {
                "claim": store.claim(Write(key="m", value=b"x")),
                "set_many": store.set_many([Write(key="m", value=b"x")]),
            }.items():
                with pytest.raises(StoreError) as caught:
                    await call
                message = str(caught.value)
                assert op in message
                assert f"127.0.0.1:{closed_port}" in message
                assert "hunter2" not in message
    finally:
        await store.close()


async def test_a_server_that_never_answers_fails_the_batch() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = await RedisStore.connect(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            results = await asyncio.gather(
                store.claim(Write(key="a", value=b"x")),
                store.set_many([Write(key="b", value=b"x")]),
                return_exceptions=True,
            )
        assert [type(r) for r in results] == [StoreError, StoreError]
        assert "claim" in str(results[0])
        assert "set_many" in str(results[1])
    finally:
        await store.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def redis_store(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> AsyncIterator[RedisStore]:
    store = await RedisStore.connect(redis_url, prefix=prefix)
    yield store
    await store.close()
