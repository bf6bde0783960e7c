"""What became of each command, by command id, so a redelivered command is never sent twice.

Right before the call a command is marked in flight (with the time, and only if nothing is
marked yet: two deliveries of one command never both call); once settled, its outcome fact
is kept, and a redelivery publishes that fact again instead of calling WeChat. A command
still marked in flight long after the call's deadline was abandoned mid-call by a replica
that died: whether WeChat delivered it is unknown (an ambiguous failure).
"""

from __future__ import annotations

from typing import Literal

import msgspec
import structlog

from libs.common.store import Store

log = structlog.get_logger(__name__)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["inflight", "done"]
    at: float
    """Unix seconds when the state was written."""
    fact: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    """The outcome fact (a schemas message) once done; JSON null before."""


_decoder = msgspec.json.Decoder(Entry)


def ledger_key(command_id: str) -> str:
    return f"sender:command:{command_id}"


async def read(store: Store, command_id: str) -> Entry | None:
    raw = await store.get(ledger_key(command_id))
    if raw is None:
        return None
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Unreadable: its fate is unknown, which is what an abandoned call is.
        log.error("ledger.unreadable", key=ledger_key(command_id))
        return Entry(state="inflight", at=0.0)


async def begin(store: Store, command_id: str, *, at: float, ttl_s: float) -> Entry | None:
    """Mark the command as being sent now, unless something is known of it already: then
    that (a settled outcome, or another delivery's mark). Two deliveries never both call."""
    return await _record_once(store, command_id, Entry(state="inflight", at=at), ttl_s)


async def settle_once(
    store: Store, command_id: str, fact: bytes, *, at: float, ttl_s: float
) -> Entry | None:
    """Record an outcome reached without a call, unless something is known of the command
    already: then that, which stands."""
    entry = Entry(state="done", at=at, fact=msgspec.Raw(fact))
    return await _record_once(store, command_id, entry, ttl_s)


async def _record_once(store: Store, command_id: str, entry: Entry, ttl_s: float) -> Entry | None:
    raw = msgspec.json.encode(entry)
    for _ in range(2):
        if await store.set_if_absent(ledger_key(command_id), raw, ttl_s=ttl_s):
            return None
        found = await read(store, command_id)
        if found is not None:
            return found
        # Cleared by its owner between the two calls: nothing is known of it, try again.
    return Entry(state="inflight", at=entry.at)


async def finish(store: Store, command_id: str, fact: bytes, *, at: float, ttl_s: float) -> None:
    """Replace this delivery's own mark with the outcome of its call."""
    entry = Entry(state="done", at=at, fact=msgspec.Raw(fact))
    await store.set(ledger_key(command_id), msgspec.json.encode(entry), ttl_s=ttl_s)


async def clear(store: Store, command_id: str) -> None:
    """Forget a command that was definitely not delivered, so its next try sends it."""
    await store.delete(ledger_key(command_id))
