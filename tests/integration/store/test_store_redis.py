"""What only the Redis backend has: failures of the server, its keys, its scripts."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from importlib import resources
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from libs.common.store import StoreError, Write, connect
from libs.common.store.redis import RedisStore, batch_source, describe
from tests.support.scripts import ADD, SEAT

pytestmark = pytest.mark.integration

HANG_GUARD_S = 30.0
"""Only so that a hang fails the test instead of stalling the run; not a speed check."""


@pytest.fixture
async def redis_store(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> AsyncIterator[RedisStore]:
    store = await RedisStore.connect(redis_url, prefix=prefix)
    yield store
    await store.close()


async def test_connect_picks_redis_for_redis_urls(prefix: str, redis_url: str, raw_redis) -> None:
    store = await connect(redis_url, prefix=prefix)
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
    finally:
        await store.close()


async def test_every_key_lives_under_the_prefix(
    redis_store: RedisStore, prefix: str, raw_redis: aioredis.Redis
) -> None:
    now = time.time()
    await redis_store.set("a", b"1")
    await redis_store.set_if_absent("b", b"1", ttl_s=60)
    await redis_store.acquire_lock("c", "me", ttl_s=60)
    await redis_store.run(ADD, "d", 1)
    await redis_store.rate_acquire("e", rate=1, burst=1, now=now)
    keys = sorted([k.decode() async for k in raw_redis.scan_iter(match=prefix + "*")])
    assert keys == [prefix + name for name in "abcde"]


async def test_scripts_are_registered_and_called_by_sha(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    await redis_store.rate_acquire("r", rate=1, burst=1, now=time.time())
    source = resources.files("libs.common.store").joinpath("lua", "rate_acquire.lua").read_bytes()
    sha = hashlib.sha1(source).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
    assert await raw_redis.script_exists(sha) == [True]
    await redis_store.run(ADD, "w", 1)
    owned = hashlib.sha1(ADD.lua.encode()).hexdigest()  # noqa: S324 - as above
    assert await raw_redis.script_exists(owned) == [True]


async def test_claim_steps_are_composed_into_the_batch_script_once(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    await redis_store.claim(Write(key="m", value=b"x"), step=SEAT.on("w", 1))
    await redis_store.claim(Write(key="n", value=b"x"), step=SEAT.on("w", 2))
    composed = batch_source([SEAT]).encode()
    sha = hashlib.sha1(composed).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
    assert await raw_redis.script_exists(sha) == [True]
    assert await redis_store.run(ADD, "w", 0) == 2


async def test_lock_ttl_is_set_in_milliseconds(
    redis_store: RedisStore, prefix: str, raw_redis: aioredis.Redis
) -> None:
    await redis_store.acquire_lock("lock", "me", ttl_s=2.5)
    assert 0 < await raw_redis.pttl(prefix + "lock") <= 2500
    await redis_store.set("tiny", b"v", ttl_s=0.0001)  # rounds up to 1 ms, never to "forever"
    # 1 ms or less left, or already gone (-2); never -1, which would mean "no expiry".
    assert await raw_redis.pttl(prefix + "tiny") in (-2, 0, 1)


async def test_unreachable_redis_is_a_store_error_for_every_call(closed_port: int) -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    store = await RedisStore.connect(url, prefix="wxkf-test:", timeout_s=1.0)
    calls = {
        "ping": store.ping(),
        "get": store.get("k"),
        "set_if_absent": store.set_if_absent("k", b"v", ttl_s=1),
        "release_lock": store.release_lock("k", "me"),
        "seats_add": store.run(ADD, "k", 1),
        "rate_acquire": store.rate_acquire("k", rate=1, burst=1, now=time.time()),
    }
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            for op, call in calls.items():
                with pytest.raises(StoreError) as caught:
                    await call
                message = str(caught.value)
                assert op in message
                assert f"127.0.0.1:{closed_port}" in message
                assert "hunter2" not in message
    finally:
        await store.close()


async def test_a_server_that_never_answers_is_a_store_error() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = await RedisStore.connect(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(StoreError, match="seats_add"):
                await store.run(ADD, "k", 1)
        assert accepted, "the store never reached the silent server"
    finally:
        await store.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/x"])
async def test_a_malformed_url_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        await RedisStore.connect(url)


def test_describe_never_shows_credentials() -> None:
    assert describe("redis://user:secret@cache.internal:6380/2") == "cache.internal:6380/2"
    assert describe("rediss://:secret@cache") == "cache:6379/0"
    assert describe("unix:///run/redis.sock?db=1") == "unix:/run/redis.sock"


class CuttingProxy:
    """A TCP proxy to Redis that can drop every connection it carries, as a failover would,
    or (``cut_on_reply``) drop a connection the moment Redis answers on it, once: the command
    ran, and its answer is lost."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.cut_on_reply = False

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.cut_on_reply and src is up_reader:
                        self.cut_on_reply = False  # once: a resend would get through
                        self.cut()
                        return
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_the_store_reconnects_after_its_connections_are_cut(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    proxy = CuttingProxy(urlsplit(redis_url).port or 6379)
    port = await proxy.start()
    store = await RedisStore.connect(f"redis://127.0.0.1:{port}/0", prefix=prefix, timeout_s=2)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            assert await store.run(ADD, "w", 1) == 1
            proxy.cut()
            # A call written on the cut connection before the client saw the cut fails (it
            # is never resent: it could have run); either way the store reconnects by itself.
            seen: list[int | None] = []
            for _ in range(2):
                try:
                    seen.append(await store.run(ADD, "w", 1))
                except StoreError:
                    seen.append(None)
            assert seen in ([None, 2], [2, 3])
            assert await store.get("missing") is None
    finally:
        await store.close()
        await proxy.close()


async def test_a_call_whose_answer_was_lost_is_not_sent_again(
    prefix: str, redis_url: str, raw_redis: aioredis.Redis
) -> None:
    """Redis ran the take and the connection broke before its answer came: resending it would
    take a second slot that no message ever uses."""
    proxy = CuttingProxy(urlsplit(redis_url).port or 6379)
    port = await proxy.start()
    store = await RedisStore.connect(f"redis://127.0.0.1:{port}/0", prefix=prefix, timeout_s=2)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            assert await store.run(ADD, "w", 1) == 1
            proxy.cut_on_reply = True
            with pytest.raises(StoreError, match="seats_add"):
                await store.run(ADD, "w", 1)
            # It ran exactly once: the lost answer's.
            assert await store.run(ADD, "w", 1) == 3
    finally:
        await store.close()
        await proxy.close()
