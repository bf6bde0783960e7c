"""The broker stopped, restarted, alarmed: every consumer comes back, nothing lost or twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.rig import rig
from tests.support.rabbit_node import RabbitNode
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("outage_s", [3, 30])
async def test_the_broker_stopped_during_a_burst(
    outage_s: float, tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=4, rate=20))
        await asyncio.sleep(2)
        await asyncio.to_thread(broker.stop_app)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(broker.start_app)
        await load
        report = await system.settled(deadline_s=90)
        print(f"\nbroker stopped {outage_s} s: {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        # Redis answered throughout: what the broker could not take waited in the spool.
        assert report.gave_up == 0
        assert report.replies == report.pushes
