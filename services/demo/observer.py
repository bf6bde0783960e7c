"""Everything on the bus, seen from a queue of its own: how the demo knows what happened.

The observer binds one queue to ``kf.events`` and one to ``kf.commands`` with ``#``, as any
extension may, and keeps every message in arrival order. It reads facts only; it never
answers a decision request nor acks on anyone's behalf.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import msgspec

from libs.common.bus import Bus, Delivery
from libs.common.schemas import AnyMessage, BusMessage
from libs.common.topology import COMMANDS, EVENTS, QueueSpec

DEFAULT_QUEUE = "wxkf.demo.observer"

T = TypeVar("T")
M = TypeVar("M", bound=BusMessage)


class Seen(msgspec.Struct, frozen=True, kw_only=True):
    """One message as the observer received it."""

    at: float
    """Unix seconds of its arrival here."""
    msg: AnyMessage
    routing_key: str


def observer_queues(name: str = DEFAULT_QUEUE) -> tuple[QueueSpec, QueueSpec]:
    """The facts queue ``name`` and the commands queue ``name.commands``."""
    return (
        QueueSpec(name=name, exchange=EVENTS, bindings=("#",), max_attempts=1),
        QueueSpec(name=name + ".commands", exchange=COMMANDS, bindings=("#",), max_attempts=1),
    )


class Observer:
    def __init__(self, bus: Bus, *, queue: str = DEFAULT_QUEUE) -> None:
        self.bus = bus
        self.queues = observer_queues(queue)
        self.seen: list[Seen] = []
        self.listeners: list[Callable[[Seen], None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        for spec in self.queues:
            await self.bus.consume(spec, self._keep)

    async def _keep(self, msg: AnyMessage, delivery: Delivery) -> None:
        # A redelivery after a reconnect is the same message: keep it once.
        if delivery.redelivered and any(s.msg.id == msg.id for s in self.seen):
            return
        item = Seen(at=time.time(), msg=msg, routing_key=msg.routing_key())
        self.seen.append(item)
        self._changed.set()
        for listener in self.listeners:
            listener(item)

    def of(self, kind: type[M], *, openid: str | None = None) -> list[M]:
        """Every message of ``kind`` seen so far (about ``openid``, when given)."""
        found: list[M] = []
        for item in self.seen:
            msg = item.msg
            if isinstance(msg, kind) and (openid is None or msg.openid == openid):
                found.append(msg)
        return found

    def arrival(self, msg_id: str) -> float | None:
        return next((s.at for s in self.seen if s.msg.id == msg_id), None)

    async def wait_for(self, probe: Callable[[], T | None], *, deadline_s: float, what: str) -> T:
        """Wait until ``probe()`` returns something other than None (or an empty list)."""
        end = time.monotonic() + deadline_s
        while True:
            found = probe()
            if found is not None and found != []:
                return found
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} within {deadline_s:g} s")
            self._changed.clear()
            # Woken by the next message; the timeout only bounds the wait.
            try:
                async with asyncio.timeout(min(left, 0.5)):
                    await self._changed.wait()
            except TimeoutError:
                pass
