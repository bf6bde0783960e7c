"""Sends per second through the sender, beside bare aiohttp calls to the same simulator.

    python bench/bench_sender.py [--sends 3000] [--concurrency 32] [--bus memory://]
                                 [--redis redis://127.0.0.1:6379/0] [--latency-ms 50]

Every row runs in this one process against the same in-process WeChat simulator, at the same
concurrency, for the same number of text messages:

- bare: ``POST /cgi-bin/message/custom/send`` with a valid token from a plain aiohttp loop
  (the ceiling: what the simulator and aiohttp allow on this machine right now);
- sender: commands published on the bus and consumed by the sender app (prefetch = the
  concurrency), with the reply windows, the ledger, the shared rate limit and the access
  token in Redis; timed from the first publish until every ``outbound.sent`` fact arrived;
  once with the global rate limit consulted on every call, once without it.

The first table is the CPU-bound ceiling (the simulator answers at once), where the ratio is
the sender's cost per send; the second has the simulator answer after ``--latency-ms``, as
WeChat does, where the question is whether that cost shows. Each prints the rates, their
ratio to the bare rate (target: at least 0.70) and the sender's cost per send.
Needs Redis (``make services``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aiohttp
import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from libs.common import bus as bus_lib
from libs.common.bus import Bus
from libs.common.observability.logging import configure
from libs.common.schemas import AnyMessage, SendText, Sent, TextReceived
from libs.common.settings import load
from libs.common.store.redis import RedisStore
from libs.common.topology import EVENTS, QueueSpec
from libs.common.wechat.api import SEND_PATH
from services.sender.app import create_app
from services.sender.settings import SenderSettings
from services.simulator import SimClock, SimConfig, SimState, running
from services.simulator import create_app as create_sim
from services.simulator.config import DEMO_APPID, DEMO_GH_ID, DEMO_SECRET
from services.simulator.faults import Fault, FaultRule

USERS = 16
CONTENT = "您好，请问有什么可以帮您？"


async def bare(url: str, token: str, users: list[str], sends: int, concurrency: int) -> float:
    bodies = [
        msgspec.json.encode({"touser": u, "msgtype": "text", "text": {"content": CONTENT}})
        for u in users
    ]
    next_send = iter(range(sends))
    headers = {"Content-Type": "application/json; charset=utf-8"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in next_send:
                async with session.post(
                    url + "/cgi-bin/message/custom/send",
                    params={"access_token": token},
                    data=bodies[i % len(bodies)],
                    headers=headers,
                ) as resp:
                    answer = await resp.read()
                    assert answer.startswith(b'{"errcode":0'), answer

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sends / (time.perf_counter() - start)


async def through_sender(
    url: str,
    sim: SimState,
    users: list[str],
    sends: int,
    concurrency: int,
    bus_url: str,
    redis_url: str,
    *,
    rate_limit: bool = True,
) -> float:
    prefix = f"wxkf-bench:{uuid.uuid4().hex}:"
    store = await RedisStore.connect(redis_url, prefix=prefix)
    # A memory broker of its own per run, so the previous run's queues take no deliveries.
    url_of_run = f"{bus_url}-{uuid.uuid4().hex[:6]}" if bus_url.startswith("memory://") else bus_url
    bus: Bus = await bus_lib.connect(url_of_run)
    settings = load(
        SenderSettings,
        {},
        appid=DEMO_APPID,
        app_secret=DEMO_SECRET,
        wechat_api_base=url,
        window_message_count=10**9,
        prefetch=concurrency,
        http_connections=concurrency,
        # High enough never to hold a call back, but consulted on every one.
        send_rate_per_s=10**6 if rate_limit else 0,
        send_rate_burst=10**6,
    )
    app = create_app(settings, bus=bus, store=store, clock=sim.clock.now)
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: topology, session, consumers
    facts = QueueSpec(
        name=f"bench.facts.{uuid.uuid4().hex[:6]}", exchange=EVENTS, bindings=("outbound.#",)
    )
    await bus.declare([facts])
    sent = 0
    warmed, done = asyncio.Event(), asyncio.Event()

    async def collect(msg: AnyMessage, delivery: object) -> None:
        nonlocal sent
        assert isinstance(msg, Sent), msg
        sent += 1
        if sent == len(users):
            warmed.set()
        if sent == sends + len(users):
            done.set()

    try:
        await bus.consume(facts, collect, prefetch=256)
        for user in users:
            await bus.publish(
                TextReceived(
                    appid=DEMO_APPID,
                    openid=user,
                    correlation_id=uuid.uuid4().hex,
                    to_user=DEMO_GH_ID,
                    create_time=int(sim.now()),
                    msg_id=2**60 + len(user),
                    content="hi",
                )
            )
        # One send per user first: windows recorded, token fetched, connections open.
        await asyncio.gather(*(bus.publish(command(u)) for u in users))
        await warmed.wait()
        commands = [command(users[i % len(users)]) for i in range(sends)]
        start = time.perf_counter()
        for chunk in range(0, sends, 256):
            await asyncio.gather(*(bus.publish(c) for c in commands[chunk : chunk + 256]))
        await done.wait()
        return sends / (time.perf_counter() - start)
    finally:
        await runner.cleanup()
        await bus.close()
        await store.close()
        raw = aioredis.Redis.from_url(redis_url)
        keys = [k async for k in raw.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


def command(user: str) -> SendText:
    return SendText(appid=DEMO_APPID, openid=user, correlation_id=uuid.uuid4().hex, content=CONTENT)


async def table(
    sends: int, concurrency: int, bus_url: str, redis_url: str, latency_ms: float
) -> None:
    state = SimState(SimConfig(window_message_count=10**9), clock=SimClock())
    users = [f"oBenchUser{i:018d}" for i in range(USERS)]
    for user in users:
        state.user_message(user)
    if latency_ms:
        # Every send answered this much later, as WeChat's own answer time would be.
        state.faults.add(
            FaultRule(path=SEND_PATH, rate=1.0, outcomes=[Fault(latency_ms=latency_ms)], seed=1)
        )
    async with running(create_sim(state=state)) as url:
        token = state.token_for_tests()
        await bare(url, token, users, min(sends, 500), concurrency)  # warm up
        base = await bare(url, token, users, sends, concurrency)
        rate = await through_sender(url, state, users, sends, concurrency, bus_url, redis_url)
        unlimited = await through_sender(
            url, state, users, sends, concurrency, bus_url, redis_url, rate_limit=False
        )
    answer = f"WeChat answering in {latency_ms:g} ms" if latency_ms else "no added latency"
    print(f"\n{sends} text messages at concurrency {concurrency}, {answer}")
    print(f"{'':<48} {'sends/s':>9} {'ratio':>7} {'cost/send':>10}")
    print(f"{'bare aiohttp calls to the simulator':<48} {base:9.0f} {1:7.2f}")
    for name, value in (
        ("through the sender", rate),
        ("through the sender, no shared rate limit", unlimited),
    ):
        cost_us = (1 / value - 1 / base) * 1e6
        print(f"{name:<48} {value:9.0f} {value / base:7.2f} {cost_us:8.0f}us")


async def main(
    sends: int, concurrency: int, bus_url: str, redis_url: str, latency_ms: float
) -> None:
    print(f"bus {bus_url}; windows, ledger, rate limit and token in Redis; target ratio 0.70")
    # The ceiling: everything in this process is CPU, so this is the sender's cost per send.
    await table(sends, concurrency, bus_url, redis_url, 0.0)
    # WeChat's answer time: what the sender's overhead costs in throughput in practice.
    if latency_ms:
        await table(max(sends // 3, concurrency), concurrency, bus_url, redis_url, latency_ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bus", default="memory://bench-sender")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="WeChat's answer time (0: skip)"
    )
    args = parser.parse_args()
    with open(os.devnull, "w") as void:
        # As the service logs in production (JSON at info), into the void.
        configure("sender", fmt="json", level="info", stream=void)
        asyncio.run(main(args.sends, args.concurrency, args.bus, args.redis, args.latency_ms))
