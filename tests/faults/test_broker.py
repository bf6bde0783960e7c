"""The broker stopped, and restarted with a backlog: consumers come back, nothing lost or twice.

``rabbitmqctl stop_app`` closes every client connection and refuses new ones until
``start_app``. The services reconnect by themselves and resume consuming (aio-pika's robust
reconnect is known to lose consumers; the bus checks and restores them). While the broker is
away ingress keeps what it cannot publish in the spool, so an outage longer than WeChat's
15 s of resends loses nothing either.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from libs.common.schemas import SendText, Sent
from libs.common.topology import ROUTER_EVENTS, SENDER_COMMANDS, SENDER_WINDOWS
from tests.faults.rig import counts, fact_line, rig
from tests.support.rabbit_node import RabbitNode
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.faults

OUTAGES_S = (3, 30, 60)
BACKLOG = 10_000


async def consumers_back(broker: RabbitNode, vhost: str) -> dict[str, int]:
    """Each work queue's consumers, once every one has at least one again."""

    def count() -> dict[str, int]:
        table = broker.queues(vhost)
        return {q: table.get(q, (0, 0))[1] for q in WORK_QUEUES}

    return await eventually(
        lambda: asyncio.to_thread(count),
        lambda found: all(found.values()),
        deadline_s=60,
        what="every work queue consumed again",
    )


WORK_QUEUES = (ROUTER_EVENTS.name, SENDER_COMMANDS.name, SENDER_WINDOWS.name)


async def test_the_broker_stopped_three_times_during_a_burst(
    tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    vhost = broker_url.rsplit("/", 1)[1]
    async with rig(tmp_path, broker_url=broker_url, store_url=redis_server.url()) as system:
        # Each user writes every 24 s: however late the replies come, no user is owed more
        # than WeChat's 5 replies since their last message.
        users = system.users(120)
        running = sum(OUTAGES_S) + 6 * len(OUTAGES_S)
        load = asyncio.create_task(system.burst(users, per_user=running // 24 + 1, rate=5))
        lines = []
        for outage_s in OUTAGES_S:
            await asyncio.sleep(3)
            before = len(system.tally.pushes)
            await asyncio.to_thread(broker.stop_app)
            await asyncio.sleep(outage_s)
            await asyncio.to_thread(broker.start_app)
            back = await consumers_back(broker, vhost)
            during = list(system.tally.pushes)[before:]
            lines.append(f"stopped {outage_s} s: {len(during)} pushes meanwhile, consumers {back}")
        await load
        report = await system.settled(deadline_s=120)
        counts("\n" + "\n".join(lines) + f"\nbroker stopped thrice: {report.line()}")
        assert report.problems == [], system.log_tail()
        assert report.pending == 0
        # Redis answered throughout: what the broker could not take waited in the spool.
        assert report.gave_up == 0
        assert report.replies == report.pushes, report.refused[:5]
        spooled = 0.0
        for service in system.live("ingress"):
            metrics = await system.metrics(service)
            spooled += sum(v for k, v in metrics.items() if k.startswith("wxkf_ingress_spooled"))
        assert spooled > 0


async def test_the_broker_restarts_with_a_backlog_of_commands(
    tmp_path: Path, broker: RabbitNode, broker_url: str, redis_server: RedisServer
) -> None:
    vhost = broker_url.rsplit("/", 1)[1]
    async with rig(
        tmp_path,
        broker_url=broker_url,
        store_url=redis_server.url(),
        services={"ingress": 1, "router": 1},
    ) as system:
        # A store in use before the backlog was made, as in a deployment: one push first, a
        # second before (times of events are whole seconds, and an event of the second a
        # store began is taken as older than it).
        (warm_up,) = system.users(1)
        assert (await system.push(warm_up, "hello")).ok
        await asyncio.sleep(1.1)
        # Four replies each, one short of WeChat's quota: a reply sent twice would show.
        users = [f"{warm_up}b{n:05d}" for n in range(BACKLOG // 4)]
        now = time.time()
        commands = []
        for openid in users:
            system.sim.user_message(openid, now)
            for n in range(4):
                commands.append(
                    SendText(
                        appid=system.sim.config.appid,
                        openid=openid,
                        correlation_id=openid,
                        cause_id=f"{openid}-{n}",
                        content=f"backlog {openid} {n}",
                        opens="message",
                        opened_at=int(now),
                    )
                )
        # Published as an extension would, confirmed, while no sender runs.
        for start in range(0, len(commands), 500):
            await asyncio.gather(*(system.bus.publish(c) for c in commands[start : start + 500]))
        await eventually(
            lambda: asyncio.to_thread(broker.queues, vhost),
            lambda t: t[SENDER_COMMANDS.name][0] >= BACKLOG,
            what="the backlog queued",
        )

        def delivered() -> int:
            return sum(len(system.sim.inbox(openid)) for openid in users)

        started = time.monotonic()
        # Without the shared send rate (100/s by default), the drain is the sender's own pace.
        await system.start("sender", send_rate_per_s="0")
        # The broker restarts in the middle of the drain: what the sender held comes again.
        await eventually(delivered, lambda n: n >= BACKLOG // 5, deadline_s=120, every_s=0.2)
        await asyncio.to_thread(broker.stop_app)
        await asyncio.to_thread(broker.start_app)
        await consumers_back(broker, vhost)
        causes = {c.cause_id for c in commands}

        def settled() -> int:
            return sum(1 for cause in causes if system.tally.outcomes.get(cause))

        await eventually(settled, lambda n: n == BACKLOG, deadline_s=240, every_s=1.0)
        drained_s = time.monotonic() - started
        per_user = [
            [str(d.body.get("content", "")) for d in system.sim.inbox(openid)] for openid in users
        ]
        twice = sum(len(items) - len(set(items)) for items in per_user)
        counts(
            f"\nbacklog of {BACKLOG}: {delivered()} delivered in {drained_s:.0f} s, {twice} twice"
        )
        assert twice == 0
        odd = [f for c in causes for f in system.tally.outcomes[c] if not isinstance(f, Sent)]
        assert delivered() == BACKLOG, [fact_line(f) for f in odd]
        kinds = {type(f).__name__ for c in causes for f in system.tally.outcomes[c]}
        assert kinds == {"Sent"}
