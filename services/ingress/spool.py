"""The spool: events kept in the store while the broker cannot take them, then relayed in order.

When the broker does not confirm a push's event within ``WXKF_PUBLISH_CONFIRM_MS`` (it is
down, blocked by an alarm, or out of reach), ingress appends the event to a stream in the
store and answers WeChat ``success``: the push is kept, so WeChat's retries (about 15 s of
them) no longer bound how long the broker may be away. No transfer decision is possible for
such a push; its event is still handled once it reaches the bus.

While the spool holds anything, every new push joins its end (the dedupe claim reads the
spool's flag in the same atomic step), so one user's messages reach the bus in the order
they came. A relay in every ingress process, one at a time (a lock in the store), publishes
the oldest entries one after the other, each confirmed, then removes them; the flag goes
with the last entry. An entry whose direct publish may have reached the broker after all (it
timed out rather than failed), or that the store may have seen before it lost its memory, is
relayed as a possible repeat: consumers drop a second copy by its event id.

The spool is as durable as the store: a Redis that keeps nothing on disk loses it with a
restart (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import structlog

from libs.common.bus import Bus, BusError
from libs.common.schemas import InboundEvent, decode, encode, new_id
from libs.common.store import Store, StoreError
from services.ingress import metrics

log = structlog.get_logger(__name__)

STREAM = "ingress:spool"
FLAG = "ingress:spool:busy"
LOCK = "ingress:spool:relay"

LOCK_TTL_S = 30.0
"""Longer than one turn of the relay (below) plus one publish's bound, so that a relay never
loses its lock while it publishes; a relay that died frees it this long after."""
TURN_S = 10.0
"""How long one relay holds the lock before it lets another ingress take a turn."""
BATCH = 100
IDLE_LOOK_S = 2.0
"""How often an idle relay looks for entries another process left (it is woken at once by
its own process's entries and by any push that finds the spool busy)."""
BACKOFF_S = 1.0
"""The pause after a publish the broker did not confirm, before the relay tries again."""


class Spooled(msgspec.Struct, frozen=True, kw_only=True):
    event: msgspec.Raw
    """The event exactly as it would have been published."""
    repeat: bool = False
    """The event may be on the bus already (see the module docstring)."""


_decoder = msgspec.json.Decoder(Spooled)


async def keep(store: Store, event: InboundEvent, *, repeat: bool, limit: int) -> bool:
    """Append ``event`` to the spool; False when the spool is full. Raises StoreError."""
    entry = msgspec.json.encode(Spooled(event=msgspec.Raw(encode(event)), repeat=repeat))
    kept = await store.stream_append(STREAM, entry, flag=FLAG, limit=limit)
    if kept:
        metrics.SPOOLED.inc()
    else:
        metrics.SPOOL_FULL.inc()
    return kept


class Relay:
    """Publishes what the spool holds, oldest first (see the module docstring)."""

    def __init__(self, bus: Bus, store: Store) -> None:
        self.bus = bus
        self.store = store
        self.owner = new_id()
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                # Woken by new entries, or looking now and then for entries of other processes.
                async with asyncio.timeout(IDLE_LOOK_S):
                    await self.wake.wait()
            self.wake.clear()
            try:
                if await self.turn():
                    await asyncio.sleep(BACKOFF_S)  # the broker is still away: not a busy loop
            except StoreError as exc:
                log.warning("spool.store_unavailable", error=str(exc))
                await asyncio.sleep(BACKOFF_S)  # the store is away: look again later

    async def turn(self) -> bool:
        """One turn under the lock; True when it stopped because the broker did not confirm."""
        if not await self.store.acquire_lock(LOCK, self.owner, ttl_s=LOCK_TTL_S):
            return False
        try:
            return await self._drain(time.monotonic() + TURN_S)
        finally:
            with contextlib.suppress(StoreError):
                await self.store.release_lock(LOCK, self.owner)

    async def _drain(self, until: float) -> bool:
        while time.monotonic() < until:
            head = await self.store.stream_head(STREAM, count=BATCH)
            if not head:
                metrics.SPOOL_DEPTH.set(0)
                return False
            relayed: list[str] = []
            stalled = False
            for entry, raw in head:
                try:
                    await self._publish(raw)
                except BusError as exc:
                    log.warning("spool.relay_unconfirmed", error=str(exc))
                    stalled = True
                    break
                relayed.append(entry)
            left = len(head)
            if relayed:
                left = await self.store.stream_remove(STREAM, relayed, flag=FLAG)
                metrics.RELAYED.inc(len(relayed))
            metrics.SPOOL_DEPTH.set(left)
            if stalled:
                return True
            if relayed:
                log.info("spool.relayed", events=len(relayed), left=left)
        self.wake.set()  # more to do: another turn at once (this process or another)
        return False

    async def _publish(self, raw: bytes) -> None:
        try:
            spooled = _decoder.decode(raw)
            event = decode(spooled.event)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # Written by another version, or damaged: it cannot be published, and holding
            # it would hold up every event behind it.
            metrics.SPOOL_UNREADABLE.inc()
            log.error("spool.unreadable_entry", size=len(raw))
            return
        await self.bus.publish(event, repeat=spooled.repeat)
