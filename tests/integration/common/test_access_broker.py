"""One broker user per service, with libs.common.access's permissions, on the real RabbitMQ:
each declares what it consumes, and does its work (publish, request and answer, consume,
retry); ingress cannot publish a command, the router cannot consume the sender's queues."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq
import pytest

from libs.common.access import OWN_QUEUES, SERVICES, Service, broker_permissions, user_name
from libs.common.bus import BusError, Delivery
from libs.common.bus.amqp import AmqpBus
from libs.common.bus.outcomes import Retry
from libs.common.schemas import DecisionReply, SendText, TextReceived
from libs.common.topology import ROUTER_EVENTS, SENDER_COMMANDS, SENDER_WINDOWS
from tests.support import rabbit
from tests.support.rabbit import HOST, PORT
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def users(rabbit_vhost: str) -> Iterator[dict[Service, str]]:
    """Each service's user on the test's vhost (names of this run), as AMQP URLs."""
    tag = uuid.uuid4().hex[:6]
    urls: dict[Service, str] = {}
    made: list[str] = []
    try:
        for service in SERVICES:
            name, password = f"{user_name(service)}-{tag}", secrets.token_hex(12)
            rabbit.rabbitmqctl("add_user", name, password)
            made.append(name)
            allowed = broker_permissions(service)
            rabbit.rabbitmqctl(
                "set_permissions",
                "-p",
                rabbit_vhost,
                name,
                allowed.configure,
                allowed.write,
                allowed.read,
            )
            urls[service] = f"amqp://{name}:{password}@{HOST}:{PORT}/{quote(rabbit_vhost, safe='')}"
        yield urls
    finally:
        for name in made:
            rabbit.rabbitmqctl("delete_user", name)


@pytest.fixture
async def buses(users: dict[Service, str]) -> AsyncIterator[dict[Service, AmqpBus]]:
    opened: dict[Service, AmqpBus] = {}
    try:
        # The consumers first, as WXKF_BUS_DECLARE=own has each declare its own queues.
        for service in ("router", "sender", "media", "ingress"):
            bus = await AmqpBus.connect(users[service], name=f"wxkf-{service}-test")
            opened[service] = bus
            await bus.declare(OWN_QUEUES[service])
        yield opened
    finally:
        for bus in opened.values():
            await bus.stop_consuming(grace_s=1)
            await bus.close()


def text() -> TextReceived:
    return TextReceived(
        appid="wx1",
        openid=f"o{uuid.uuid4().hex[:27]}",
        correlation_id=uuid.uuid4().hex,
        to_user="gh_1",
        create_time=1_764_037_800,
        msg_id=2**60 + secrets.randbelow(2**40),
        content="hello",
    )


def command() -> SendText:
    return SendText(appid="wx1", openid="o1", correlation_id=uuid.uuid4().hex, content="hi")


async def test_each_service_does_its_work_with_its_own_user(
    buses: dict[Service, AmqpBus],
) -> None:
    seen: list[tuple[str, int]] = []

    async def router(msg: Any, delivery: Delivery) -> None:
        seen.append((msg.id, delivery.attempt))
        if delivery.attempt == 1:
            raise Retry("once, through the retry exchange and a delay queue")
        await delivery.reply(DecisionReply(event_id=msg.id, transfer=True, rule="t"))
        await buses["router"].publish(command())

    commands: list[str] = []

    async def sender(msg: Any, delivery: Delivery) -> None:
        commands.append(msg.id)

    await buses["router"].consume(ROUTER_EVENTS, router)
    await buses["sender"].consume(SENDER_COMMANDS, sender)
    await buses["sender"].consume(SENDER_WINDOWS, sender)
    event = text()
    # Ingress: the event, with a reply address; the router answers after its retry.
    answer = await buses["ingress"].request(event, timeout=30)
    assert answer is not None
    assert [attempt for id_, attempt in seen if id_ == event.id][:2] == [1, 2]
    await eventually(lambda: len(commands) >= 2, what="the window event and the command")
    # The sender's facts go to kf.events (here on a key that some queue of the test binds).
    await buses["sender"].publish(text(), routing_key="msg.text")


async def test_ingress_cannot_publish_a_command(buses: dict[Service, AmqpBus]) -> None:
    with pytest.raises(BusError):
        await buses["ingress"].publish(command())
    # The refusal closes a channel, not the bus: events still go out.
    await buses["ingress"].publish(text())


async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    raise AssertionError("the router took a message of the sender's")


async def test_the_router_cannot_consume_the_senders_queues(
    users: dict[Service, str], buses: dict[Service, AmqpBus]
) -> None:
    # Straight to the broker, past the bus's own declare (which configure alone refuses).
    connection = await aio_pika.connect(users["router"])
    try:
        for spec in (SENDER_COMMANDS, SENDER_WINDOWS):
            channel = await connection.channel()
            queue = await channel.declare_queue(spec.name, passive=True)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue.consume(ignore)
            channel = await connection.channel()
            queue = await channel.declare_queue(spec.name, passive=True)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await queue.get(fail=False)
        # Its own queue it may.
        channel = await connection.channel()
        own = await channel.declare_queue(ROUTER_EVENTS.name, passive=True)
        await own.get(fail=False)
    finally:
        await connection.close()


@pytest.mark.parametrize("service", ["ingress", "router"])
async def test_a_user_cannot_declare_or_delete_another_services_queue(
    users: dict[Service, str], buses: dict[Service, AmqpBus], service: Service
) -> None:
    bus = await AmqpBus.connect(users[service], name=f"wxkf-{service}-declare")
    try:
        with pytest.raises(BusError):
            await bus.declare([SENDER_COMMANDS])
    finally:
        await bus.close()
