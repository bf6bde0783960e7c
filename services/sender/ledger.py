"""What became of each command, by command id, so a redelivered command is never sent twice.

Right before the call a command is marked in flight (with the time, and only if nothing is
marked yet: two deliveries of one command never both call; the mark is written in the same
atomic store call that takes the window slot and the rate token); once settled, its outcome fact
is kept, and a redelivery publishes that fact again instead of calling WeChat. A command
still marked in flight long after the call's deadline was abandoned mid-call by a replica
that died: whether WeChat delivered it is unknown (an ambiguous failure).
"""

from __future__ import annotations

from typing import Literal

import msgspec
import structlog

from libs.common.store import Store, Write

log = structlog.get_logger(__name__)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["inflight", "done"]
    at: float
    """Unix seconds when the state was written."""
    owner: str = ""
    """Which delivery wrote an in-flight mark: a later attempt of the same delivery that was
    told (``Delivery.note``) its predecessor never called WeChat may take the mark over."""
    fact: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    """The outcome fact (a schemas message) once done; JSON null before."""


_decoder = msgspec.json.Decoder(Entry)


def ledger_key(command_id: str) -> str:
    return f"sender:command:{command_id}"


async def read(store: Store, command_id: str) -> Entry | None:
    raw = await store.get(ledger_key(command_id))
    return None if raw is None else parse(command_id, raw)


def parse(command_id: str, raw: bytes) -> Entry:
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Unreadable: its fate is unknown, which is what an abandoned call is.
        log.error("ledger.unreadable", key=ledger_key(command_id))
        return Entry(state="inflight", at=0.0)


def inflight(command_id: str, *, at: float, ttl_s: float, owner: str) -> Write:
    """The mark of a command being sent now. Written with :meth:`Store.claim` (only if
    nothing is known of the command yet) right before the call: two deliveries never both
    call, and the one that finds a mark learns what is known instead."""
    entry = Entry(state="inflight", at=at, owner=owner)
    return Write(key=ledger_key(command_id), value=msgspec.json.encode(entry), ttl_s=ttl_s)


def outcome(command_id: str, fact: bytes, *, at: float, ttl_s: float) -> Write:
    """The command's outcome; written over this delivery's own mark once its call settled."""
    entry = Entry(state="done", at=at, fact=msgspec.Raw(fact))
    return Write(key=ledger_key(command_id), value=msgspec.json.encode(entry), ttl_s=ttl_s)


async def settle_once(
    store: Store, command_id: str, fact: bytes, *, at: float, ttl_s: float
) -> Entry | None:
    """Record an outcome reached without a call, unless something is known of the command
    already: then that, which stands."""
    claim = await store.claim(outcome(command_id, fact, at=at, ttl_s=ttl_s))
    return None if claim.known is None else parse(command_id, claim.known)


async def clear(store: Store, command_id: str) -> None:
    """Forget a command that was definitely not delivered, so its next try sends it."""
    await store.delete(ledger_key(command_id))
