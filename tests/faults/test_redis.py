"""Redis paused, and Redis restarted without its data, during a run: nothing sent twice.

A pause holds every connection open and answers nothing: calls time out (2 s), pushes are
published without the dedupe claim, and what waits for the store retries. A restart without
data forgets every dedupe mark, plan, ledger entry, window and token: what was in flight at
that moment and comes back after it is reported, never sent twice (docs/operations.md, "What
a fault costs").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.rig import counts, rig
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("pause_s", [2, 15])
async def test_redis_paused_during_a_burst(
    pause_s: float, tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=4, rate=20))
        await asyncio.sleep(2)
        redis_server.pause()
        await asyncio.sleep(pause_s)
        redis_server.resume()
        await load
        report = await system.settled(deadline_s=120)
        counts(f"\nredis paused {pause_s} s: {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.gave_up == 0
        assert report.duplicates == 0


async def test_redis_restarted_without_its_data_during_a_burst(
    tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    async with rig(
        tmp_path, broker_url=broker_url, store_url=redis_server.url(), api_latency_ms=100
    ) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=4, rate=20))
        await asyncio.sleep(3)
        redis_server.restart_empty()
        await load
        report = await system.settled(deadline_s=120)
        counts(f"\nredis restarted empty: {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.duplicates == 0
        assert report.gave_up == 0


@pytest.mark.parametrize("victim", ["sender", "router"])
async def test_redis_loses_its_data_as_a_service_dies_mid_work(
    victim: str, tmp_path: Path, broker_url: str, redis_server: RedisServer
) -> None:
    """The worst moment: work in flight when the store forgets comes back after (redelivered
    to the restarted service). The ledger and the plans cannot say what was done: such work
    is reported, never repeated, and only such work."""
    async with rig(
        tmp_path, broker_url=broker_url, store_url=redis_server.url(), api_latency_ms=300
    ) as system:
        users = system.users(40)
        load = asyncio.create_task(system.burst(users, per_user=4, rate=40))
        await asyncio.sleep(2)
        await system.kill(victim)
        redis_server.restart_empty()
        await system.start(victim)
        await load
        report = await system.settled(deadline_s=120)
        counts(f"\nredis restarted empty as the {victim} died: {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        assert report.duplicates == 0
        assert report.gave_up == 0
        # Reported instead of sent: only what was in the dead process's hands.
        assert report.forgotten <= 64
        assert report.replies + report.ambiguous >= report.pushes
