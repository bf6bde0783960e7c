"""One Redis ACL user per service, with libs.common.access's rules, on the real Redis: each does
its own work through the store client (scripts included), and reaches no other key, and no
command beyond those."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from libs.common import store as store_lib
from libs.common.access import SERVICES, Service, store_acl, user_name
from libs.common.store import RateLimit, Store, StoreError, Write
from services.sender import windows
from services.sender.window_rules import Grant
from tests.support.redis_db import redis_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with redis_database() as url:
        yield url


@pytest.fixture
async def users(database: str) -> AsyncIterator[dict[Service, str]]:
    """Each service's ACL user (names of this run) as a store URL."""
    admin = aioredis.Redis.from_url(database)
    tag = uuid.uuid4().hex[:6]
    made: list[str] = []
    urls: dict[Service, str] = {}
    parts = urlsplit(database)
    try:
        for service in SERVICES:
            name, password = f"{user_name(service)}-{tag}", secrets.token_hex(12)
            await admin.execute_command(
                "ACL", "SETUSER", name, "reset", "on", f">{password}", *store_acl(service)
            )
            made.append(name)
            urls[service] = f"redis://{name}:{password}@{parts.netloc}{parts.path}"
        yield urls
    finally:
        for name in made:
            await admin.execute_command("ACL", "DELUSER", name)
        await admin.aclose()


@pytest.fixture
async def stores(users: dict[Service, str]) -> AsyncIterator[dict[Service, Store]]:
    opened = {service: await store_lib.connect(url) for service, url in users.items()}
    try:
        yield opened
    finally:
        for store in opened.values():
            await store.close()


def unique() -> str:
    return uuid.uuid4().hex


async def test_each_service_does_its_own_work(stores: dict[Service, Store]) -> None:
    now = time.time()
    for store in stores.values():
        await store.ping()
    # ingress: the dedupe claim (a script), the signature binding, the spool (streams).
    ingress = stores["ingress"]
    claimed = await ingress.claim(Write(key=f"ingress:push:{unique()}", value=b"p", ttl_s=60))
    assert claimed.ok
    assert await ingress.set_if_absent(f"ingress:signature:{unique()}", b"d", ttl_s=60)
    stream, flag = f"ingress:spool:{unique()}", f"ingress:spool:{unique()}:busy"
    assert await ingress.stream_append(stream, b"e", flag=flag, limit=10)
    [(entry, _)] = await ingress.stream_head(stream, count=10)
    assert await ingress.stream_remove(stream, [entry], flag=flag) == 0
    # router: sessions and plans.
    router = stores["router"]
    await router.set_many([Write(key=f"router:plan:{unique()}", value=b"p", ttl_s=60)])
    await router.set(f"router:session:{unique()}", b"s", ttl_s=60)
    # sender: windows, the rate bucket, the ledger, the shared access token's lock.
    sender = stores["sender"]
    window = f"sender:window:wx1:{unique()}"
    await windows.grant(sender, window, Grant(kind="message", count=5, until=now + 60), now=now)
    assert (await windows.take(sender, window, now=now)).ok
    assert await sender.rate_acquire(f"sender:rate:{unique()}", rate=10, burst=10, now=now) == 0
    claim = await sender.claim(
        Write(key=f"sender:command:{unique()}", value=b"c", ttl_s=60),
        rate=RateLimit(key=f"sender:rate:{unique()}", rate=10, burst=10, now=now),
    )
    assert claim.ok
    token = f"wechat:token:{unique()}"
    assert await sender.acquire_lock(token + ":lock", "me", ttl_s=5)
    assert await sender.release_lock(token + ":lock", "me")
    # media: its records, and the token the sender shares.
    media = stores["media"]
    await media.set(f"media:sha:{unique()}", b"m", ttl_s=60)
    await media.set(token, b"t", ttl_s=60)
    assert await sender.get(token) == b"t"


@pytest.mark.parametrize(
    ("service", "key"),
    [
        ("ingress", "sender:window:wx1:o1"),
        ("ingress", "wechat:token:wx1"),
        ("router", "ingress:push:e1"),
        ("router", "wechat:token:wx1"),
        ("sender", "router:session:o1"),
        ("media", "sender:command:c1"),
    ],
)
async def test_no_service_reaches_the_keys_of_another(
    stores: dict[Service, Store], service: Service, key: str
) -> None:
    with pytest.raises(StoreError):
        await stores[service].get(key)
    with pytest.raises(StoreError):
        await stores[service].set(key, b"x", ttl_s=60)


async def test_only_ingress_may_use_streams(stores: dict[Service, Store]) -> None:
    with pytest.raises(StoreError):
        await stores["router"].stream_append("router:x", b"e", flag="router:x:busy", limit=10)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "command",
    [("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("SCAN", "0")],
)
async def test_no_service_may_run_an_admin_command(
    users: dict[Service, str], service: Service, command: tuple[str, ...]
) -> None:
    client = aioredis.Redis.from_url(users[service])
    try:
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)
    finally:
        await client.aclose()
