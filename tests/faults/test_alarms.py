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

from libs.common.topology import SENDER_COMMANDS, SENDER_WINDOWS
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


async def test_a_blocked_service_still_acks_what_needs_no_publish(
    tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    """The sender comes back to a backlog during a memory alarm: its first fact blocks its
    publishing connection, and the window events (which publish nothing) are acked all the
    same, on the connection that consumes. On one connection for both, the broker would stop
    reading the acks with the publishes."""
    vhost = broker_url.rsplit("/", 1)[1]
    windows, commands = SENDER_WINDOWS.name, SENDER_COMMANDS.name
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        await system.stop("sender")
        users = system.users(100)
        await system.burst(users, per_user=2, rate=40)
        await eventually(
            lambda: asyncio.to_thread(broker.queues, vhost),
            lambda found: found[windows][0] >= 200 and found[commands][0] >= 200,
            deadline_s=30,
            what="the sender's backlog",
        )
        broker.memory_alarm(True)
        try:
            sender = await system.start("sender")
            drained = await eventually(
                lambda: asyncio.to_thread(broker.queues, vhost),
                lambda found: found[windows][0] == 0,
                deadline_s=ALARM_S,
                what="the window events acked during the alarm",
            )
            states = await asyncio.to_thread(broker.connection_states, vhost)
            # Blocked, the sender is still ready: the broker answers, and it consumes.
            ready = f"http://127.0.0.1:{sender.internal_port}/readyz"
            async with system.http.get(ready) as response:
                readiness = response.status
        finally:
            broker.memory_alarm(False)
        report = await system.settled(deadline_s=90)
        counts(
            f"\nsender back to a backlog in an alarm: window events left {drained[windows][0]}, "
            f"commands left {drained[commands][0]}; {report.line()}"
        )
        publishing = {n: s for n, s in states.items() if n.endswith("wxkf-sender.publish")}
        assert "blocked" in publishing.values(), states
        assert readiness == 200
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.replies == report.pushes
