"""One broker user per service, with libs.common.access's permissions and topic permissions,
on the real RabbitMQ: each declares what it consumes, and does its work (publish, request and
answer, consume, retry); ingress cannot publish a command, nor another service's facts, nor
declare or delete an exchange, and its publishes before any consumer declared the exchanges
fail cleanly; no service publishes facts of another's; the router cannot consume the sender's
queues."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq
import pytest

from libs.common.access import (
    DECLARES_EXCHANGES,
    OWN_QUEUES,
    SERVICES,
    Service,
    broker_permissions,
    topic_permissions,
    user_name,
)
from libs.common.bus import BusError, Delivery, publish_fact
from libs.common.bus.amqp import AmqpBus
from libs.common.bus.outcomes import PublishError, Retry, Unroutable
from libs.common.schemas import DecisionReply, SendText, Sent, TextReceived
from libs.common.topology import COMMANDS, EVENTS, ROUTER_EVENTS, SENDER_COMMANDS, SENDER_WINDOWS
from tests.support import rabbit
from tests.support.rabbit import HOST, PORT
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def make_user(service: Service, vhost: str, made: list[str]) -> str:
    """``service``'s user (a name of this run) with its permissions on ``vhost``: its URL."""
    name, password = f"{user_name(service)}-{uuid.uuid4().hex[:6]}", secrets.token_hex(12)
    rabbit.rabbitmqctl("add_user", name, password)
    made.append(name)
    allowed = broker_permissions(service)
    rabbit.rabbitmqctl(
        "set_permissions", "-p", vhost, name, allowed.configure, allowed.write, allowed.read
    )
    for topic in topic_permissions(service):
        rabbit.rabbitmqctl(
            "set_topic_permissions", "-p", vhost, name, topic.exchange, topic.write, topic.read
        )
    return f"amqp://{name}:{password}@{HOST}:{PORT}/{quote(vhost, safe='')}"


@pytest.fixture(scope="module")
def users(rabbit_vhost: str) -> Iterator[dict[Service, str]]:
    """Each service's user on the test's vhost (names of this run), as AMQP URLs."""
    made: list[str] = []
    try:
        yield {service: make_user(service, rabbit_vhost, made) for service in SERVICES}
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
            if service in DECLARES_EXCHANGES:  # ingress declares nothing
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
    # The sender's facts go to kf.events (nobody binds outbound.* here: unroutable, allowed).
    await publish_fact(buses["sender"], sent())


def sent() -> Sent:
    return Sent(
        appid="wx1",
        openid="o1",
        correlation_id=uuid.uuid4().hex,
        command_id=uuid.uuid4().hex,
        msgtype="text",
    )


async def refused(bus: AmqpBus, msg: Any, **kwargs: Any) -> None:
    """The broker refuses the publish (ACCESS_REFUSED): not unroutable, not any other error."""
    with pytest.raises(PublishError) as caught:
        await bus.publish(msg, **kwargs)
    assert not isinstance(caught.value, Unroutable)
    assert "ACCESS_REFUSED" in str(caught.value), caught.value


async def test_ingress_cannot_publish_a_command(buses: dict[Service, AmqpBus]) -> None:
    await refused(buses["ingress"], command())
    # The refusal closes a channel, not the bus: events still go out.
    await buses["ingress"].publish(text())


FORBIDDEN_FACTS = [
    ("ingress", "outbound.sent.text"),
    ("ingress", "decision.reply"),
    ("ingress", "media.archived"),
    ("ingress", "ext.history"),
    ("router", "msg.text"),
    ("router", "outbound.sent.text"),
    ("sender", "msg.text"),
    ("sender", "event.user_enter_tempsession"),
    ("sender", "media.archived"),
    ("media", "msg.image"),
    ("media", "outbound.sent.text"),
]


@pytest.mark.parametrize(("service", "key"), FORBIDDEN_FACTS)
async def test_a_service_publishes_no_other_services_facts(
    buses: dict[Service, AmqpBus], service: Service, key: str
) -> None:
    await refused(buses[service], text(), routing_key=key)
    # Its own facts still go out.
    own = {"ingress": "msg.text", "router": "decision.reply", "sender": "outbound.sent.text"}
    await publish_fact(buses[service], text(), routing_key=own.get(service, "media.archived"))


async def test_ingress_can_neither_declare_nor_delete_an_exchange(
    users: dict[Service, str], buses: dict[Service, AmqpBus]
) -> None:
    connection = await aio_pika.connect(users["ingress"])
    try:
        for name in (EVENTS, COMMANDS):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await channel.exchange_delete(name)
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    finally:
        await connection.close()
    # Both are still there, in use.
    await buses["router"].publish(command())


async def test_ingress_publishes_fail_cleanly_until_a_consumer_declared_the_exchanges() -> None:
    # rabbitmqctl blocks: in a thread, off the test's event loop.
    vhost = await asyncio.to_thread(rabbit.add_vhost)
    made: list[str] = []
    ingress = router = None
    try:
        user = await asyncio.to_thread(make_user, "ingress", vhost, made)
        ingress = await AmqpBus.connect(user, name="wxkf-ingress-1st")
        # No kf.events yet: the broker closes the channel (404), the bus says so at once.
        with pytest.raises(PublishError) as caught:
            await ingress.publish(text(), confirm_within_s=5)
        assert not isinstance(caught.value, Unroutable)
        assert "NOT_FOUND" in str(caught.value), caught.value
        user = await asyncio.to_thread(make_user, "router", vhost, made)
        router = await AmqpBus.connect(user, name="wxkf-router-2nd")
        await router.declare(OWN_QUEUES["router"])
        # The same bus publishes once the router declared the exchanges and its queue.
        await ingress.publish(text())
    finally:
        for bus in (ingress, router):
            if bus is not None:
                await bus.close()
        for name in made:
            await asyncio.to_thread(rabbit.rabbitmqctl, "delete_user", name)
        await asyncio.to_thread(rabbit.delete_vhost, vhost)


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
