"""The bus: the one interface services use to publish, consume and ask (RPC).

Two backends share it, chosen by URL: ``amqp://`` (RabbitMQ through aio-pika) and
``memory://`` (one process). The same behavioural test suite runs against both.

Contract, for both backends:

* ``publish`` returns only once the broker confirmed the message; a nack, an unroutable
  return or a timeout raises :class:`PublishError` (every publish is bounded in time).
* ``consume`` decodes each body with :func:`libs.common.schemas.decode` and calls the handler.
  Return → ack. :class:`Retry` (or any other exception) → republished to a delay queue with the
  attempt count + 1, then acked; after the queue's last attempt → dead-letter queue. The
  retried copy is marked a possible repeat (``REPEAT_HEADER``) unless the handler said it left
  nothing done (``Retry(nothing_done=True)``) on a delivery that was itself fresh.
  :class:`Reject` or an undecodable body → dead-letter queue at once.
* ``request`` publishes with a reply address and waits for the reply up to ``timeout``;
  it returns None when no reply came in time (the message was still published).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar, cast

import msgspec

from libs.common.bus.outcomes import BusError, PublishError, Reject, Retry, Unroutable
from libs.common.schemas import AnyMessage, BusMessage
from libs.common.topology import CORE_QUEUES, QueueSpec

__all__ = [
    "REPEAT_HEADER",
    "Bus",
    "BusError",
    "DeadLetter",
    "Delivery",
    "Handler",
    "KindRoute",
    "PublishError",
    "Reject",
    "Retry",
    "Unroutable",
    "by_kind",
    "connect",
    "on",
    "publish_fact",
]

ATTEMPT_HEADER = "x-wxkf-attempt"
"""1 on the first delivery; the bus increments it on each retry through a delay queue."""
DEATH_REASON_HEADER = "x-wxkf-death-reason"
"""Why the bus dead-lettered a message (absent when the broker did: see ``x-death``)."""
ROUTING_KEY_HEADER = "x-wxkf-routing-key"
"""The key a message was first published with; retries travel under the queue's name."""
REQUEST_ID_HEADER = "x-wxkf-request-id"
"""On a reply: the message id of the request it answers (correlation ids may repeat)."""
NOTE_HEADER = "x-wxkf-note"
"""What the previous attempt left for this one (``Retry(note=...)``)."""
REPEAT_HEADER = "x-wxkf-repeat"
"""This copy may repeat one that was handled before: set by a publisher that cannot rule it
out, and by the bus on the retry of a delivery that may have done part of its work."""


class Delivery(Protocol):
    """One delivery of a message to a handler."""

    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def final(self) -> bool:
        """True when a Retry from this attempt would dead-letter the message instead."""
        ...

    @property
    def reply_to(self) -> str | None: ...
    @property
    def redelivered(self) -> bool: ...
    @property
    def fresh(self) -> bool:
        """No other copy or delivery of this message can have done any of its work: it was
        never delivered before (or every earlier delivery retried with nothing done), and
        its publisher did not mark it a possible repeat. Consumers that deduplicate through
        the store use it when the store may have forgotten (see ``libs.common.store``)."""
        ...

    @property
    def note(self) -> str | None:
        """What the previous attempt of this message left for this one (``Retry(note=…)``)."""
        ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    async def reply(self, body: msgspec.Struct) -> None:
        """Answer a ``request``; a no-op when the message carried no reply address."""
        ...


Handler = Callable[[AnyMessage, Delivery], Awaitable[None]]

M = TypeVar("M", bound=BusMessage)
KindRoute = tuple[type[BusMessage], Handler]
"""One kind of message and its handler (made by :func:`on`)."""


def on(kind: type[M], handler: Callable[[M, Delivery], Awaitable[None]]) -> KindRoute:
    """Route messages of exactly ``kind`` to ``handler``, typed for that kind (mypy checks
    that the handler takes it)."""
    return kind, cast(Handler, handler)


def by_kind(*routes: KindRoute) -> Handler:
    """One consumer's handler from a handler per kind of message: each message goes to the
    handler of its exact type; any other kind is a :class:`Reject` that names it (so it goes
    to the dead-letter queue at once, where it can be seen)."""
    table: dict[type[BusMessage], Handler] = dict(routes)
    names = ", ".join(sorted(kind.__name__ for kind in table))

    async def handle(msg: AnyMessage, delivery: Delivery) -> None:
        handler = table.get(type(msg))
        if handler is None:
            raise Reject(f"no handler for {type(msg).__name__} ({msg.routing_key()}): {names} only")
        await handler(msg, delivery)

    return handle


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    reason: str
    attempts: int
    routing_key: str
    body: bytes


class Bus(Protocol):
    async def declare(self, queues: Iterable[QueueSpec] = CORE_QUEUES) -> None:
        """Declare exchanges, these queues, their bindings, delay and dead-letter queues."""
        ...

    async def publish(
        self,
        msg: BusMessage,
        *,
        routing_key: str | None = None,
        exchange: str | None = None,
        repeat: bool = False,
        confirm_within_s: float | None = None,
    ) -> None:
        """Publish, confirmed. Defaults: the message's own key and exchange.

        ``repeat``: this may repeat a copy published before (its consumers see it not
        ``fresh``). ``confirm_within_s``: a tighter bound than the bus's own on the wait for
        the broker's confirm (the connection included); past it, :class:`PublishError`
        although the broker may still take the message.
        """
        ...

    # The deadline covers only the wait for the reply; the confirmed publish before it is
    # bounded by the bus itself and must not be cut short by the caller's budget.
    async def request(
        self,
        msg: BusMessage,
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline of the reply only, see above
        routing_key: str | None = None,
        exchange: str | None = None,
        repeat: bool = False,
        confirm_within_s: float | None = None,
    ) -> bytes | None:
        """Publish (confirmed) with a reply address; the reply's body, or None after timeout.

        The other arguments are :meth:`publish`'s.
        """
        ...

    async def consume(self, spec: QueueSpec, handler: Handler, *, prefetch: int = 32) -> None:
        """Start consuming; returns at once. Consumers resume by themselves after a reconnect."""
        ...

    async def stop_consuming(self, *, grace_s: float | None = None) -> None:
        """Take no new deliveries; wait for the handlers in flight to finish, at most
        ``grace_s`` (None: as long as they take). A handler still running then is cancelled:
        its message goes back to the queue unsettled, and is delivered again."""
        ...

    async def ping(self) -> None:
        """Raise :class:`BusError` unless the broker is reachable now."""
        ...

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Peek at a work queue's dead letters (left in place)."""
        ...

    async def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        """Move dead letters back to their work queue with a fresh attempt count."""
        ...

    async def dead_letter_count(self, queue: str) -> int:
        """How many dead letters of a work queue wait (in ``<queue>.dlq``)."""
        ...

    async def drop_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of a work queue; how many were deleted."""
        ...

    async def purge(self, spec: QueueSpec) -> int:
        """Empty a work queue, its delay queues and its dead-letter queue; how many messages
        were deleted (0 for a queue never declared). For a local run that starts clean
        (``wxkf up --fresh``): no service calls it."""
        ...

    async def close(self) -> None: ...


async def publish_fact(
    bus: Bus, msg: BusMessage, *, routing_key: str | None = None, repeat: bool = False
) -> bool:
    """Publish a fact for whoever listens; False when no queue is bound to its key.

    Facts on ``kf.events`` are announcements: a key nobody subscribed to (no extension
    deployed for it) is normal, counted by the bus, and must not fail the work that produced
    the fact. Commands are different: their publish raises :class:`Unroutable`.
    """
    try:
        await bus.publish(msg, routing_key=routing_key, repeat=repeat)
    except Unroutable:
        return False
    return True


async def connect(url: str, **options: Any) -> Bus:
    """The backend for ``url``: ``amqp://``/``amqps://`` or ``memory://``."""
    if url.startswith(("amqp://", "amqps://")):
        from libs.common.bus.amqp import AmqpBus

        return await AmqpBus.connect(url, **options)
    if url.startswith("memory://"):
        from libs.common.bus.memory import MemoryBus

        return MemoryBus.shared(url, **options)
    raise ValueError(
        f"unsupported bus URL scheme in {url.split('://')[0]!r}: use amqp:// or memory://"
    )
