"""Confirmed publishes per second through the bus, beside a bare aio-pika publish loop.

Both publish the same message (same size, persistent, mandatory, publisher confirms on, one
channel) to the same quorum queue at concurrency 1, 16 and 128, alternating runs, so the two
figures come from the same machine at the same moment; the ratio is what the bus costs (the
target: under 10%). Then request/reply round trips per second, a responder consuming a queue
and replying through direct reply-to.

    python bench/bench_bus.py [--seconds 2] [--url amqp://guest:guest@127.0.0.1:5672/]

Everything it declares has a name of its own in the given vhost, and is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import structlog

from libs.common.bus.amqp import AmqpBus
from libs.common.schemas import AnyMessage, DecisionReply, TextReceived, encode
from libs.common.topology import QueueSpec

CONCURRENCY = (1, 16, 128)
RPC_CONCURRENCY = (1, 16)
ROUNDS = 3


def message(i: int) -> TextReceived:
    return TextReceived(
        appid="wx0000000000000001",
        openid="o-bench-user",
        correlation_id=uuid.uuid4().hex,
        to_user="gh_0000000000",
        create_time=1_700_000_000,
        msg_id=i,
        content="你好，我想问一下订单的配送进度" * 2,
    )


class Run:
    """One timed run: operations per second, and client CPU per operation."""

    def __init__(self, ops: int, wall_s: float, cpu_s: float) -> None:
        self.rate = ops / wall_s
        self.cpu_us = cpu_s / max(ops, 1) * 1e6


async def rate(seconds: float, concurrency: int, once: Callable[[int], Awaitable[None]]) -> Run:
    """Calls of ``once`` completed by ``concurrency`` workers in ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < end:
            await once(i)
            done += 1
            i += concurrency

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return Run(done, time.perf_counter() - started, time.process_time() - cpu)


async def main(url: str, seconds: float) -> None:
    run = "bench." + uuid.uuid4().hex[:8]
    exchange = run + ".x"
    spec = QueueSpec(name=run + ".q", exchange=exchange, bindings=("bench.#",), max_attempts=1)
    rpc_spec = QueueSpec(name=run + ".rpc", exchange=exchange, bindings=("rpc.#",), max_attempts=1)

    # The bench prints figures; the bus's info lines would only interleave with them.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    bus = await AmqpBus.connect(url, name="bench-bus")
    responder = await AmqpBus.connect(url, name="bench-responder")
    bare = await aio_pika.connect(url, client_properties={"connection_name": "bench-bare"})
    admin = await aio_pika.connect(url)
    try:
        await bus.declare([spec, rpc_spec])
        channel = await bare.channel(publisher_confirms=True, on_return_raises=True)
        target = await channel.get_exchange(exchange)
        size = len(encode(message(0)))

        async def bare_once(i: int) -> None:
            msg = message(i)
            body = encode(msg)
            await target.publish(
                aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/json",
                    message_id=msg.id,
                    correlation_id=msg.correlation_id,
                    type="msg.text",
                ),
                "bench.msg.text",
                mandatory=True,
            )

        async def bus_once(i: int) -> None:
            await bus.publish(message(i), routing_key="bench.msg.text", exchange=exchange)

        admin_channel = await admin.channel()
        queue = await admin_channel.get_queue(spec.name)
        print(f"bench_bus: confirmed publishes/s to one quorum queue, {size}-byte bodies,")
        print(f"  {seconds:g} s per run, best of {ROUNDS} alternating runs; {url.split('@')[-1]}")
        print("  (client CPU per publish beside: the bus's own cost, free of the broker's noise)")
        print(
            f"  {'concurrency':>11}  {'bare aio-pika':>13}  {'wxkf bus':>9}  {'bus/bare':>8}"
            f"  {'CPU bare':>9}  {'CPU bus':>8}"
        )
        for concurrency in CONCURRENCY:
            bare_runs, bus_runs = [], []
            for _ in range(ROUNDS):
                bare_runs.append(await rate(seconds, concurrency, bare_once))
                await queue.purge()
                bus_runs.append(await rate(seconds, concurrency, bus_once))
                await queue.purge()
            b = max(r.rate for r in bare_runs)
            w = max(r.rate for r in bus_runs)
            cpu_b = statistics.median(r.cpu_us for r in bare_runs)
            cpu_w = statistics.median(r.cpu_us for r in bus_runs)
            print(
                f"  {concurrency:>11}  {b:>13.0f}  {w:>9.0f}  {w / b:>8.2f}"
                f"  {cpu_b:>7.0f}µs  {cpu_w:>6.0f}µs"
            )

        async def reply(msg: AnyMessage, delivery: object) -> None:
            assert hasattr(delivery, "reply")
            await delivery.reply(DecisionReply(event_id=msg.id, transfer=False, rule="bench"))

        await responder.consume(rpc_spec, reply, prefetch=64)
        misses = 0

        async def rpc_once(i: int) -> None:
            nonlocal misses
            got = await bus.request(
                message(i), timeout=5.0, routing_key="rpc.msg.text", exchange=exchange
            )
            misses += got is None

        print("bench_bus: request/reply round trips/s (responder consuming a quorum queue)")
        for concurrency in RPC_CONCURRENCY:
            rates = [(await rate(seconds, concurrency, rpc_once)).rate for _ in range(ROUNDS)]
            print(
                f"  concurrency {concurrency:>3}: {max(rates):>7.0f}/s"
                f" (median {statistics.median(rates):.0f}, {misses} without reply)"
            )
    finally:
        await responder.stop_consuming()
        cleanup = await admin.channel()
        for spec_ in (spec, rpc_spec):
            for name in (spec_.name, spec_.dlq):
                await cleanup.queue_delete(name)
        await cleanup.exchange_delete(exchange)
        for closing in (bus, responder):
            await closing.close()
        await bare.close()
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.seconds))
