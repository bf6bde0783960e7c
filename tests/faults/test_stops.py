"""SIGTERM, as Kubernetes stops a pod: a rolling restart of every service under load.

Each process stops taking work at the signal, finishes what it holds within
``WXKF_SHUTDOWN_GRACE_S`` and exits 0: nothing is abandoned mid-call (no ambiguous fact),
nothing lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.rig import counts, rig
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults

GRACE_S = 10.0  # the rig's WXKF_SHUTDOWN_GRACE_S
START_SLACK_S = 5.0
"""What a stop may take beyond the grace: the HTTP side's drain and closing the clients."""


async def test_a_rolling_restart_of_every_service_under_load(
    tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(
        tmp_path, broker_url=broker_url, store_url=redis_server.url(), api_latency_ms=300
    ) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=6, rate=16))
        drains: dict[str, float] = {}
        for name in ("sender", "router", "ingress"):
            await asyncio.sleep(2)
            if name == "ingress":
                # One port, as a Service has one address: the old one goes, then the new one
                # comes; WeChat resends what found nobody in between.
                _, drains[name] = await system.stop(name)
                await system.start(name)
            else:
                # As a Deployment rolls: the new replica is ready before the old one stops.
                await system.start(name)
                _, drains[name] = await system.stop(name, index=len(system.services[name]) - 2)
        await load
        report = await system.settled(deadline_s=90)
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in drains.items())
        counts(f"\nrolling restart (stopped in {shown}): {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.gave_up == 0
        assert report.ambiguous == 0
        assert report.replies == report.pushes
        assert all(s <= GRACE_S + START_SLACK_S for s in drains.values()), drains
        for name in drains:
            stopped = system.services[name][0 if name != "ingress" else -2]
            assert stopped.events("consumer.abandoned") == [], name
