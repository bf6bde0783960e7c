"""SIGKILL of a service during a burst, then a restart: nothing lost, nothing sent twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.rig import counts, rig
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("victim", ["sender", "router", "ingress"])
async def test_a_killed_service_restarts_and_nothing_is_lost_or_sent_twice(
    victim: str, tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(
        tmp_path, broker_url=broker_url, store_url=redis_server.url(), api_latency_ms=300
    ) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=5, rate=50))
        await asyncio.sleep(1.5)  # into the burst: the kill lands on work in flight
        await system.kill(victim)
        await system.start(victim)
        await load
        report = await system.settled(deadline_s=90)
        counts(f"\nkill {victim}: {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.gave_up == 0
        assert report.replies + report.ambiguous >= report.pushes
