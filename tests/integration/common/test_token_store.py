"""The shared access token against the WeChat simulator, on ``memory://`` and the real Redis:
replicas are separate :class:`AccessToken` objects with store connections of their own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from libs.common.settings import Secret
from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from libs.common.wechat.api import UPLOAD_PATH, ApiClient
from libs.common.wechat.apierrors import TokenUnavailable
from libs.common.wechat.token import AccessToken, token_key
from services.simulator.app import create_app as create_sim
from services.simulator.app import running
from services.simulator.clock import SimClock
from services.simulator.config import DEMO_APPID, DEMO_SECRET, SimConfig
from services.simulator.faults import Fault, FaultRule
from services.simulator.state import SimState
from tests.support.redis_keys import REDIS_URL, delete_prefixed, unique_prefix

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

Replica = Callable[..., Awaitable[tuple[AccessToken, Store]]]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimState, str]]:
    state = SimState(SimConfig(), clock=SimClock(start=1_767_225_600, ticking=False))
    async with running(create_sim(state=state)) as url:
        yield state, url


@pytest.fixture
async def api(sim: tuple[SimState, str]) -> AsyncIterator[ApiClient]:
    async with aiohttp.ClientSession() as session:
        yield ApiClient(session, base_url=sim[1], timeout_s=5)


@pytest.fixture(params=["memory", "redis"])
async def replica(
    request: pytest.FixtureRequest, sim: tuple[SimState, str], api: ApiClient
) -> AsyncIterator[Replica]:
    """Makes replicas: each an AccessToken over a store connection of its own (returned too)."""
    prefix = unique_prefix()
    memory_url = f"memory://token-test-{uuid.uuid4().hex}"
    stores: list[Store] = []

    async def make(secret: str = DEMO_SECRET) -> tuple[AccessToken, Store]:
        store: Store
        if request.param == "memory":
            store = MemoryStore.shared(memory_url, prefix=prefix)
        else:
            store = await RedisStore.connect(REDIS_URL, prefix=prefix)
        stores.append(store)
        token = AccessToken(
            api, store, appid=DEMO_APPID, secret=Secret(secret), clock=sim[0].clock.now
        )
        return token, store

    try:
        yield make
    finally:
        for store in stores:
            await store.close()
        if request.param == "memory":
            MemoryStore.forget(memory_url)
        else:
            await delete_prefixed(prefix)


async def upload(token: AccessToken, api: ApiClient) -> str:
    uploaded = await token.call(lambda t: api.upload_media(t, PNG))
    return uploaded.media_id


async def test_replicas_share_one_token_and_refresh_it_once_near_expiry(
    sim: tuple[SimState, str], api: ApiClient, replica: Replica
) -> None:
    state, _ = sim
    (a, _), (b, _) = await replica(), await replica()
    await upload(a, api)
    await upload(b, api)
    assert state.stats.tokens["stable_token"] == 1
    state.clock.advance(7200 - 60)
    await asyncio.gather(*(upload(r, api) for r in (a, b) for _ in range(10)))
    assert state.stats.tokens["stable_token"] == 2
    assert state.stats.tokens["stable_rotated"] == 1
    assert state.stats.total(UPLOAD_PATH, 0) == 22


async def test_a_refused_token_is_forced_once_and_the_call_succeeds(
    sim: tuple[SimState, str], api: ApiClient, replica: Replica
) -> None:
    state, _ = sim
    (a, _), (b, _) = await replica(), await replica()
    await upload(a, api)
    state.faults.add(FaultRule(path=UPLOAD_PATH, sequence=[Fault(errcode=40001)]))
    assert await upload(b, api)
    assert state.stats.tokens["stable_forced"] == 1
    # The other replica adopts the forced token from the store without a call of its own.
    calls = state.stats.tokens["stable_token"]
    await asyncio.gather(*(upload(a, api) for _ in range(5)))
    assert state.stats.tokens["stable_token"] == calls


async def test_a_dead_replicas_lock_expires_and_another_refreshes(
    sim: tuple[SimState, str], api: ApiClient, replica: Replica
) -> None:
    state, _ = sim
    a, store = await replica()
    # A replica took the lock and died before writing a token.
    assert await store.acquire_lock(token_key(DEMO_APPID) + ":lock", "dead", ttl_s=0.5)
    assert await upload(a, api)
    assert state.stats.tokens["stable_token"] == 1


async def test_a_wrong_secret_is_a_permanent_error_that_never_shows_the_secret(
    replica: Replica, api: ApiClient
) -> None:
    wrong = "f" * 32
    token, _ = await replica(secret=wrong)
    with pytest.raises(TokenUnavailable) as info:
        await token.get()
    assert info.value.kind == "permanent"
    assert info.value.errcode == 40001
    assert wrong not in str(info.value)
