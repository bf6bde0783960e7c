"""``wxkf up``'s users: made on the real broker and Redis, each service working with its own,
a second start giving them new passwords."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from libs.common import store as store_lib
from libs.common.access import DECLARES_EXCHANGES, OWN_QUEUES, SERVICES, user_name
from libs.common.bus import BusError
from libs.common.bus.amqp import AmqpBus
from libs.common.schemas import Sent, TextReceived
from libs.common.store import StoreError
from libs.common.topology import ALL_QUEUES
from services.up.users import provision
from tests.support import rabbit
from tests.support.redis_db import redis_database

pytestmark = pytest.mark.integration


@pytest.fixture
def suffix() -> Iterator[str]:
    tag = f"-{uuid.uuid4().hex[:6]}"
    yield tag
    for service in SERVICES:
        rabbit.rabbitmqctl("delete_user", user_name(service) + tag)


@pytest.fixture
async def store_url(suffix: str) -> AsyncIterator[str]:
    async with redis_database() as url:
        yield url
        admin = aioredis.Redis.from_url(url)
        for service in SERVICES:
            await admin.execute_command("ACL", "DELUSER", user_name(service) + suffix)
        await admin.aclose()


async def ping(url: str) -> None:
    store = await store_lib.connect(url)
    try:
        await store.ping()
    finally:
        await store.close()


async def test_each_service_works_as_its_own_user(
    rabbit_vhost: str, store_url: str, suffix: str
) -> None:
    first = await provision(rabbit.url(rabbit_vhost), store_url, ALL_QUEUES, suffix=suffix)
    urls = await provision(rabbit.url(rabbit_vhost), store_url, ALL_QUEUES, suffix=suffix)
    assert set(urls) == set(SERVICES)
    for service in SERVICES:
        assert urls[service].env()["WXKF_BUS_DECLARE"] == "own"
        if service in DECLARES_EXCHANGES:  # ingress declares nothing
            bus = await AmqpBus.connect(urls[service].bus_url)
            try:
                await bus.declare(OWN_QUEUES[service])
            finally:
                await bus.close()
        await ping(urls[service].store_url)
    # The topology was declared for them: the ingress's events are routed at once.
    ingress = await AmqpBus.connect(urls["ingress"].bus_url)
    try:
        await ingress.publish(
            TextReceived(
                appid="wx1",
                openid="o1",
                correlation_id="c",
                to_user="gh",
                create_time=1,
                msg_id=1,
                content="x",
            )
        )
        # With its topic permissions: no fact of the sender's.
        with pytest.raises(BusError, match="ACCESS_REFUSED"):
            await ingress.publish(
                Sent(appid="wx1", openid="o1", correlation_id="c", command_id="k", msgtype="text")
            )
    finally:
        await ingress.close()
    # A second start changed the passwords: the first ones no longer open anything.
    with pytest.raises(BusError):
        await AmqpBus.connect(first["router"].bus_url, connect_timeout_s=3)
    with pytest.raises(StoreError):
        await ping(first["router"].store_url)
