from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sim_helpers import START, Client

from services.simulator.app import create_app
from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.state import SimState


@pytest.fixture
def config() -> SimConfig:
    return SimConfig()


@pytest.fixture
def clock() -> SimClock:
    return SimClock(start=START, ticking=False)


@pytest.fixture
def state(config: SimConfig, clock: SimClock) -> SimState:
    return SimState(config, clock=clock)


@pytest.fixture
async def client(state: SimState) -> AsyncIterator[Client]:
    async with TestServer(create_app(state=state)) as server, TestClient(server) as c:
        yield c


@pytest.fixture
def token(state: SimState) -> str:
    return state.token_for_tests()
