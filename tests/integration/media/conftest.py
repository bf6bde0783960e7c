"""The media service over the WeChat simulator, on ``memory://`` and on the real Redis.

Every test gets a fresh simulator (its clock stands still unless the test moves it), its own
store (a unique Redis key prefix, removed after; or a memory URL of its own) and its own
directories, so runs can repeat and overlap on the shared Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from libs.common import bus as bus_lib
from libs.common.bus import Bus
from libs.common.bus.memory import MemoryBus
from libs.common.settings import load
from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from services.media.app import create_app
from services.media.settings import MediaSettings
from services.simulator.app import create_app as create_sim
from services.simulator.app import running
from services.simulator.clock import SimClock
from services.simulator.config import DEMO_APPID, DEMO_SECRET, SimConfig
from services.simulator.state import SimState
from tests.integration.media.harness import MakeMedia, Media
from tests.support import rabbit
from tests.support.redis_keys import REDIS_URL, delete_prefixed, unique_prefix


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimState, str]]:
    # Room for media larger than WeChat's 2 MB: downloads big enough to outlast socket buffers.
    config = SimConfig(media_max_bytes=64 * 1024 * 1024)
    state = SimState(config, clock=SimClock(start=1_767_225_600, ticking=False))
    async with running(create_sim(state=state)) as url:
        yield state, url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    prefix = unique_prefix()
    if request.param == "memory":
        url = f"memory://media-test-{uuid.uuid4().hex}"
        yield MemoryStore.shared(url, prefix=prefix)
        MemoryStore.forget(url)
        return
    store = await RedisStore.connect(REDIS_URL, prefix=prefix)
    try:
        yield store
    finally:
        await store.close()
        await delete_prefixed(prefix)


@pytest.fixture
async def make_media(
    sim: tuple[SimState, str], store: Store, tmp_path: Path
) -> AsyncIterator[MakeMedia]:
    """Start the media service with settings ``overrides`` (and a bus for the archive)."""
    state, url = sim
    clients: list[TestClient[Any, Any]] = []

    async def make(bus: Bus | None = None, **overrides: Any) -> Media:
        values = {
            "appid": DEMO_APPID,
            "app_secret": DEMO_SECRET,
            "wechat_api_base": url,
            "media_open": True,  # the API's own behaviour; test_media_auth.py gives a token
        }
        settings = load(MediaSettings, {}, **{**values, **overrides})
        app = create_app(settings, bus=bus, store=store, clock=state.clock.now)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Media(client=client, sim=state, store=store, settings=settings, tmp=tmp_path)

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def media(make_media: MakeMedia) -> Media:
    return await make_media()


@pytest.fixture
async def buses(vhost: str | None) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two clients of one broker: the service's, and the test's (to publish and observe)."""
    opened: list[Bus] = []
    if vhost is None:
        service_bus = MemoryBus.fresh()
        opened = [service_bus, service_bus.client()]
    else:
        url = rabbit.url(vhost)
        opened = [await bus_lib.connect(url), await bus_lib.connect(url)]
    try:
        yield opened[0], opened[1]
    finally:
        for bus in reversed(opened):
            await bus.close()
