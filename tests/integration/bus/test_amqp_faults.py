"""RabbitMQ only: what crosses the wire, and faults between the bus and the broker — a
connection closed by the server, one cut by a TCP proxy, a broker that is unreachable or
silent, a consumer lost behind aio-pika's back, a poison message that kills its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from structlog.testing import capture_logs

from libs.common.bus import BusError, DeadLetter, PublishError
from libs.common.bus.amqp import AmqpBus
from libs.common.schemas import AnyMessage, DecisionReply, TextReceived, decode_reply
from tests.support import rabbit
from tests.support.bus_harness import (
    AmqpHarness,
    Delivery,
    Recorder,
    text,
    work_spec,
)
from tests.support.metrics import sample
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    made = await TcpProxy(rabbit.HOST, rabbit.PORT).start()
    try:
        yield made
    finally:
        await made.close()


async def proxied_bus(amqp: AmqpHarness, proxy: TcpProxy, **options: float) -> AmqpBus:
    options.setdefault("publish_timeout_s", 1.0)
    options.setdefault("reconnect_interval_s", 0.2)
    options.setdefault("consumer_check_s", 0.5)
    bus = await amqp.bus(url=rabbit.url(amqp.vhost, proxy.port), **options)
    assert isinstance(bus, AmqpBus)
    return bus


async def consumers_of(amqp: AmqpHarness, *queues: str) -> dict[str, int]:
    table = await asyncio.to_thread(rabbit.queues, amqp.vhost)
    return {q: table.get(q, (0, 0))[1] for q in queues}


async def test_messages_carry_the_documented_properties(amqp: AmqpHarness, ns: str) -> None:
    bus = await amqp.bus()
    spec = work_spec(ns)
    await bus.declare([spec])
    msg = text("props")
    await bus.publish(msg, routing_key=f"{ns}.msg.text")
    connection = await aio_pika.connect(amqp.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(spec.name, passive=True)
        got = await eventually(lambda: queue.get(no_ack=True, fail=False), what="the message")
    assert got.message_id == msg.id
    assert got.correlation_id == msg.correlation_id
    assert got.content_type == "application/json"
    assert got.type == "msg.text"
    assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_queues_are_quorum_queues_with_limits_and_at_least_once_dead_lettering(
    amqp: AmqpHarness, ns: str
) -> None:
    bus = await amqp.bus()
    spec = work_spec(ns, max_attempts=3, delivery_limit=7)
    await bus.declare([spec])
    out = await asyncio.to_thread(
        rabbit.rabbitmqctl,
        "list_queues",
        "-p",
        amqp.vhost,
        "--no-table-headers",
        "name",
        "type",
        "durable",
        "arguments",
    )
    rows = {line.split("\t")[0]: line for line in out.splitlines() if line.startswith(ns)}
    assert set(rows) == {spec.name, spec.dlq, *(spec.delay_queue(d) for d in spec.delay_steps())}
    work = rows[spec.name]
    assert "\tquorum\ttrue\t" in work
    for fragment in (
        '{"x-delivery-limit",7}',
        '{"x-dead-letter-strategy","at-least-once"}',
        '{"x-overflow","reject-publish"}',
        '{"x-dead-letter-exchange","kf.dead"}',
    ):
        assert fragment in work
    delay = rows[spec.delay_queue(0.1)]
    assert '{"x-message-ttl",100}' in delay
    assert '{"x-dead-letter-exchange","kf.retry"}' in delay
    assert all("\tquorum\ttrue\t" in row for row in rows.values())


@pytest.mark.parametrize("fault", ["server_closes", "proxy_cuts"])
async def test_after_a_reconnect_no_confirmed_message_is_lost_and_every_consumer_is_back(
    amqp: AmqpHarness, proxy: TcpProxy, ns: str, fault: str
) -> None:
    bus = await proxied_bus(amqp, proxy)
    first = work_spec(ns, name=f"{ns}.first", bindings=(f"{ns}.first.#",))
    second = work_spec(ns, name=f"{ns}.second", bindings=(f"{ns}.second.#",))
    got_first, got_second = Recorder(), Recorder(answer_rpc)
    await bus.consume(first, got_first)
    await bus.consume(second, got_second)
    reconnects = sample("wxkf_bus_reconnects_total")

    confirmed: list[str] = []
    failed = 0
    stop = asyncio.Event()

    async def keep_publishing() -> None:
        nonlocal failed
        i = 0
        while not stop.is_set():
            msg = text(f"p{i}")
            i += 1
            try:
                await bus.publish(msg, routing_key=f"{ns}.first.x")
            except PublishError:
                failed += 1  # not confirmed: it may or may not be there, both are fine
            else:
                confirmed.append(msg.id)

    publisher = asyncio.create_task(keep_publishing())
    await eventually(lambda: len(confirmed), lambda n: n >= 20, what="publishing")
    if fault == "server_closes":
        assert await asyncio.to_thread(rabbit.close_connections, amqp.vhost) >= 1
    else:
        assert proxy.cut() >= 1
    mark = len(confirmed)
    await eventually(lambda: sample("wxkf_bus_reconnects_total"), lambda v: v > reconnects)
    await eventually(lambda: len(confirmed), lambda n: n >= mark + 20, what="publishing again")
    stop.set()
    await publisher

    await eventually(
        lambda: consumers_of(amqp, first.name, second.name),
        lambda seen: seen == {first.name: 1, second.name: 1},
        what="both consumers registered at the broker",
    )
    await eventually(
        lambda: set(confirmed) - {s.msg.id for s in got_first.seen},
        lambda missing: not missing,
        what="every confirmed message delivered",
    )
    # The other queue consumes too, and requests get their replies on the new channel.
    body = await bus.request(text("ask"), timeout=10, routing_key=f"{ns}.second.x")
    assert body is not None
    assert decode_reply(body).rule == "after-reconnect"


async def answer_rpc(msg: AnyMessage, delivery: Delivery) -> None:
    await delivery.reply(DecisionReply(event_id=msg.id, transfer=False, rule="after-reconnect"))


async def test_publishing_while_the_broker_is_unreachable_fails_within_its_bound(
    amqp: AmqpHarness, proxy: TcpProxy, ns: str
) -> None:
    bus = await proxied_bus(amqp, proxy, publish_timeout_s=0.5)
    spec = work_spec(ns)
    recorder = Recorder()
    await bus.consume(spec, recorder)
    proxy.down()
    # The guard is generous; the bus's own bound (0.5 s) is what ends the publish.
    async with asyncio.timeout(30):
        with pytest.raises(PublishError, match=r"within 0\.5s|publish failed"):
            await bus.publish(text("lost"), routing_key=f"{ns}.msg.text")
        with pytest.raises(PublishError, match=r"within 0\.5s"):
            await bus.publish(text("lost"), routing_key=f"{ns}.msg.text")
        with pytest.raises(BusError):
            await bus.ping()
    assert sample("wxkf_bus_publishes_total", exchange="kf.events", outcome="timeout") >= 1

    proxy.up()
    back = text("back")
    await eventually(lambda: publishes(bus, back, f"{ns}.msg.text"), what="publishing again")
    await bus.ping()
    await eventually(lambda: back.id in {s.msg.id for s in recorder.seen}, what="consuming again")


async def test_a_broker_that_stops_answering_fails_the_publish_instead_of_hanging(
    amqp: AmqpHarness, proxy: TcpProxy, ns: str
) -> None:
    bus = await proxied_bus(amqp, proxy, publish_timeout_s=0.5)
    spec = work_spec(ns)
    await bus.declare([spec])
    proxy.blackhole()
    async with asyncio.timeout(30):
        with pytest.raises(PublishError, match=r"not confirmed within 0\.5s"):
            await bus.publish(text("into the void"), routing_key=f"{ns}.msg.text")
    proxy.cut()
    proxy.up()
    await eventually(lambda: publishes(bus, text("back"), f"{ns}.msg.text"), what="publishing")


async def publishes(bus: AmqpBus, msg: TextReceived, key: str) -> bool:
    try:
        await bus.publish(msg, routing_key=key)
    except PublishError:
        return False
    return True


async def test_a_nacked_publish_raises_and_renews_the_publishing_channel(
    amqp: AmqpHarness, ns: str
) -> None:
    bus = await amqp.bus()
    assert isinstance(bus, AmqpBus)
    responder = await amqp.bus()
    spec = work_spec(ns)
    await responder.consume(spec, Recorder(answer_rpc))
    assert await bus.request(text("first"), timeout=10, routing_key=f"{ns}.msg.text")
    # A queue that refuses what it cannot hold: the broker nacks every publish beyond one.
    full = f"{ns}.full"
    connection = await aio_pika.connect(amqp.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            full, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        )
        await queue.bind("kf.events", full)
        await bus.publish(text("fits"), routing_key=full)
        before = await bus.publisher.get_underlay_channel()
        nacks = sample("wxkf_bus_publishes_total", exchange="kf.events", outcome="nack")
        with capture_logs() as logs, pytest.raises(PublishError, match="nacked by the broker"):
            await bus.publish(text("refused"), routing_key=full)
        assert "bus.publisher_renewed" in [line["event"] for line in logs]
        assert sample("wxkf_bus_publishes_total", exchange="kf.events", outcome="nack") == nacks + 1
        await queue.purge()
    # A new channel takes the publishes, the requests and their replies.
    await eventually(
        bus.publisher.get_underlay_channel, lambda now: now is not before, what="a new channel"
    )
    await bus.publish(text("after"), routing_key=f"{ns}.msg.text")
    msg = text("asks")
    body = await bus.request(msg, timeout=10, routing_key=f"{ns}.msg.text")
    assert body is not None
    assert decode_reply(body).event_id == msg.id


async def test_a_consumer_lost_behind_aio_pikas_back_is_started_again(
    amqp: AmqpHarness, ns: str
) -> None:
    bus = await amqp.bus(consumer_check_s=0.2)
    assert isinstance(bus, AmqpBus)
    spec = work_spec(ns)
    recorder = Recorder()
    await bus.consume(spec, recorder)
    tag = bus.consumer_tags()[spec.name]
    # The failure mode: a live channel, the consumer gone, aio-pika none the wiser.
    # The test reaches into the bus on purpose: it breaks what the bus must repair.
    consumer = bus._consumers[0]
    underlay = await consumer.channel.get_underlay_channel()
    await underlay.basic_cancel(tag)
    await eventually(
        lambda: sample("wxkf_bus_consumer_restores_total", queue=spec.name),
        lambda v: v >= 1,
        what="the guard restoring the consumer",
    )
    assert bus.consumer_tags()[spec.name] != tag
    await eventually(lambda: consumers_of(amqp, spec.name), lambda c: c == {spec.name: 1})
    msg = text("still consumed")
    await bus.publish(msg, routing_key=f"{ns}.msg.text")
    (seen,) = await recorder.wait_for(1)
    assert seen.msg.id == msg.id


async def test_a_message_that_kills_its_consumer_is_dead_lettered_and_others_flow(
    amqp: AmqpHarness, proxy: TcpProxy, ns: str
) -> None:
    bus = await proxied_bus(amqp, proxy)
    spec = work_spec(ns, delivery_limit=2)
    crashes = 0

    async def crash_on_poison(msg: AnyMessage, delivery: Delivery) -> None:
        nonlocal crashes
        if isinstance(msg, TextReceived) and msg.content == "poison":
            crashes += 1
            proxy.cut()  # the worker process dies with the message unacked
            await asyncio.Event().wait()

    recorder = Recorder(crash_on_poison)
    # One at a time: a crash also returns every other unacked message, and counts it.
    await bus.consume(spec, recorder, prefetch=1)
    # Published by another process: the consumer's connection is the one that keeps dying.
    publisher = await amqp.bus()
    await publisher.publish(text("poison"), routing_key=f"{ns}.msg.text")
    sent: list[str] = []
    letters: list[DeadLetter] = []
    for i in range(200):
        good = text(f"good{i}")
        await publisher.publish(good, routing_key=f"{ns}.msg.text")
        sent.append(good.id)
        letters = await amqp_dead_letters(amqp, spec.name)
        if letters and len(sent) >= 10:
            break
        await asyncio.sleep(0.05)  # paces the publisher; nothing is asserted on time
    (letter,) = letters
    assert letter.reason == "delivery_limit"
    assert crashes == spec.delivery_limit + 1
    await eventually(
        lambda: set(sent) - {s.msg.id for s in recorder.seen},
        lambda missing: not missing,
        what="every good message consumed",
    )


async def amqp_dead_letters(amqp: AmqpHarness, queue: str) -> list[DeadLetter]:
    # Read through a connection of its own: the proxied one is being cut.
    reader = await AmqpBus.connect(amqp.url)
    try:
        return await reader.dead_letters(queue)
    finally:
        await reader.close()


async def test_stopping_consumers_of_a_closed_bus_does_not_wait_on_the_broker(
    amqp: AmqpHarness, ns: str
) -> None:
    # A service whose bus was closed first (its owner shut down) still runs its consumers'
    # cleanup: that must not ask the closed connection, waiting out a timeout per consumer.
    bus = await amqp.bus(connect_timeout_s=600)
    assert isinstance(bus, AmqpBus)
    await bus.consume(work_spec(ns), Recorder())
    await bus.close()
    async with asyncio.timeout(60):  # a hang guard, far below the 600 s a cancel would wait
        await bus.stop_consuming()
    assert bus.consumer_tags() == {}


async def test_a_broker_that_never_answers_fails_the_connect_and_leaves_nothing_running() -> None:
    # A server that takes the connection and says nothing (a broker stuck at start).
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    before = asyncio.all_tasks()
    try:
        async with asyncio.timeout(30):
            with pytest.raises(BusError, match=r"no answer from .* within 0\.5s"):
                await AmqpBus.connect(
                    f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout_s=0.5
                )
            # Nothing keeps reconnecting behind the error: a command that gave up can end.
            await eventually(lambda: asyncio.all_tasks() - before, lambda t: not t, what="idle")
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
