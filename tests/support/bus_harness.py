"""One harness per backend, so the same behavioural suite runs on ``memory://`` and on a real
RabbitMQ: new bus clients, raw publishes (as a client in another language), queue depths."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aio_pika
import msgspec

from libs.common.bus import Bus, Delivery
from libs.common.bus.amqp import AmqpBus
from libs.common.bus.memory import MemoryBroker, MemoryBus
from libs.common.schemas import AnyMessage, TextReceived
from libs.common.topology import EVENTS, QueueSpec
from tests.support import rabbit
from tests.support.waiting import eventually


class Harness(Protocol):
    kind: str

    async def bus(self, **options: Any) -> Bus: ...
    async def publish_raw(self, exchange: str, routing_key: str, body: bytes) -> None: ...
    async def depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (not delivered to a consumer)."""
        ...

    async def close(self) -> None: ...


async def wait_depth(harness: Harness, queue: str, expected: int) -> None:
    """Wait until ``queue`` holds ``expected`` messages (the broker's figures lag a little)."""
    await eventually(
        lambda: harness.depth(queue), lambda d: d == expected, what=f"{queue} depth {expected}"
    )


class MemoryHarness:
    kind = "memory"

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.buses: list[MemoryBus] = []

    async def bus(self, **options: Any) -> Bus:
        options.pop("consumer_check_s", None)
        bus = MemoryBus(self.broker, **options)
        self.buses.append(bus)
        return bus

    async def publish_raw(self, exchange: str, routing_key: str, body: bytes) -> None:
        self.broker.publish_raw(exchange, routing_key, body)

    async def depth(self, queue: str) -> int:
        return len(self.broker.queues[queue].ready)

    async def close(self) -> None:
        for bus in self.buses:
            await bus.close()


class AmqpHarness:
    kind = "amqp"

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.url = rabbit.url(vhost)
        self.buses: list[AmqpBus] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def bus(self, **options: Any) -> Bus:
        options.setdefault("publish_timeout_s", 5.0)
        url = options.pop("url", self.url)
        bus = await AmqpBus.connect(url, **options)
        self.buses.append(bus)
        return bus

    async def publish_raw(self, exchange: str, routing_key: str, body: bytes) -> None:
        connection = await self._side()
        async with connection.channel(on_return_raises=True) as channel:
            target = await channel.get_exchange(exchange, ensure=False)
            await target.publish(aio_pika.Message(body, delivery_mode=2), routing_key)

    async def depth(self, queue: str) -> int:
        connection = await self._side()
        async with connection.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0

    async def _side(self) -> aio_pika.abc.AbstractConnection:
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.url)
        return self._connection

    async def consumers(self, queue: str) -> int:
        table = await asyncio.to_thread(rabbit.queues, self.vhost)
        return table.get(queue, (0, 0))[1]

    async def close(self) -> None:
        for bus in self.buses:
            await bus.close()
        if self._connection is not None:
            await self._connection.close()


def text(content: str = "hello", **fields: Any) -> TextReceived:
    values: dict[str, Any] = {
        "appid": "wx0000000000000001",
        "openid": "o-user-1",
        "correlation_id": uuid.uuid4().hex,
        "to_user": "gh_0000000000",
        "create_time": 1_700_000_000,
        "msg_id": 2**60 + 1,
        "content": content,
    }
    values.update(fields)
    return TextReceived(**values)


class Seen(msgspec.Struct, frozen=True, kw_only=True):
    msg: AnyMessage
    delivery: Delivery
    at: float


Behaviour = Callable[[AnyMessage, Delivery], Awaitable[None]]


class Recorder:
    """A handler that remembers every delivery, then behaves as told (default: returns)."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.seen: list[Seen] = []
        self.behaviour = behaviour

    async def __call__(self, msg: AnyMessage, delivery: Delivery) -> None:
        self.seen.append(Seen(msg=msg, delivery=delivery, at=time.monotonic()))
        if self.behaviour is not None:
            await self.behaviour(msg, delivery)

    def contents(self) -> list[str]:
        return [s.msg.content for s in self.seen if isinstance(s.msg, TextReceived)]

    async def wait_for(self, count: int) -> list[Seen]:
        await eventually(lambda: len(self.seen), lambda n: n >= count, what=f"{count} deliveries")
        return self.seen


def work_spec(ns: str, **fields: Any) -> QueueSpec:
    """A work queue of this test's own, with short retry delays (0.1 s, doubling)."""
    values: dict[str, Any] = {
        "name": f"{ns}.work",
        "exchange": EVENTS,
        "bindings": (f"{ns}.#",),
        "retry_base_s": 0.1,
        "retry_cap_s": 1.0,
    }
    values.update(fields)
    return QueueSpec(**values)
