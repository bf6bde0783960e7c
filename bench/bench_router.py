"""Decisions per second and decision latency of the router, beside a bare consume-and-ack.

    python bench/bench_router.py [--events 3000] [--prefetch 64] [--backends memory,real]
                                 [--redis redis://127.0.0.1:6379/0]

Three parts, all in this one process and run:

1. The rules engine alone: ``Ruleset.decide`` over a mix of messages and events, with the
   shipped examples/rules.yaml and with a generated file of 1,000 rules (980 keyword rules,
   20 patterns) whose messages match near the end of the list or not at all. Prints
   p50/p99/max per decision and the rate.
   Target: p99 under 1 ms for the shipped rules.
2. The service, per backend (``memory``: the memory bus and store; ``real``: RabbitMQ in a
   vhost of its own, deleted after, and Redis under a key prefix of its own, removed after):
   - baseline: the same events consumed from the router's queue by a handler that does
     nothing, so each is only decoded and acked (the bare cost of the queue);
   - router: the router's handler with the shipped rules (session and plan reads, the
     decision, the plan, the fact, the session write, the commands, done).
   Both start from a full queue at the same prefetch; the rate is events handled per second.
   The router's decision latency (delivery to answer, store reads included) comes from the
   decision facts. The ratio baseline/router says what handling costs beyond the queue;
   the engine's share of it is part 1's mean.
3. The decision RPC as ingress sees it (``Bus.request`` round trips, one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import redis.asyncio as aioredis

from libs.common import bus as bus_lib
from libs.common.bus import Bus, Delivery
from libs.common.bus.memory import MemoryBus
from libs.common.observability.logging import configure
from libs.common.schemas import (
    AnyMessage,
    DecisionMade,
    ImageReceived,
    InboundEvent,
    MiniProgramPageReceived,
    OtherEventReceived,
    SessionEntered,
    TextReceived,
)
from libs.common.store import Store
from libs.common.store.memory import MemoryStore
from libs.common.store.redis import RedisStore
from libs.common.topology import EVENTS, ROUTER_EVENTS, QueueSpec
from services.router.compiler import compile_file, compile_text
from services.router.engine import Ruleset
from services.router.handlers import Router, handle_event
from services.router.rules import Rules
from services.router.sessions import EMPTY, Session
from services.router.settings import SHIPPED_RULES

TEXTS = [
    "你好",
    "转人工",
    "什么时候发货？",
    "尺码怎么选",
    "我要退货",
    "谢谢",
    "ＨＵＭＡＮ please",
    "这个还有货吗，红色的 M 码",
    "👍",
    "order 20261125000123 到哪了",
]


def mix(n: int, users: int = 200) -> list[InboundEvent]:
    """A day's traffic in miniature: mostly texts, some images, cards and chat entries."""
    out: list[InboundEvent] = []
    base = int(time.time())
    for i in range(n):
        common = {
            "appid": "wxbench",
            "openid": f"o-bench-{i % users}",
            "correlation_id": uuid.uuid4().hex,
            "to_user": "gh_bench",
            "create_time": base,
        }
        kind = i % 20
        event: InboundEvent
        if kind < 15:
            event = TextReceived(**common, msg_id=2**60 + i, content=TEXTS[i % len(TEXTS)])
        elif kind < 17:
            event = SessionEntered(**common, session_from="campaign:x" if i % 2 else "")
        elif kind < 18:
            event = ImageReceived(**common, msg_id=2**60 + i, media_id="M")
        elif kind < 19:
            event = MiniProgramPageReceived(
                **common, msg_id=2**60 + i, title="围巾", page_path="pages/goods/1"
            )
        else:
            event = OtherEventReceived(**common, event="debug_demo")
        out.append(event)
    return out


def thousand_rules() -> str:
    """1,000 rules as a large shop might write them: keywords mostly, a few patterns."""
    lines = ["rules:"]
    for i in range(1000):
        if i % 50 == 49:
            lines.append(
                f"  - {{name: r{i}, match: {{text: {{regex: 'sku-{i}-\\d+'}}}}, reply: r}}"
            )
        elif i % 5 == 4:
            lines.append(f"  - {{name: r{i}, match: {{text: [问题{i}, question {i}]}}, reply: r}}")
        else:
            lines.append(
                f"  - {{name: r{i}, match: {{text: {{contains: [关键词{i}号, kw{i}x]}}}}, "
                "reply: r}"
            )
    lines.append("fallback: {reply: 收到}")
    return "\n".join(lines) + "\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- 1. the engine ------------------------------------------------------------------------------


def engine(name: str, rs: Ruleset, events: list[InboundEvent], rounds: int = 3) -> float:
    sessions: list[Session] = [EMPTY, Session(last_day="2999-01-01"), Session(tags=("campaign",))]
    for event in events[:200]:  # warm the candidate index and the regex caches
        rs.decide(event, EMPTY, ts=float(event.create_time))
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        for i, event in enumerate(events):
            session = sessions[i % len(sessions)]
            ts = float(event.create_time)
            t0 = clock()
            rs.decide(event, session, ts=ts)
            samples.append(clock() - t0)
    mean = statistics.fmean(samples)
    print(
        f"  {name:<28} p50 {percentile(samples, 0.5) * 1e6:7.1f} µs   "
        f"p99 {percentile(samples, 0.99) * 1e6:7.1f} µs   max {max(samples) * 1e6:8.1f} µs   "
        f"{1 / mean:>10,.0f} decisions/s"
    )
    return mean


# --- 2. the service -----------------------------------------------------------------------------


class Backend:
    """A bus and a store; ``client()`` opens another bus connection (another process)."""

    def __init__(
        self,
        name: str,
        store: Store,
        client: Callable[[], Awaitable[Bus]],
        cleanup: Callable[[], Awaitable[None]],
    ) -> None:
        self.name, self.store, self._client, self._cleanup = name, store, client, cleanup
        self.buses: list[Bus] = []

    async def client(self) -> Bus:
        bus = await self._client()
        self.buses.append(bus)
        return bus

    async def cleanup(self) -> None:
        for bus in reversed(self.buses):
            await bus.close()
        await self._cleanup()


async def open_backend(name: str, redis_url: str) -> Backend:
    prefix = f"wxkf-bench:{uuid.uuid4().hex}:"
    if name == "memory":
        broker = MemoryBus.fresh()
        url = f"memory://bench-{uuid.uuid4().hex}"
        store = MemoryStore.shared(url, prefix=prefix)

        async def memory_client() -> Bus:
            return broker.client()

        async def cleanup() -> None:
            await broker.close()
            MemoryStore.forget(url)

        return Backend(name, store, memory_client, cleanup)
    vhost = f"wxkf-bench-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"
    redis_store = await RedisStore.connect(redis_url, prefix=prefix)

    async def amqp_client() -> Bus:
        return await bus_lib.connect(amqp_url)

    async def cleanup_real() -> None:
        await redis_store.close()
        client = aioredis.Redis.from_url(redis_url)
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        rabbitmqctl("delete_vhost", vhost)

    return Backend(name, redis_store, amqp_client, cleanup_real)


def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: run `make services`")
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=120)  # noqa: S603


async def drain(
    bus: Bus,
    events: list[InboundEvent],
    handler: Callable[[AnyMessage, Delivery], Awaitable[None]],
    prefetch: int,
) -> float:
    """Fill the router's queue, then time one consumer emptying it; events per second."""
    for event in events:
        await bus.publish(event)
    done = asyncio.Event()
    handled = 0

    async def counted(msg: AnyMessage, delivery: Delivery) -> None:
        nonlocal handled
        await handler(msg, delivery)
        handled += 1
        if handled == len(events):
            done.set()

    start = time.perf_counter()
    await bus.consume(ROUTER_EVENTS, counted, prefetch=prefetch)
    await done.wait()
    elapsed = time.perf_counter() - start
    await bus.stop_consuming()
    return len(events) / elapsed


async def service(name: str, redis_url: str, n: int, prefetch: int, engine_mean_s: float) -> None:
    try:
        backend = await open_backend(name, redis_url)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run
        print(f"  {name}: skipped ({type(exc).__name__}: {exc})")
        return
    try:
        # Like separate processes: the router, the fact collector and the asking ingress
        # each have a connection of their own (stopping one's consumers leaves the others).
        bus, store = await backend.client(), backend.store
        await bus.declare()
        facts: list[DecisionMade] = []
        sink = QueueSpec(
            name=f"bench.facts.{uuid.uuid4().hex[:6]}", exchange=EVENTS, bindings=("decision.#",)
        )
        await bus.declare([sink])

        all_facts = asyncio.Event()

        async def collect(msg: AnyMessage, delivery: Delivery) -> None:
            if isinstance(msg, DecisionMade):
                facts.append(msg)
                if len(facts) >= n:
                    all_facts.set()

        facts_bus = await backend.client()
        await facts_bus.consume(sink, collect, prefetch=256)

        async def nothing(msg: AnyMessage, delivery: Delivery) -> None:
            return None

        baseline = await drain(bus, mix(n), nothing, prefetch)
        router = Router(
            bus=bus,
            store=store,
            rules=await Rules.open(SHIPPED_RULES),
            budget_ms=2000,
            session_ttl_s=3600,
            plan_ttl_s=3600,
        )
        routed = await drain(bus, mix(n), lambda m, d: handle_event(router, m, d), prefetch)
        await all_facts.wait()
        latencies = [f.latency_us for f in facts]
        print(
            f"  {name:<7} baseline consume+ack {baseline:>8,.0f} ev/s ({1e6 / baseline:6.0f} µs/ev)"
            f"   router {routed:>8,.0f} ev/s ({1e6 / routed:6.0f} µs/ev)"
            f"   ratio {routed / baseline:5.2f}"
        )
        if latencies:
            print(
                f"  {'':<7} decision latency in the handler under a full queue (store reads and "
                f"waiting for the loop among {prefetch} in flight): "
                f"p50 {percentile(latencies, 0.5):.0f} µs, p99 {percentile(latencies, 0.99):.0f} µs"
                f"; the rules engine's mean share {engine_mean_s * 1e6:.1f} µs "
                f"= {engine_mean_s * routed * 100:.1f}% of the router's time per event"
            )
        # 3. The RPC as ingress sees it: one request at a time, over the same bus.
        await bus.consume(ROUTER_EVENTS, lambda m, d: handle_event(router, m, d), prefetch=prefetch)
        asker = await backend.client()
        rtts: list[float] = []
        for event in mix(min(n, 500)):
            if not isinstance(event, TextReceived):
                continue
            t0 = time.perf_counter()
            answer = await asker.request(event, timeout=5.0)
            rtts.append(time.perf_counter() - t0)
            assert answer is not None
        await bus.stop_consuming()
        print(
            f"  {'':<7} decision RPC round trip (publish confirmed → answer), one at a time: "
            f"p50 {percentile(rtts, 0.5) * 1e3:.2f} ms, p99 {percentile(rtts, 0.99) * 1e3:.2f} ms"
        )
    finally:
        await backend.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--backends", default="memory,real")
    parser.add_argument(
        "--redis", default=os.environ.get("WXKF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    configure("bench", fmt="console", level="warning")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.events} events")
    print("1. rules engine (Ruleset.decide), same event mix:")
    shipped = compile_file(SHIPPED_RULES)
    events = mix(args.events)
    mean = engine(f"shipped ({len(shipped)} rules)", shipped, events)
    big = compile_text(thousand_rules(), source="1000.yaml")
    worst = [e for e in events if not isinstance(e, TextReceived)] + [
        TextReceived(
            appid="wxbench",
            openid="o",
            correlation_id="c",
            to_user="gh",
            create_time=int(time.time()),
            msg_id=i,
            content=f"请问 KW{990 + i % 8}X 在吗" if i % 3 else "没有规则匹配这句话",
        )
        for i in range(len(events))
    ]
    engine("1,000 rules (late matches)", big, worst)
    print(f"2. service, prefetch {args.prefetch}:")
    for name in args.backends.split(","):
        await service(name.strip(), args.redis, args.events, args.prefetch, mean)


if __name__ == "__main__":
    asyncio.run(main())
