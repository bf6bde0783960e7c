"""``memory://``: the bus inside one process, with the semantics the services rely on.

A :class:`MemoryBroker` plays RabbitMQ (exchanges, topic and direct routing, queues with a
delivery limit, dead-letter queues); each :class:`MemoryBus` is one client of it, like one
AMQP connection: its own consumers, its own pending requests, its own ``close``. Retries wait
on loop timers instead of delay queues. ``MemoryBus.shared("memory://name")`` attaches to the
one broker of that name in this process, so services started together see each other;
``MemoryBus.fresh()`` gives a test a broker of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import msgspec
import structlog

from libs.common.bus import DeadLetter, Handler, metrics
from libs.common.bus import delivery as dl
from libs.common.bus.outcomes import BusError, PublishError, Unroutable
from libs.common.bus.topic import matches
from libs.common.schemas import BusMessage, encode
from libs.common.topology import (
    COMMANDS,
    CORE_QUEUES,
    DEAD,
    EVENTS,
    RETRY,
    QueueSpec,
    check_queue_spec,
    exchange_for,
)

log = structlog.get_logger(__name__)

ExchangeType = Literal["topic", "direct"]


class _Message(msgspec.Struct, frozen=True, kw_only=True):
    body: bytes
    routing_key: str
    headers: dict[str, Any]
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    returns: int = 0
    """How often a consumer let it go unsettled (RabbitMQ's delivery count)."""


class _Queue:
    __slots__ = ("consumers", "delivery_limit", "max_length", "name", "ready", "turn")

    def __init__(self, name: str, delivery_limit: int | None) -> None:
        self.name = name
        self.delivery_limit = delivery_limit
        self.max_length: int | None = None
        self.ready: deque[_Message] = deque()
        self.consumers: list[_Consumer] = []
        self.turn = 0


class MemoryBroker:
    """The state a RabbitMQ would hold: shared by every client of one ``memory://`` URL."""

    def __init__(self) -> None:
        self.exchanges: dict[str, ExchangeType] = {}
        self.bindings: dict[str, list[tuple[str, str]]] = {}
        self.queues: dict[str, _Queue] = {}
        self.replies: dict[str, MemoryBus] = {}
        self._routes: dict[tuple[str, str], tuple[str, ...]] = {}
        """The queues each exchange and routing key reach, worked out on first use: a
        publish would otherwise match the key against every binding of its exchange."""

    # -- topology -------------------------------------------------------------------------------

    def declare_exchange(self, name: str, kind: ExchangeType) -> None:
        existing = self.exchanges.setdefault(name, kind)
        if existing != kind:
            raise BusError(f"exchange {name!r} exists as {existing}, cannot declare it {kind}")
        self.bindings.setdefault(name, [])

    def declare_queue(self, name: str, delivery_limit: int | None) -> _Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = _Queue(name, delivery_limit)
        elif queue.delivery_limit != delivery_limit:
            raise BusError(
                f"queue {name!r} exists with delivery limit {queue.delivery_limit}, "
                f"cannot redeclare it with {delivery_limit}"
            )
        return queue

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        bindings = self.bindings[exchange]
        if (pattern, queue) not in bindings:
            bindings.append((pattern, queue))
            self._routes.clear()

    # -- routing --------------------------------------------------------------------------------

    def route(self, exchange: str, message: _Message) -> None:
        kind = self.exchanges.get(exchange)
        if kind is None:
            raise PublishError(f"no exchange {exchange!r}: declare the topology first")
        key = message.routing_key
        targets = self._routes.get((exchange, key))
        if targets is None:
            bound = {
                queue
                for pattern, queue in self.bindings[exchange]
                if (matches(pattern, key) if kind == "topic" else pattern == key)
            }
            targets = self._routes[exchange, key] = tuple(sorted(bound))
        if not targets:
            raise Unroutable(f"unroutable: no queue bound to {exchange!r} matches {key!r}")
        for name in targets:
            queue = self.queues[name]
            queue.ready.append(message)
            self.pump(queue)
            self._overflow(queue)

    def _overflow(self, queue: _Queue) -> None:
        """Drop the oldest beyond the queue's bound, dead-lettered as RabbitMQ does (``maxlen``;
        a dead-letter queue drops them for good)."""
        while queue.max_length is not None and len(queue.ready) > queue.max_length:
            dropped = queue.ready.popleft()
            if queue.name.endswith(".dlq"):
                continue
            headers = dl.dead_headers(dropped.headers, dropped.routing_key, "maxlen")
            self.route(
                DEAD, msgspec.structs.replace(dropped, routing_key=queue.name, headers=headers)
            )

    def pump(self, queue: _Queue) -> None:
        """Hand ready messages to consumers with room, round robin."""
        while queue.ready:
            ready = [c for c in queue.consumers if c.has_room()]
            if not ready:
                return
            consumer = ready[queue.turn % len(ready)]
            queue.turn += 1
            consumer.start(queue.ready.popleft())

    def depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` for a consumer (none when it is not declared)."""
        found = self.queues.get(queue)
        return 0 if found is None else len(found.ready)

    def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish bytes as a client in another language would: no schema, no checks."""
        self.route(
            exchange, _Message(body=body, routing_key=routing_key, headers=dict(headers or {}))
        )

    def give_back(self, queue: _Queue, message: _Message) -> None:
        """A consumer let a message go unsettled: redeliver it, or dead-letter at the limit."""
        returned = msgspec.structs.replace(message, returns=message.returns + 1)
        if queue.delivery_limit is not None and returned.returns > queue.delivery_limit:
            headers = dl.dead_headers(returned.headers, returned.routing_key, "delivery_limit")
            self.route(
                DEAD, msgspec.structs.replace(returned, routing_key=queue.name, headers=headers)
            )
            metrics.DELIVERIES.labels(queue.name, "dead_letter").inc()
            return
        queue.ready.appendleft(returned)
        self.pump(queue)


class _Consumer:
    __slots__ = ("active", "bus", "handler", "inflight", "prefetch", "queue", "spec")

    def __init__(
        self, bus: MemoryBus, queue: _Queue, spec: QueueSpec, handler: Handler, prefetch: int
    ) -> None:
        self.bus = bus
        self.queue = queue
        self.spec = spec
        self.handler = handler
        self.prefetch = prefetch
        self.active = True
        self.inflight: set[asyncio.Task[None]] = set()

    def has_room(self) -> bool:
        return self.active and len(self.inflight) < self.prefetch

    def start(self, message: _Message) -> None:
        task = asyncio.get_running_loop().create_task(self._run(message))
        self.inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.bus.broker.pump(self.queue)

    async def _run(self, message: _Message) -> None:
        delivery = dl.Delivery(
            attempt=dl.attempt_of(message.headers),
            max_attempts=self.spec.max_attempts,
            reply_to=message.reply_to,
            redelivered=message.returns > 0,
            headers=dict(message.headers),  # each queue's copy is its own, as on a broker
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            replier=self.bus.send_reply,
        )
        try:
            verdict = await dl.handle(self.spec, self.handler, message.body, delivery)
        except asyncio.CancelledError:
            metrics.DELIVERIES.labels(self.spec.name, "requeue").inc()
            self.bus.broker.give_back(self.queue, message)
            raise
        self._settle(message, verdict)

    def _settle(self, message: _Message, verdict: dl.Verdict) -> None:
        # Synchronous on purpose: nothing can cancel a settle halfway.
        spec, broker = self.spec, self.bus.broker
        metrics.DELIVERIES.labels(spec.name, verdict.outcome).inc()
        if verdict.outcome == "ack":
            return
        if verdict.outcome == "retry":
            headers = dl.retry_headers(
                message.headers, message.routing_key, repeat=verdict.repeat, note=verdict.note
            )
            again = msgspec.structs.replace(
                message, routing_key=spec.name, headers=headers, returns=0
            )
            loop = asyncio.get_running_loop()
            loop.call_later(verdict.delay_s, _route_later, broker, again)
            return
        headers = dl.dead_headers(message.headers, message.routing_key, verdict.reason)
        dead = msgspec.structs.replace(message, routing_key=spec.name, headers=headers)
        broker.route(DEAD, dead)


def _checked(queues: Iterable[QueueSpec]) -> list[QueueSpec]:
    specs = list(queues)
    for spec in specs:
        try:
            check_queue_spec(spec)
        except ValueError as exc:
            raise BusError(str(exc)) from None
    return specs


def _route_later(broker: MemoryBroker, message: _Message) -> None:
    try:
        broker.route(RETRY, message)
    except PublishError:
        log.error("retry.unroutable", queue=message.routing_key)


_CONNECTION_OPTIONS = frozenset(
    {"connect_timeout_s", "reconnect_interval_s", "consumer_check_s", "name"}
)


class MemoryBus:
    """One client of a :class:`MemoryBroker`: what ``connect("memory://...")`` returns."""

    _shared: ClassVar[dict[str, MemoryBroker]] = {}
    _ids = itertools.count(1)

    def __init__(self, broker: MemoryBroker, *, publish_timeout_s: float = 5.0) -> None:
        self.broker = broker
        self.publish_timeout_s = publish_timeout_s
        self._closed = False
        self._consumers: list[_Consumer] = []
        self._reply_address = f"memory.reply.{next(self._ids)}"
        self._pending = dl.PendingReplies()

    @classmethod
    def shared(cls, url: str = "memory://", **options: Any) -> MemoryBus:
        """A client of the one broker named by ``url`` in this process.

        Takes the options ``AmqpBus.connect`` takes, so one ``connect(url, **options)`` serves
        both; those about a network connection mean nothing here.
        """
        unknown = set(options) - {"publish_timeout_s", *_CONNECTION_OPTIONS}
        if unknown:
            raise TypeError(f"unknown bus options: {', '.join(sorted(unknown))}")
        broker = cls._shared.setdefault(url, MemoryBroker())
        return cls(broker, publish_timeout_s=options.get("publish_timeout_s", 5.0))

    @classmethod
    def fresh(cls, **options: Any) -> MemoryBus:
        """A client of a new broker of its own (tests)."""
        return cls(MemoryBroker(), **options)

    def client(self) -> MemoryBus:
        """Another client of the same broker: a second process, as far as the bus goes."""
        return MemoryBus(self.broker, publish_timeout_s=self.publish_timeout_s)

    # -- topology -------------------------------------------------------------------------------

    async def declare(self, queues: Iterable[QueueSpec] = CORE_QUEUES) -> None:
        self._check_open()
        specs = _checked(queues)
        b = self.broker
        for name in (EVENTS, COMMANDS):
            b.declare_exchange(name, "topic")
        b.declare_exchange(RETRY, "direct")
        b.declare_exchange(DEAD, "direct")
        for spec in specs:
            b.declare_exchange(spec.exchange, "topic")
            b.declare_queue(spec.name, spec.delivery_limit).max_length = spec.max_length
            b.declare_queue(spec.dlq, None).max_length = spec.max_length
            for pattern in spec.bindings:
                b.bind(spec.name, spec.exchange, pattern)
            b.bind(spec.name, RETRY, spec.name)
            b.bind(spec.dlq, DEAD, spec.name)

    # -- publishing -----------------------------------------------------------------------------

    async def publish(
        self,
        msg: BusMessage,
        *,
        routing_key: str | None = None,
        exchange: str | None = None,
        repeat: bool = False,
        confirm_within_s: float | None = None,
    ) -> None:
        # A publish here is confirmed the moment it is routed: no bound to apply.
        self._publish(msg, routing_key=routing_key, exchange=exchange, reply_to=None, repeat=repeat)

    def _publish(
        self,
        msg: BusMessage,
        *,
        routing_key: str | None,
        exchange: str | None,
        reply_to: str | None,
        repeat: bool,
    ) -> None:
        exchange = exchange_for(msg) if exchange is None else exchange
        message = _Message(
            body=encode(msg),
            routing_key=msg.routing_key() if routing_key is None else routing_key,
            headers=dl.publish_headers(repeat) or {},
            message_id=msg.id,
            correlation_id=msg.correlation_id,
            reply_to=reply_to,
        )
        started = time.perf_counter()
        try:
            if self._closed:
                raise PublishError("bus closed")
            self.broker.route(exchange, message)
        except PublishError as exc:
            outcome = "unroutable" if isinstance(exc, Unroutable) else "error"
            metrics.PUBLISHES.labels(exchange, outcome).inc()
            raise
        metrics.PUBLISHES.labels(exchange, "ok").inc()
        metrics.PUBLISH_SECONDS.labels(exchange).observe(time.perf_counter() - started)

    async def request(
        self,
        msg: BusMessage,
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline of the reply only, as the protocol says
        routing_key: str | None = None,
        exchange: str | None = None,
        repeat: bool = False,
        confirm_within_s: float | None = None,
    ) -> bytes | None:
        async def send() -> None:
            self.broker.replies[self._reply_address] = self
            self._publish(
                msg,
                routing_key=routing_key,
                exchange=exchange,
                reply_to=self._reply_address,
                repeat=repeat,
            )

        return await self._pending.wait(msg, send, timeout_s=timeout)

    async def send_reply(
        self,
        reply_to: str,
        body: bytes,
        headers: Mapping[str, Any],
        correlation_id: str | None,
    ) -> None:
        """Deliver a reply to the client that asked; dropped (and counted) when nobody waits."""
        requester = self.broker.replies.get(reply_to)
        if requester is None:
            metrics.RPC_LATE_REPLIES.inc()
            log.info("rpc.late_reply")
            return
        requester._pending.resolve(body, headers, correlation_id)

    # -- consuming ------------------------------------------------------------------------------

    async def consume(self, spec: QueueSpec, handler: Handler, *, prefetch: int = 32) -> None:
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        await self.declare([spec])
        queue = self.broker.queues[spec.name]
        consumer = _Consumer(self, queue, spec, handler, prefetch)
        self._consumers.append(consumer)
        queue.consumers.append(consumer)
        self.broker.pump(queue)

    async def stop_consuming(self, *, grace_s: float | None = None) -> None:
        for consumer in self._consumers:
            consumer.active = False
            if consumer in consumer.queue.consumers:
                consumer.queue.consumers.remove(consumer)
        inflight = [t for c in self._consumers for t in c.inflight]
        await dl.finish(inflight, grace_s)
        self._consumers.clear()

    # -- dead letters ---------------------------------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        dlq = self._dlq(queue)
        return [
            dl.dead_letter(queue, msg.headers, msg.routing_key, msg.body)
            for msg in itertools.islice(dlq.ready, max(limit, 0))
        ]

    async def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        self._check_open()
        dlq = self._dlq(queue)
        count = len(dlq.ready) if limit is None else min(max(limit, 0), len(dlq.ready))
        for _ in range(count):
            message = dlq.ready.popleft()
            letter = dl.dead_letter(queue, message.headers, message.routing_key, message.body)
            headers = dl.replay_headers(message.headers, letter.routing_key)
            try:
                self.broker.route(RETRY, msgspec.structs.replace(message, headers=headers))
            except PublishError:
                dlq.ready.appendleft(message)
                raise
        return count

    async def dead_letter_count(self, queue: str) -> int:
        self._check_open()
        return len(self._dlq(queue).ready)

    async def drop_dead_letters(self, queue: str) -> int:
        self._check_open()
        dlq = self._dlq(queue)
        dropped = len(dlq.ready)
        dlq.ready.clear()
        return dropped

    async def purge(self, spec: QueueSpec) -> int:
        # Retries wait on timers here, not in delay queues: only what is ready can go.
        self._check_open()
        purged = 0
        for name in (spec.name, spec.dlq):
            found = self.broker.queues.get(name)
            if found is not None:
                purged += len(found.ready)
                found.ready.clear()
        return purged

    def _dlq(self, queue: str) -> _Queue:
        dlq = self.broker.queues.get(queue + ".dlq")
        if dlq is None:
            raise BusError(f"no dead-letter queue {queue + '.dlq'!r}: is {queue!r} declared?")
        return dlq

    # -- lifetime -------------------------------------------------------------------------------

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        inflight = [t for c in self._consumers for t in c.inflight]
        for consumer in self._consumers:
            consumer.active = False
            if consumer in consumer.queue.consumers:
                consumer.queue.consumers.remove(consumer)
        # Like a dropped connection: what was not settled goes back to its queue.
        for task in inflight:
            task.cancel()
        if inflight:
            await asyncio.wait(inflight)
        self._consumers.clear()
        self.broker.replies.pop(self._reply_address, None)
        self._pending.fail_all(BusError("bus closed while waiting for a reply"))

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("bus closed")
