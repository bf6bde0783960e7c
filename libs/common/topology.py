"""The bus topology: the only home of exchange and queue names.

Facts go to the ``kf.events`` topic exchange, commands to ``kf.commands``. Each work queue has
a dead-letter queue (``<queue>.dlq``) and a set of delay queues for retries with backoff;
how those are wired is the bus backend's business, the names of what services and extensions
bind to are here. Every service declares :data:`CORE_QUEUES` at start (idempotent), so an
event is never unroutable just because its consumer has not started yet.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from libs.common.schemas import BusMessage, SendCommand

EVENTS = "kf.events"
"""Topic exchange of facts: msg.*, event.*, decision.*, outbound.*.*, media.*, ext.*."""
COMMANDS = "kf.commands"
"""Topic exchange of commands to the sender: send.<msgtype>."""
RETRY = "kf.retry"
"""Direct exchange of retries. Keyed by a delay queue's name it fills that delay queue; keyed
by a work queue's name (where expired delay queues dead-letter into, and where replayed dead
letters go) it feeds that work queue alone, never the other queues bound to the message's key."""
DEAD = "kf.dead"
"""Direct exchange of dead letters, keyed by work queue name, bound to ``<queue>.dlq``."""

Service = Literal["ingress", "router", "sender", "media"]
SERVICES: tuple[Service, ...] = ("ingress", "router", "sender", "media")
"""wxkf's services, in the order they start (and are listed everywhere)."""


class QueueSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A durable work queue bound to one exchange, with its retry and dead-letter policy."""

    name: str
    exchange: str
    bindings: tuple[str, ...]
    max_attempts: int = 6
    """Handler attempts (first try included) before a message goes to the dead-letter queue."""
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    """Backoff doubles from ``retry_base_s`` up to ``retry_cap_s``."""
    delivery_limit: int = 20
    """Broker-side redeliveries (consumer died without acking) before dead-lettering."""
    max_length: int | None = None
    """Keep at most this many messages waiting; beyond, the oldest is dropped (dead-lettered
    with the reason ``maxlen``), and the dead-letter queue keeps at most as many. For an
    extension that may be stopped while wxkf runs on, so that its queue cannot grow without
    bound. None (wxkf's own queues): nothing is ever dropped."""

    @property
    def dlq(self) -> str:
        return self.name + ".dlq"

    def retry_delays(self) -> tuple[float, ...]:
        """One delay per retry: attempt n waits ``retry_delays()[n-1]`` seconds."""
        return tuple(
            min(self.retry_cap_s, self.retry_base_s * 2**i) for i in range(self.max_attempts - 1)
        )

    def delay_steps(self) -> tuple[float, ...]:
        """The distinct retry delays, shortest first: one delay queue each."""
        return tuple(sorted(set(self.retry_delays())))

    def retry_delay(self, attempt: int, requested_s: float | None = None) -> float:
        """The wait before the retry that follows a failed ``attempt`` (1-based).

        A delay the handler asked for (``Retry(delay_s=...)``) is rounded up to the nearest
        declared step, and to the longest step beyond it, since each step is a queue.
        """
        steps = self.delay_steps()
        if not steps:
            return 0.0
        if requested_s is None:
            delays = self.retry_delays()
            return delays[min(max(attempt, 1), len(delays)) - 1]
        return next((s for s in steps if s >= requested_s), steps[-1])

    def delay_queue(self, delay_s: float) -> str:
        """The delay queue that holds this queue's retries for ``delay_s`` seconds."""
        return f"{self.name}.delay.{round(delay_s * 1000)}ms"


ROUTER_EVENTS = QueueSpec(
    name="wxkf.router.events", exchange=EVENTS, bindings=("msg.#", "event.#"), max_attempts=5
)
SENDER_COMMANDS = QueueSpec(
    name="wxkf.sender.commands", exchange=COMMANDS, bindings=("send.#",), max_attempts=8
)
# The sender learns of reply windows from the same user messages and enter-session events the
# router sees, on a queue of its own so the two never wait on each other.
SENDER_WINDOWS = QueueSpec(
    name="wxkf.sender.windows",
    exchange=EVENTS,
    bindings=("msg.#", "event.user_enter_tempsession"),
    max_attempts=5,
)
# Declared only by a media service with the archive turned on: otherwise nobody drains it.
MEDIA_ARCHIVE = QueueSpec(
    name="wxkf.media.archive", exchange=EVENTS, bindings=("msg.image",), max_attempts=8
)

CORE_QUEUES: tuple[QueueSpec, ...] = (ROUTER_EVENTS, SENDER_COMMANDS, SENDER_WINDOWS)
ALL_QUEUES: tuple[QueueSpec, ...] = (*CORE_QUEUES, MEDIA_ARCHIVE)


def check_queue_spec(spec: QueueSpec) -> None:
    """Raise ValueError naming what is wrong with ``spec`` (before anything is declared)."""
    problems = []
    if not spec.name or spec.name.startswith("amq."):
        problems.append("a name that is not empty and does not start with 'amq.'")
    if spec.exchange in (RETRY, DEAD, ""):
        problems.append(f"a topic exchange to bind to, not {spec.exchange!r} (the bus's own)")
    if not spec.bindings:
        problems.append("at least one binding")
    if spec.max_attempts < 1:
        problems.append("max_attempts of at least 1")
    if spec.delivery_limit < 1:
        problems.append("delivery_limit of at least 1")
    if spec.max_length is not None and spec.max_length < 1:
        problems.append("max_length of at least 1 (or None: no bound)")
    if not 0 < spec.retry_base_s <= spec.retry_cap_s:
        problems.append("0 < retry_base_s <= retry_cap_s")
    if problems:
        raise ValueError(f"queue {spec.name!r} needs " + "; ".join(problems))


def exchange_for(msg: BusMessage) -> str:
    return COMMANDS if isinstance(msg, SendCommand) else EVENTS


def extension_key(topic: str) -> str:
    """Where the router republishes an event for an extension topic named in a rule."""
    return "ext." + topic


def queue_by_name(name: str) -> QueueSpec:
    for spec in ALL_QUEUES:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in ALL_QUEUES)
    raise KeyError(f"unknown queue {name!r}; the core queues are {known}")
