"""A memory alarm and a disk alarm on the broker during a burst.

The broker blocks every connection that publishes until the alarm clears. The services'
consuming connections never publish, so they are not blocked and their acks go on; ingress
keeps what the broker cannot take in the spool, within its confirm bound; the block is
logged and measured; once the alarm clears, everything flows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.rig import counts, rig
from tests.support.rabbit_node import RabbitNode
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.faults

ALARM_S = 10.0


@pytest.mark.parametrize("alarm", ["memory", "disk"])
async def test_a_broker_alarm_during_a_burst(
    alarm: str, tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    vhost = broker_url.rsplit("/", 1)[1]
    raise_alarm = broker.memory_alarm if alarm == "memory" else broker.disk_alarm
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        users = system.users(30)
        load = asyncio.create_task(system.burst(users, per_user=5, rate=10))
        await asyncio.sleep(2)
        await asyncio.to_thread(raise_alarm, True)
        try:
            states = await eventually(
                lambda: asyncio.to_thread(broker.connection_states, vhost),
                lambda found: any(s == "blocked" for s in found.values()),
                deadline_s=ALARM_S,
                what="a publishing connection blocked",
            )
            await asyncio.sleep(ALARM_S - 2)
            during = await asyncio.to_thread(broker.connection_states, vhost)
        finally:
            await asyncio.to_thread(raise_alarm, False)
        await load
        report = await system.settled(deadline_s=90)
        counts(
            f"\n{alarm} alarm {ALARM_S:g} s: {report.line()}; connections {sorted(during.items())}"
        )
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.gave_up == 0
        assert report.replies == report.pushes
        # Only publishers were blocked. A consuming connection never publishes, so the broker
        # never stops reading it ("blocking" is what it calls one that has not published
        # since the alarm began): its acks go on.
        consuming = {n: s for n, s in {**states, **during}.items() if n.endswith(".consume")}
        assert consuming
        assert "blocked" not in consuming.values(), consuming
        # The block was heard, logged and counted by the services that publish.
        heard = [s for group in system.services.values() for s in group if s.events("bus.blocked")]
        assert heard, system.log_tail()
        blocked_total = 0.0
        for service in heard:
            if service.alive:
                metrics = await system.metrics(service)
                blocked_total += metrics.get(
                    'wxkf_bus_connection_blocks_total{connection="publish"}', 0
                )
        assert blocked_total >= 1
