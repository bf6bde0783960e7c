"""The store and the broker as the clusters they are in production, losing a node mid-run.

Redis: a Sentinel failover to a replica that had fallen behind (it was stopped for a while,
then its primary died): the writes it never got are gone, as with a Redis that forgot. The
services follow the new primary by themselves, and what the store forgot is reported, never
sent twice.

RabbitMQ: three nodes, quorum queues on all three; the node leading the queues dies. The
services, given every node in one URL, reconnect to the survivors by themselves; the queues
elect new leaders and lose nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.rig import counts, rig
from tests.support.rabbit_node import RabbitCluster
from tests.support.redis_sentinel import SentinelGroup
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults


async def test_a_sentinel_failover_to_a_replica_that_had_not_caught_up(
    tmp_path: Path, broker_url: str
) -> None:
    folder = tmp_path / "sentinel"
    folder.mkdir()
    with SentinelGroup(folder, promotable=True) as group:
        async with rig(
            tmp_path, broker_url=broker_url, store_url=group.url(), api_latency_ms=300
        ) as system:
            users = system.users(40)
            load = asyncio.create_task(system.burst(users, per_user=4, rate=16))
            await asyncio.sleep(2)
            lagging = group.replica_port()
            group.pause(lagging)  # the replica stops taking the primary's writes
            await asyncio.sleep(2)
            # The worst moment: the sender dies with the primary, and what it held comes
            # back to a store that never heard of its last two seconds.
            await system.kill("sender")
            group.kill_primary()
            group.resume(lagging)
            new = await asyncio.to_thread(group.failover)
            await system.start("sender")
            await load
            report = await system.settled(deadline_s=120)
            counts(f"\nfailover to a lagging replica ({lagging} → {new}): {report.line()}")
            assert new == lagging
            assert report.problems == [], system.log_tail()
            assert report.pending == 0
            assert report.duplicates == 0
            assert report.gave_up == 0
            assert report.replies + report.ambiguous >= report.pushes


async def test_the_node_leading_the_queues_dies(tmp_path: Path, redis_server: RedisServer) -> None:
    with RabbitCluster.started(tmp_path / "rabbit") as cluster:
        vhost = cluster.add_vhost()
        async with rig(
            tmp_path, broker_url=cluster.url(vhost), store_url=redis_server.url()
        ) as system:
            users = system.users(40)
            load = asyncio.create_task(system.burst(users, per_user=4, rate=16))
            await asyncio.sleep(2)
            leaders = await asyncio.to_thread(cluster.leaders, vhost)
            leader = leaders["wxkf.sender.commands"]
            await asyncio.to_thread(cluster.node_named(leader).kill)
            await load
            report = await system.settled(deadline_s=120)
            after = await asyncio.to_thread(cluster.leaders, vhost)

            now = after["wxkf.sender.commands"]
            counts(f"\n{leader} killed, now led by {now}: {report.line()}")
            assert after["wxkf.sender.commands"] != leader
            assert report.problems == [], cluster.describe(vhost) + system.log_tail()
            assert report.pending == 0
            assert report.duplicates == 0
            assert report.gave_up == 0
            assert report.replies == report.pushes
