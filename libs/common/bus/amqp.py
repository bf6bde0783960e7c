"""``amqp://``: the bus on RabbitMQ through aio-pika.

Two robust connections. The publishing one carries one channel with publisher confirms for
every publish (and the direct reply-to consumer of ``request``, which must live on the
channel that publishes). The consuming one carries one channel per consumed queue, so each
has its own prefetch, and short-lived ones for declarations and dead-letter work. A broker
in a memory or disk alarm blocks the connections that publish; the consumers' acks travel
on the other and are not held up (``bus.blocked`` and ``wxkf_bus_connection_blocked`` say while it
lasts). The URL may name every node of a cluster (see ``nodes.py``): each connection, and
each reconnect, goes to the next node that answers.

Every publish waits for the broker's confirm within ``publish_timeout_s`` (including the wait
for a connection that is down, or blocked) and raises :class:`PublishError` on a nack, an
unroutable return (``mandatory``) or the deadline. A delivery is acked only after its handler
returned and, for a retry or a dead letter, after the copy that replaces it was confirmed.

Recovery: aio-pika restores channels and consumers after a reconnect; the bus does not rely
on it alone. After every reconnect, and every ``consumer_check_s`` besides, it checks that each
of its consumers is registered on its live channel and starts the ones that are not (a
recovered connection with no consumers is a known failure mode of robust connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from yarl import URL

from libs.common.bus import DeadLetter, Handler, blocking, metrics
from libs.common.bus import delivery as dl
from libs.common.bus.nodes import NodeRotation, parse_nodes
from libs.common.bus.outcomes import BusError, PublishError, Unroutable
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

REPLY_TO: Final = "amq.rabbitmq.reply-to"
JSON: Final = "application/json"
DLQ_DELIVERY_LIMIT: Final = 1_000_000
"""Peeking at a dead-letter queue returns its messages, which counts as a failed delivery in a
quorum queue; newer RabbitMQ versions default to a limit of 20 and would then drop them."""

PUBLISH: Final = "publish"
CONSUME: Final = "consume"
ROLES: Final = (PUBLISH, CONSUME)
"""The bus's two connections, in the order they open."""

PUBLISHER_RENEW_S: Final = 1.0
"""The least time between two replacements of the publishing channel (see _renew_publisher)."""

_CHANNEL_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError)
_LINK_ERRORS = (*_CHANNEL_ERRORS, ConnectionError, OSError)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs (every node it names kept)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def work_queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        # RabbitMQ 3.x has no default: without a limit a poison message loops forever.
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": DEAD,
        "x-dead-letter-routing-key": spec.name,
        "x-dead-letter-strategy": "at-least-once",
        # at-least-once dead-lettering requires it; these queues have no length limit anyway.
        "x-overflow": "reject-publish",
    }
    if spec.max_length is not None:
        # Dropping the oldest, not refusing the publish: a full queue of an extension must
        # never make ingress's publish fail. RabbitMQ dead-letters what drop-head drops only
        # at most once.
        arguments |= {
            "x-max-length": spec.max_length,
            "x-overflow": "drop-head",
            "x-dead-letter-strategy": "at-most-once",
        }
    return arguments


def delay_queue_arguments(spec: QueueSpec, delay_s: float) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": round(delay_s * 1000),
        "x-dead-letter-exchange": RETRY,
        "x-dead-letter-routing-key": spec.name,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def dead_letter_queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": DLQ_DELIVERY_LIMIT}
    if spec.max_length is not None:
        arguments |= {"x-max-length": spec.max_length, "x-overflow": "drop-head"}
    return arguments


def outgoing(
    body: bytes,
    *,
    message_id: str | None,
    correlation_id: str | None,
    type_: str | None,
    headers: Mapping[str, Any] | None = None,
    reply_to: str | None = None,
    persistent: bool = True,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type=JSON,
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        message_id=message_id,
        correlation_id=correlation_id,
        type=type_,
        headers=dict(headers) if headers else None,
        reply_to=reply_to,
    )


class _Consumer:
    __slots__ = ("bus", "channel", "handler", "prefetch", "queue", "spec", "tag")

    def __init__(
        self,
        bus: AmqpBus,
        spec: QueueSpec,
        handler: Handler,
        prefetch: int,
        channel: AbstractRobustChannel,
        queue: AbstractRobustQueue,
    ) -> None:
        self.bus = bus
        self.spec = spec
        self.handler = handler
        self.prefetch = prefetch
        self.channel = channel
        self.queue = queue
        self.tag = ""

    async def start(self) -> None:
        self.tag = await self.queue.consume(self.on_message, timeout=self.bus.op_timeout_s)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq runs this in a task of the channel's, which it cancels when the channel is
        # lost; a handler cut off mid-call would leave its work half done (a send whose fate
        # is then unknown). The work runs in a task of its own and finishes; only its ack is
        # moot on a dead channel, and the broker delivers the message again, which the
        # handler's own deduplication answers. The bus cancels these tasks itself, when a
        # stop's grace runs out (stop_consuming).
        task = asyncio.get_running_loop().create_task(self._handle(message))
        self.bus.inflight.add(task)
        task.add_done_callback(self.bus.inflight.discard)
        await asyncio.shield(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        spec, bus = self.spec, self.bus
        headers: Mapping[str, Any] = message.headers or {}
        delivery = dl.Delivery(
            attempt=dl.attempt_of(headers),
            max_attempts=spec.max_attempts,
            reply_to=message.reply_to,
            redelivered=bool(message.redelivered),
            headers=headers,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            replier=bus.send_reply,
        )
        try:
            verdict = await dl.handle(spec, self.handler, message.body, delivery)
        except asyncio.CancelledError:
            # Shutdown or a dropped channel: unsettled, so the broker delivers it again
            # (and counts it toward the queue's delivery limit).
            metrics.DELIVERIES.labels(spec.name, "requeue").inc()
            await _quietly(message.nack(requeue=True), "delivery.nack_failed")
            raise
        await self._settle(message, verdict)

    async def _settle(self, message: AbstractIncomingMessage, verdict: dl.Verdict) -> None:
        spec = self.spec
        if verdict.outcome != "ack":
            # Park the message first (a delay queue or the dead-letter queue); only a
            # confirmed copy lets the original go.
            key = message.routing_key or ""
            if verdict.outcome == "retry":
                target, routing_key = RETRY, spec.delay_queue(verdict.delay_s)
                headers = dl.retry_headers(
                    message.headers, key, repeat=verdict.repeat, note=verdict.note
                )
            else:
                target, routing_key = DEAD, spec.name
                headers = dl.dead_headers(message.headers, key, verdict.reason)
            copy = outgoing(
                message.body,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                type_=message.type,
                headers=headers,
                reply_to=message.reply_to,
            )
            try:
                await self.bus.send(target, routing_key, copy)
            except PublishError as exc:
                # Not parked, so not acked either: the broker delivers it again.
                log.warning("delivery.settle_failed", outcome=verdict.outcome, error=str(exc))
                metrics.DELIVERIES.labels(spec.name, "requeue").inc()
                await _quietly(message.nack(requeue=True), "delivery.nack_failed")
                return
        metrics.DELIVERIES.labels(spec.name, verdict.outcome).inc()
        await _quietly(message.ack(), "delivery.ack_failed")


def _consumer_tags(channel: aiormq.abc.AbstractChannel) -> Mapping[str, Any]:
    # The consumers the client side of this channel knows: filled on ConsumeOk, emptied on
    # CancelOk or the broker's Cancel.
    return channel.consumers if isinstance(channel, aiormq.Channel) else {}


async def _close_all(connections: list[AbstractRobustConnection]) -> None:
    for connection in connections:
        await _quietly(connection.close(), "bus.close_failed")


def _node_of(connection: AbstractRobustConnection) -> str:
    factory = connection.kwargs.get("transport_factory")
    return factory.node if isinstance(factory, NodeRotation) else ""


async def _quietly(action: Any, event: str) -> None:
    # An ack or nack on a channel that died is moot: the broker has already put the message
    # back, and will deliver it again.
    try:
        await action
    except _LINK_ERRORS as exc:
        log.info(event, error=type(exc).__name__)


class AmqpBus:
    """The bus on a RabbitMQ broker; build it with :meth:`connect`."""

    def __init__(
        self,
        publishing: AbstractRobustConnection,
        consuming: AbstractRobustConnection,
        publisher: AbstractRobustChannel,
        *,
        publish_timeout_s: float,
        op_timeout_s: float,
        consumer_check_s: float,
    ) -> None:
        self.publishing = publishing
        self.consuming = consuming
        self.publisher = publisher
        self.publish_timeout_s = publish_timeout_s
        self.op_timeout_s = op_timeout_s
        self.consumer_check_s = consumer_check_s
        self.inflight: set[asyncio.Task[Any]] = set()
        self.blocked: dict[str, str] = {}
        self._lost: set[str] = set()
        """Connection (``publish``, ``consume``) → why the broker blocks it, while it does."""
        self._consumers: list[_Consumer] = []
        self._declared: dict[str, QueueSpec] = {}
        self._pending = dl.PendingReplies()
        self._reply_channel: aiormq.abc.AbstractChannel | None = None
        """The underlying channel that consumes direct reply-to (see _ensure_reply_consumer)."""
        self._exchanges: dict[str, AbstractExchange] = {}
        self._reply_lock = asyncio.Lock()
        self._closed = False
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        self._publisher_renewed_at = 0.0
        self._ping_channel: AbstractRobustChannel | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        publish_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        reconnect_interval_s: float = 1.0,
        consumer_check_s: float = 5.0,
        name: str = "wxkf",
    ) -> AmqpBus:
        """Connect, or raise :class:`BusError` within ``connect_timeout_s``.

        Two connections: one publishes (and takes the decision replies), one consumes and
        acknowledges. A broker in alarm blocks every connection that publishes until the alarm
        clears; on a connection of their own the acknowledgements, and so the deliveries,
        go on meanwhile.
        """
        try:
            first, nodes = parse_nodes(url)
        except ValueError as exc:
            raise BusError(f"the bus URL is malformed: {exc}") from None
        where = safe_url(url)
        opened: list[AbstractRobustConnection] = []
        try:
            async with asyncio.timeout(connect_timeout_s):
                for role in ROLES:
                    connection = aio_pika.RobustConnection(
                        URL(first),
                        reconnect_interval=reconnect_interval_s,
                        client_properties={"connection_name": f"{name}.{role}"},
                    )
                    # The rotation over the URL's nodes (see nodes.py); aio-pika hands its
                    # keyword arguments to aiormq's connection as they are.
                    connection.kwargs["transport_factory"] = NodeRotation(
                        nodes, tls=first.startswith("amqps")
                    )
                    opened.append(connection)
                    await connection.connect(timeout=connect_timeout_s)
                publishing, consuming = opened
                publisher = await publishing.channel(publisher_confirms=True, on_return_raises=True)
        except TimeoutError:
            await _close_all(opened)
            raise BusError(f"no answer from {where} within {connect_timeout_s}s") from None
        except _LINK_ERRORS as exc:
            await _close_all(opened)
            raise BusError(f"cannot connect to {where}: {exc}") from None
        bus = cls(
            publishing,
            consuming,
            publisher,
            publish_timeout_s=publish_timeout_s,
            op_timeout_s=connect_timeout_s,
            consumer_check_s=consumer_check_s,
        )
        for role, each in zip(ROLES, opened, strict=True):
            # A series from the start, so that an alert on it is never blind for want of one.
            metrics.BLOCKED.labels(role).set(0)
            each.reconnect_callbacks.add(functools.partial(bus._on_reconnect, role))
            each.close_callbacks.add(functools.partial(bus._on_connection_lost, role))
            bus._watch_flow(role, each)
        bus._watchdog = asyncio.get_running_loop().create_task(bus._watch_consumers())
        log.info("bus.connected", url=where)
        return bus

    # -- topology -------------------------------------------------------------------------------

    async def declare(self, queues: Iterable[QueueSpec] = CORE_QUEUES) -> None:
        self._check_open()
        specs = list(queues)
        for spec in specs:
            try:
                check_queue_spec(spec)
            except ValueError as exc:
                raise BusError(str(exc)) from None
        # A channel of its own each time: a conflicting declaration costs RabbitMQ the channel,
        # and the next declaration must not stumble over its remains.
        channel = await self._side_channel()
        try:
            async with asyncio.timeout(self.op_timeout_s):
                await self._declare(channel, specs)
        except TimeoutError:
            raise BusError(f"declaring the topology took over {self.op_timeout_s}s") from None
        except _LINK_ERRORS as exc:
            raise BusError(f"cannot declare the topology: {exc}") from None
        finally:
            if not channel.is_closed:
                await _quietly(channel.close(), "declare.close_failed")
        for spec in specs:
            self._declared[spec.name] = spec

    @staticmethod
    async def _declare(ch: AbstractRobustChannel, specs: list[QueueSpec]) -> None:
        # Everything is durable, so nothing needs aio-pika's restore (robust=False); the bus
        # declares again itself after a reconnect, in case the broker lost it.
        topic, direct = aio_pika.ExchangeType.TOPIC, aio_pika.ExchangeType.DIRECT
        exchanges = {EVENTS: topic, COMMANDS: topic, RETRY: direct, DEAD: direct}
        exchanges.update({s.exchange: topic for s in specs if s.exchange not in exchanges})
        for name, kind in exchanges.items():
            await ch.declare_exchange(name, kind, durable=True, robust=False)
        for spec in specs:
            work = await ch.declare_queue(
                spec.name, durable=True, arguments=work_queue_arguments(spec), robust=False
            )
            for pattern in spec.bindings:
                await work.bind(spec.exchange, pattern, robust=False)
            await work.bind(RETRY, spec.name, robust=False)
            dlq = await ch.declare_queue(
                spec.dlq, durable=True, arguments=dead_letter_queue_arguments(spec), robust=False
            )
            await dlq.bind(DEAD, spec.name, robust=False)
            for delay in spec.delay_steps():
                name = spec.delay_queue(delay)
                wait = await ch.declare_queue(
                    name, durable=True, arguments=delay_queue_arguments(spec, delay), robust=False
                )
                await wait.bind(RETRY, name, robust=False)

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
        await self.send(
            exchange_for(msg) if exchange is None else exchange,
            msg.routing_key() if routing_key is None else routing_key,
            outgoing(
                encode(msg),
                message_id=msg.id,
                correlation_id=msg.correlation_id,
                type_=msg.routing_key(),
                headers=dl.publish_headers(repeat),
            ),
            within_s=confirm_within_s,
        )

    async def send(
        self,
        exchange: str,
        routing_key: str,
        msg: aio_pika.Message,
        *,
        mandatory: bool = True,
        with_reply_consumer: bool = False,
        within_s: float | None = None,
    ) -> None:
        """The one confirmed publish: returns once confirmed, else raises PublishError.

        ``within_s`` bounds the wait (the connection's included) tighter than the bus's own
        bound."""
        started = time.perf_counter()
        outcome = "ok"
        bound = self.publish_timeout_s
        if within_s is not None:
            bound = min(within_s, bound)
        try:
            if self._closed:
                raise PublishError("bus closed")
            async with asyncio.timeout(bound):
                target = await self._exchange(exchange)
                await self._ready_publisher()
                if with_reply_consumer:
                    await self._ensure_reply_consumer()
                await target.publish(msg, routing_key, mandatory=mandatory)
        except TimeoutError:
            outcome = "timeout"
            blocked = self.blocked.get(PUBLISH)
            why = f"; the broker blocks publishing ({blocked})" if blocked else ""
            raise PublishError(
                f"not confirmed within {bound:g}s ({exchange} {routing_key}){why}"
            ) from None
        except aio_pika.exceptions.PublishError:
            outcome = "unroutable"
            raise Unroutable(
                f"unroutable: no queue bound to {exchange!r} matches {routing_key!r}"
            ) from None
        except aio_pika.exceptions.DeliveryError as exc:
            outcome = "nack"
            self._renew_publisher()
            raise PublishError(f"nacked by the broker ({exchange} {routing_key}): {exc}") from None
        except _LINK_ERRORS as exc:
            outcome = "error"
            raise PublishError(f"publish failed ({exchange} {routing_key}): {exc!r}") from None
        except PublishError:
            outcome = "error"
            raise
        finally:
            metrics.PUBLISHES.labels(exchange, outcome).inc()
            if outcome == "ok":
                metrics.PUBLISH_SECONDS.labels(exchange).observe(time.perf_counter() - started)

    async def _exchange(self, name: str) -> AbstractExchange:
        # By name, without a declaration: declaring is declare()'s, and a publishing user may
        # not be allowed to (WXKF_BUS_DECLARE=own). "" is the default exchange.
        found = self._exchanges.get(name)
        if found is None:
            found = await self.publisher.get_exchange(name, ensure=False)
            self._exchanges[name] = found
        return found

    async def _ready_publisher(self) -> None:
        # While the connection is down, or the channel is being reopened, this waits; the
        # caller's deadline bounds the wait.
        while True:
            await self.publisher.ready()
            if not self.publisher.is_closed:
                return
            await asyncio.sleep(0.01)  # the reopen is already under way; look again shortly

    def _renew_publisher(self) -> None:
        """Replace the publishing channel after a nack, at most once a second.

        A channel keeps what it learnt of each quorum queue's leader: one that published
        while its queues elected new leaders (their node died) can go on being nacked long
        after they have, where a new channel is not. Closing the underlying channel makes
        aio-pika's robust channel open a new one (as after a channel the broker closed);
        publishes in flight on it fail and are retried by their callers, as after any nack."""
        now = time.monotonic()
        if self.publisher.is_closed or now - self._publisher_renewed_at < PUBLISHER_RENEW_S:
            return
        self._publisher_renewed_at = now
        log.warning("bus.publisher_renewed", why="nacked")
        self._spawn(_close_underlay(self.publisher))

    async def _ensure_reply_consumer(self) -> None:
        # Direct reply-to answers only on the channel that consumes amq.rabbitmq.reply-to, and
        # RabbitMQ closes a channel that publishes a request without it. So the consumer must
        # be on the very channel the request goes out on: a reopened channel (a reconnect, a
        # renewal) needs it again. Nothing between this return and the publish yields to the
        # loop, so the channel checked here is the one the publish takes.
        while self._reply_channel is not await self.publisher.get_underlay_channel():
            async with self._reply_lock:
                channel = await self.publisher.get_underlay_channel()
                if self._reply_channel is not channel:
                    replies = await self.publisher.get_queue(REPLY_TO, ensure=False)
                    await replies.consume(self._on_reply, no_ack=True)
                    self._reply_channel = channel

    async def _on_reply(self, reply: AbstractIncomingMessage) -> None:
        self._pending.resolve(reply.body, reply.headers, reply.correlation_id)

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
            await self.send(
                exchange_for(msg) if exchange is None else exchange,
                msg.routing_key() if routing_key is None else routing_key,
                outgoing(
                    encode(msg),
                    message_id=msg.id,
                    correlation_id=msg.correlation_id,
                    type_=msg.routing_key(),
                    reply_to=REPLY_TO,
                    headers=dl.publish_headers(repeat),
                ),
                with_reply_consumer=True,
                within_s=confirm_within_s,
            )

        return await self._pending.wait(msg, send, timeout_s=timeout)

    async def send_reply(
        self,
        reply_to: str,
        body: bytes,
        headers: Mapping[str, Any],
        correlation_id: str | None,
    ) -> None:
        # Through the default exchange: direct reply-to addresses exist nowhere else. Not
        # mandatory: a requester that is gone is not an error of the one answering.
        await self.send(
            "",
            reply_to,
            outgoing(
                body,
                message_id=None,
                correlation_id=correlation_id,
                type_=None,
                headers=headers,
                persistent=False,
            ),
            mandatory=False,
        )

    # -- consuming ------------------------------------------------------------------------------

    async def consume(self, spec: QueueSpec, handler: Handler, *, prefetch: int = 32) -> None:
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        if self._declared.get(spec.name) != spec:
            await self.declare([spec])
        try:
            async with asyncio.timeout(self.op_timeout_s):
                channel = await self.consuming.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=prefetch)
                queue = await channel.declare_queue(spec.name, passive=True)
                consumer = _Consumer(self, spec, handler, prefetch, channel, queue)
                await consumer.start()
        except TimeoutError:
            raise BusError(
                f"starting a consumer on {spec.name} took over {self.op_timeout_s}s"
            ) from None
        except _LINK_ERRORS as exc:
            raise BusError(f"cannot consume {spec.name}: {exc}") from None
        self._consumers.append(consumer)
        log.info("consumer.started", queue=spec.name, prefetch=prefetch)

    async def stop_consuming(self, *, grace_s: float | None = None) -> None:
        self._stopping = True
        # After close() the connection delivers nothing more: there is nothing to cancel, and
        # asking a closed robust connection would only wait out op_timeout_s per consumer.
        for consumer in [] if self._closed else self._consumers:
            try:
                async with asyncio.timeout(self.op_timeout_s):
                    await consumer.queue.cancel(consumer.tag)
            except (TimeoutError, *_LINK_ERRORS) as exc:
                # The channel is gone, so it delivers nothing more anyway.
                log.info("consumer.cancel_failed", queue=consumer.spec.name, error=repr(exc))
        await dl.finish(set(self.inflight), grace_s)
        for consumer in [] if self._closed else self._consumers:
            await _quietly(consumer.channel.close(), "consumer.close_failed")
        self._consumers.clear()
        self._stopping = False

    def consumer_tags(self) -> dict[str, str]:
        """Queue name → consumer tag of each consumer this bus runs (for checks and tests)."""
        return {c.spec.name: c.tag for c in self._consumers}

    async def ensure_consumers(self) -> int:
        """Start again every consumer missing from its live channel; how many were."""
        restored = 0
        for consumer in list(self._consumers):
            if self._stopping or self._closed:
                break
            try:
                async with asyncio.timeout(self.op_timeout_s):
                    await consumer.channel.ready()
                    underlay = await consumer.channel.get_underlay_channel()
                    if underlay.is_closed or consumer.tag in _consumer_tags(underlay):
                        continue
                    log.warning("consumer.missing", queue=consumer.spec.name)
                    # Forget the old tag first, so aio-pika never restores it beside ours.
                    await consumer.queue.cancel(consumer.tag)
                    await consumer.start()
            except (TimeoutError, *_LINK_ERRORS) as exc:
                log.warning("consumer.restore_failed", queue=consumer.spec.name, error=repr(exc))
                continue
            metrics.CONSUMER_RESTORES.labels(consumer.spec.name).inc()
            restored += 1
        return restored

    async def _watch_consumers(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.consumer_check_s)  # a periodic check, not a retry
            try:
                await self.ensure_consumers()
            except Exception:  # the guard must outlive any one failed check
                log.exception("consumer.check_failed")

    def _on_reconnect(self, role: str, connection: AbstractRobustConnection) -> None:
        self._lost.discard(role)
        metrics.RECONNECTS.inc()
        log.info("bus.reconnected", connection=role, node=_node_of(connection))
        self._watch_flow(role, connection)
        if self.blocked.pop(role, None) is not None:
            metrics.BLOCKED.labels(role).set(0)
        if role == CONSUME:
            self._spawn(self._after_reconnect())

    def _on_connection_lost(self, role: str, *args: Any) -> None:
        # Called again on every failed reconnect: said once per outage.
        if not self._closed and role not in self._lost:
            self._lost.add(role)
            error = args[-1] if args else None
            log.warning("bus.connection_lost", connection=role, error=repr(error))

    def _watch_flow(self, role: str, connection: AbstractRobustConnection) -> None:
        """Hear the broker's blocked and unblocked notices for ``connection`` (until its next
        reconnect, which makes a new underlying connection)."""
        transport = connection.transport
        if transport is None:
            return

        def heard(blocked: bool, reason: str) -> None:
            if blocked:
                self.blocked[role] = reason
                metrics.BLOCKED.labels(role).set(1)
                metrics.BLOCKINGS.labels(role).inc()
                log.warning("bus.blocked", connection=role, reason=reason)
            elif self.blocked.pop(role, None) is not None:
                metrics.BLOCKED.labels(role).set(0)
                log.info("bus.unblocked", connection=role)

        blocking.REPORTS.register(transport.connection, heard)

    async def _after_reconnect(self) -> None:
        if self._declared:
            try:
                await self.declare(list(self._declared.values()))
            except BusError as exc:
                log.warning("bus.redeclare_failed", error=str(exc))
        await self.ensure_consumers()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- dead letters ---------------------------------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        letters: list[DeadLetter] = []
        channel = await self._side_channel()
        try:
            async with asyncio.timeout(self.op_timeout_s):
                dlq = await self._passive_dlq(channel, queue)
                while len(letters) < limit:
                    message = await dlq.get(no_ack=False, fail=False)
                    if message is None:
                        break
                    letters.append(
                        dl.dead_letter(
                            queue, message.headers, message.routing_key or "", message.body
                        )
                    )
        except TimeoutError:
            raise BusError(f"reading {queue}.dlq took over {self.op_timeout_s}s") from None
        except _LINK_ERRORS as exc:
            raise BusError(f"cannot read {queue}.dlq: {exc}") from None
        finally:
            # Closing the channel puts every message we looked at back.
            await _quietly(channel.close(), "dlq.close_failed")
        await self._until_back(queue, len(letters))
        return letters

    async def _until_back(self, queue: str, count: int) -> None:
        # The broker returns the messages after the channel is gone; wait (briefly) until they
        # are there again, so that what comes next (a replay) finds them.
        if not count:
            return
        deadline = time.monotonic() + min(self.op_timeout_s, 2.0)
        channel = await self._side_channel()
        try:
            while time.monotonic() < deadline:
                dlq = await self._passive_dlq(channel, queue)
                if (dlq.declaration_result.message_count or 0) >= count:
                    return
                await asyncio.sleep(0.01)  # polling the broker's count, bounded above
        except _LINK_ERRORS as exc:
            log.info("dlq.recount_failed", error=repr(exc))
        finally:
            await _quietly(channel.close(), "dlq.close_failed")

    async def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        self._check_open()
        moved = 0
        channel = await self._side_channel()
        seen: set[tuple[str | None, bytes]] = set()
        try:
            dlq = await self._passive_dlq(channel, queue)
            while limit is None or moved < limit:
                async with asyncio.timeout(self.op_timeout_s):
                    message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                # A replayed message that failed again is back already: one round only.
                identity = (message.message_id, message.body)
                if identity in seen:
                    await message.nack(requeue=True)
                    break
                seen.add(identity)
                letter = dl.dead_letter(
                    queue, message.headers, message.routing_key or "", message.body
                )
                copy = outgoing(
                    message.body,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type_=message.type,
                    headers=dl.replay_headers(message.headers, letter.routing_key),
                )
                await self.send(RETRY, queue, copy)
                await message.ack()
                moved += 1
        except TimeoutError:
            raise BusError(f"replaying {queue}.dlq stalled after {moved} messages") from None
        except _LINK_ERRORS as exc:
            raise BusError(f"cannot replay {queue}.dlq after {moved} messages: {exc}") from None
        finally:
            await _quietly(channel.close(), "dlq.close_failed")
        return moved

    async def dead_letter_count(self, queue: str) -> int:
        self._check_open()
        channel = await self._side_channel()
        try:
            async with asyncio.timeout(self.op_timeout_s):
                dlq = await self._passive_dlq(channel, queue)
        except TimeoutError:
            raise BusError(f"counting {queue}.dlq took over {self.op_timeout_s}s") from None
        except _LINK_ERRORS as exc:
            raise BusError(f"cannot count {queue}.dlq: {exc}") from None
        finally:
            await _quietly(channel.close(), "dlq.close_failed")
        return dlq.declaration_result.message_count or 0

    async def drop_dead_letters(self, queue: str) -> int:
        self._check_open()
        channel = await self._side_channel()
        try:
            async with asyncio.timeout(self.op_timeout_s):
                dlq = await self._passive_dlq(channel, queue)
                purged = await dlq.purge()
        except TimeoutError:
            raise BusError(f"dropping {queue}.dlq took over {self.op_timeout_s}s") from None
        except _LINK_ERRORS as exc:
            raise BusError(f"cannot drop {queue}.dlq: {exc}") from None
        finally:
            await _quietly(channel.close(), "dlq.close_failed")
        return purged.message_count or 0

    async def purge(self, spec: QueueSpec) -> int:
        self._check_open()
        purged = 0
        for name in (spec.name, *map(spec.delay_queue, spec.delay_steps()), spec.dlq):
            # A channel per queue: a queue that does not exist costs RabbitMQ the channel.
            channel = await self._side_channel()
            try:
                async with asyncio.timeout(self.op_timeout_s):
                    found = await channel.declare_queue(name, passive=True, robust=False)
                    purged += (await found.purge()).message_count or 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue
            except TimeoutError:
                raise BusError(f"purging {name} took over {self.op_timeout_s}s") from None
            except _LINK_ERRORS as exc:
                raise BusError(f"cannot purge {name}: {exc}") from None
            finally:
                await _quietly(channel.close(), "purge.close_failed")
        return purged

    async def _side_channel(self) -> AbstractRobustChannel:
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await self.consuming.channel(publisher_confirms=False)
        except (TimeoutError, *_LINK_ERRORS) as exc:
            raise BusError(f"cannot open a channel: {exc!r}") from None

    async def _passive_dlq(self, channel: AbstractRobustChannel, queue: str) -> AbstractRobustQueue:
        try:
            return await channel.declare_queue(queue + ".dlq", passive=True, robust=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise BusError(
                f"no dead-letter queue {queue + '.dlq'!r}: is {queue!r} declared?"
            ) from None

    # -- lifetime -------------------------------------------------------------------------------

    async def ping(self) -> None:
        """A round trip to the broker, on the consuming connection: the broker stops reading a
        publishing connection that an alarm blocks, but it still answers, and the process
        still consumes (the block shows in ``wxkf_bus_connection_blocked``, not here)."""
        self._check_open()
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                if not self.publishing.connected.is_set():
                    raise BusError("the publishing connection is down")
                if self._ping_channel is None or self._ping_channel.is_closed:
                    self._ping_channel = await self.consuming.channel(publisher_confirms=False)
                channel = await self._ping_channel.get_underlay_channel()
                # A real round trip; amq.topic exists in every vhost.
                await channel.exchange_declare("amq.topic", exchange_type="topic", passive=True)
        except TimeoutError:
            raise BusError(f"the broker did not answer within {self.publish_timeout_s}s") from None
        except _LINK_ERRORS as exc:
            raise BusError(f"the broker is unreachable: {exc!r}") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._watchdog, *self._background):
            if task is not None:
                task.cancel()
        self._pending.fail_all(BusError("bus closed while waiting for a reply"))
        for connection in (self.consuming, self.publishing):
            try:
                async with asyncio.timeout(self.op_timeout_s):
                    await connection.close()
            except (TimeoutError, *_LINK_ERRORS) as exc:
                log.warning("bus.close_failed", error=repr(exc))
        for role in list(self.blocked):
            metrics.BLOCKED.labels(role).set(0)
        log.debug("bus.closed")

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("bus closed")


async def _close_underlay(channel: AbstractRobustChannel) -> None:
    with contextlib.suppress(*_LINK_ERRORS):
        await (await channel.get_underlay_channel()).close()
