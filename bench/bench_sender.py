"""Sends per second through the sender, beside bare aiohttp calls to the same simulator.

    python bench/bench_sender.py [--sends 3000] [--concurrency 32] [--rounds 3]
                                 [--bus memory://] [--store redis://127.0.0.1:6379/0]
                                 [--latency-ms 50]

Every row runs in this one process against the same in-process WeChat simulator, at the same
concurrency, for the same number of text messages, on the loop the services run on (uvloop
where it builds, as ``serve()`` picks):

- bare: ``POST /cgi-bin/message/custom/send`` with a valid token from a plain aiohttp loop
  (the ceiling: what the simulator and aiohttp allow on this machine right now);
- sender: the sender app (prefetch = the concurrency) consuming commands that wait in its
  queue, with the reply windows, the ledger, the shared rate limit and the access token in
  Redis; timed from the app's start until every ``outbound.sent`` fact is in the facts queue;
  once with the global rate limit consulted on every call, once without it. The commands are
  queued before the clock starts and the facts are left in their queue, counted (on
  ``memory://``), not consumed: publishing the commands is the router's work and reading the
  facts an extension's, in processes of their own, just as the bare row's request bodies are
  made before its clock starts. A first sender app, stopped before, records the windows and
  fetches the token; the timed one opens its own connections, as each bare round does.

The rows take turns, round after round, so that a noisy neighbour on this shared machine does
not fall on one of them only; each row reports its median round. Besides the rate and its
ratio to the bare rate (target: at least 0.70), each row shows the CPU time this process spent
per send (the simulator's share included, so the bare row is the floor) and, for the sender,
how much more than a bare call that is: the sender's own cost per send (its store calls, its
two bus messages, its bookkeeping).

The first table is the CPU-bound ceiling (the simulator answers at once); the second has the
simulator answer after ``--latency-ms``, as WeChat does, where the question is whether the
sender's cost shows. Needs Redis (``make services``) unless ``--store memory://``, which shows
what the store costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable

import aiohttp
import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from libs.common import bus as bus_lib
from libs.common import store as store_lib
from libs.common.bus import Bus
from libs.common.bus.memory import MemoryBus
from libs.common.observability.logging import configure
from libs.common.runner import run
from libs.common.schemas import AnyMessage, SendText, Sent, TextReceived
from libs.common.settings import load
from libs.common.topology import CORE_QUEUES, EVENTS, QueueSpec
from libs.common.wechat.api import SEND_PATH
from services.sender.app import create_app
from services.sender.settings import SenderSettings
from services.simulator import SimClock, SimConfig, SimState, running
from services.simulator import create_app as create_sim
from services.simulator.config import DEMO_APPID, DEMO_GH_ID, DEMO_SECRET
from services.simulator.faults import Fault, FaultRule

USERS = 16
CONTENT = "您好，请问有什么可以帮您？"


class Round(msgspec.Struct, frozen=True):
    rate: float
    """Sends per second."""
    cpu_us: float
    """CPU time of this process per send, in microseconds."""


def measured(sends: int, wall_s: float, cpu_s: float) -> Round:
    return Round(rate=sends / wall_s, cpu_us=cpu_s / sends * 1e6)


async def bare(url: str, token: str, users: list[str], sends: int, concurrency: int) -> Round:
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

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return measured(sends, time.perf_counter() - start, time.process_time() - cpu)


async def through_sender(
    url: str,
    sim: SimState,
    users: list[str],
    sends: int,
    concurrency: int,
    bus_url: str,
    store_url: str,
    *,
    rate_limit: bool = True,
) -> Round:
    prefix = f"wxkf-bench:{uuid.uuid4().hex}:"
    store = await store_lib.connect(store_url, prefix=prefix)
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
    facts = QueueSpec(
        name=f"bench.facts.{uuid.uuid4().hex[:6]}", exchange=EVENTS, bindings=("outbound.#",)
    )
    await bus.declare([*CORE_QUEUES, facts])
    sent = await FactCounter.on(bus, url_of_run, facts)
    try:
        # A first sender app records the windows, fetches the token into the store and sends
        # one message per user; then it stops.
        warm_up = web.AppRunner(create_app(settings, bus=bus, store=store, clock=sim.clock.now))
        await warm_up.setup()  # runs the cleanup contexts: topology, session, consumers
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
        await asyncio.gather(*(bus.publish(command(u)) for u in users))
        await sent.reach(len(users))
        await warm_up.cleanup()
        # The commands wait in their queue, published as the router would have, and the
        # facts wait in theirs for whoever consumes them: neither is this process's work
        # while it is timed, as neither is the bare row's.
        for i in range(sends):
            await bus.publish(command(users[i % len(users)]))
        runner = web.AppRunner(create_app(settings, bus=bus, store=store, clock=sim.clock.now))
        start, cpu = time.perf_counter(), time.process_time()
        await runner.setup()
        try:
            await sent.reach(len(users) + sends)
            return measured(sends, time.perf_counter() - start, time.process_time() - cpu)
        finally:
            await runner.cleanup()
    finally:
        await sent.close()
        await bus.close()
        await store.close()
        if not store_url.startswith("memory://"):
            raw = aioredis.Redis.from_url(store_url)
            keys = [k async for k in raw.scan_iter(match=prefix + "*", count=500)]
            if keys:
                await raw.delete(*keys)
            await raw.aclose()


class FactCounter:
    """How many facts reached the bench's queue.

    On ``memory://`` the queue's length, polled: nobody consumes the facts, as no extension
    would in the sender's process. On a broker, a consumer on a connection of its own counts
    them (its deliveries then cost this process CPU the bare row does not spend).
    """

    def __init__(self, count: Callable[[], int], bus: Bus | None = None) -> None:
        self._count = count
        self._bus = bus

    @classmethod
    async def on(cls, bus: Bus, bus_url: str, facts: QueueSpec) -> FactCounter:
        if isinstance(bus, MemoryBus):
            broker = bus.broker
            return cls(lambda: broker.depth(facts.name))
        own = await bus_lib.connect(bus_url)
        seen = 0

        async def collect(msg: AnyMessage, delivery: object) -> None:
            nonlocal seen
            assert isinstance(msg, Sent), msg
            seen += 1

        await own.consume(facts, collect, prefetch=256)
        return cls(lambda: seen, own)

    async def reach(self, n: int) -> None:
        # Polled: with nobody consuming there is no event to wait for; a look every 2 ms costs
        # nothing beside the thousands of sends a round takes.
        while self._count() < n:  # noqa: ASYNC110 -- see above
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()


def command(user: str) -> SendText:
    return SendText(appid=DEMO_APPID, openid=user, correlation_id=uuid.uuid4().hex, content=CONTENT)


async def table(
    sends: int, concurrency: int, rounds: int, bus_url: str, store_url: str, latency_ms: float
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
    rows: dict[str, list[Round]] = {
        "bare aiohttp calls to the simulator": [],
        "through the sender": [],
        "through the sender, no shared rate limit": [],
    }
    bare_row, limited, unlimited = rows.values()
    async with running(create_sim(state=state)) as url:
        token = state.token_for_tests()
        await bare(url, token, users, min(sends, 500), concurrency)  # warm up
        args = (url, state, users, sends, concurrency, bus_url, store_url)
        for _ in range(rounds):
            bare_row.append(await bare(url, token, users, sends, concurrency))
            limited.append(await through_sender(*args))
            unlimited.append(await through_sender(*args, rate_limit=False))
    answer = f"WeChat answering in {latency_ms:g} ms" if latency_ms else "no added latency"
    print(
        f"\n{sends} text messages at concurrency {concurrency}, {answer} "
        f"(median of {rounds} interleaved rounds)"
    )
    print(f"{'':<44} {'sends/s':>8} {'ratio':>6} {'CPU/send':>9} {'overhead':>9}   rounds")
    base = statistics.median(r.rate for r in bare_row)
    base_cpu = statistics.median(r.cpu_us for r in bare_row)
    for name, results in rows.items():
        rate = statistics.median(r.rate for r in results)
        cpu = statistics.median(r.cpu_us for r in results)
        overhead = "" if results is bare_row else f"{cpu - base_cpu:7.0f}us"
        each = "/".join(f"{r.rate:.0f}" for r in results)
        print(f"{name:<44} {rate:8.0f} {rate / base:6.2f} {cpu:7.0f}us {overhead:>9}   {each}")


async def main(
    sends: int, concurrency: int, rounds: int, bus_url: str, store_url: str, latency_ms: float
) -> None:
    where = "memory" if store_url.startswith("memory://") else "Redis"
    print(f"bus {bus_url}; windows, ledger, rate limit and token in {where}; target ratio 0.70")
    # The ceiling: everything in this process is CPU, so this is the sender's cost per send.
    await table(sends, concurrency, rounds, bus_url, store_url, 0.0)
    # WeChat's answer time: what the sender's overhead costs in throughput in practice.
    if latency_ms:
        await table(
            max(sends // 3, concurrency), concurrency, rounds, bus_url, store_url, latency_ms
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bus", default="memory://bench-sender")
    parser.add_argument(
        "--store",
        default="redis://127.0.0.1:6379/0",
        help="the sender's store: Redis, or memory:// to see what the store costs",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="WeChat's answer time (0: skip)"
    )
    args = parser.parse_args()
    # As the service logs in production (JSON at info), into the void.
    with open(os.devnull, "w") as void:
        configure("sender", fmt="json", level="info", stream=void)
        run(main(args.sends, args.concurrency, args.rounds, args.bus, args.store, args.latency_ms))
