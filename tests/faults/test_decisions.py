"""The decision RPC when it breaks: the router dies or stalls while ingress waits for its
answers, and ingress's own connection (which carries the answers) is cut while some are on
their way. Every push is still answered at WeChat's first attempt, within its 5 s:
``success`` when the decision is lost, and the event is handled all the same."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.faults.rig import counts, rig
from tests.support.rabbit_node import RabbitNode
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults


async def test_the_router_stalls_and_dies_while_decisions_are_awaited(
    tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        users = system.users(30)
        load = asyncio.create_task(system.burst(users, per_user=4, rate=15))
        await asyncio.sleep(1.5)
        router = system.live("router")[0]
        router.signal(signal.SIGSTOP)  # holds every decision it took, answers none
        await asyncio.sleep(3)
        router.signal(signal.SIGCONT)
        await asyncio.sleep(0.5)
        await system.kill("router")
        await asyncio.sleep(2)
        await system.start("router")
        results = await load
        report = await system.settled(deadline_s=90)
        slow = [r for r in results if r.attempts > 1]
        counts(f"\nrouter stalled then killed: {report.line()}; {len(slow)} pushes resent")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.replies == report.pushes
        # Answered at WeChat's first attempt: within its 5 s whatever the router did.
        assert slow == []


async def test_ingress_loses_its_connection_while_answers_are_on_their_way(
    tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    vhost = broker_url.rsplit("/", 1)[1]
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        users = system.users(30)
        load = asyncio.create_task(system.burst(users, per_user=4, rate=15))
        cuts = 0
        for _ in range(4):
            await asyncio.sleep(1.5)
            cuts += await asyncio.to_thread(broker.close_connections, vhost, "wxkf-ingress.publish")
        results = await load
        report = await system.settled(deadline_s=90)
        slow = [r for r in results if r.attempts > 1]
        counts(f"\ningress cut {cuts} times: {report.line()}; {len(slow)} pushes resent")
        assert cuts >= 2
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.replies == report.pushes
        assert slow == []
