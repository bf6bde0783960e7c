"""Exactly one event per push, however many retries arrive on however many replicas.

The store holds one key per push. The first attempt claims it with a "pending" marker that
names the attempt, publishes, and only once the broker confirmed (and the decision is known)
replaces the marker by "done" and the answer. A publish failure releases the marker (only
if it is still ours), so WeChat's next retry is not mistaken for a duplicate. A retry that
finds "done" gets the same answer; one that finds "pending" polls until the key is done
(same answer), gone (it claims the push itself) or still pending at its deadline (503, so
that WeChat tries again later: never ``success`` for an event that is not confirmed).

Each look at the key is one store call that claims it or reads what holds it
(:meth:`Store.claim`), and the answer is written with :meth:`Store.set_many`: the two calls
every push makes are the ones the Redis store sends in one pipeline per turn of the event
loop, so concurrent pushes share their round trips.

The answer does not wait for "done" to be written: the event is confirmed and the decision
known, and a retry that comes while the write is on its way finds "pending" and polls until it
lands, so it still gets the same answer. The :class:`Recorder` holds those writes, and the
service waits for them before it closes the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
import structlog

from libs.common.schemas import new_id
from libs.common.store import Store, StoreError, Write
from services.ingress import metrics
from services.ingress.errors import StillPending, StoreUnavailable

log = structlog.get_logger(__name__)

_FIRST_POLL_S = 0.01
_MAX_POLL_S = 0.2


class Pending(msgspec.Struct, frozen=True, kw_only=True, tag="pending", tag_field="s"):
    owner: str
    """Which attempt holds the claim: only it may release the key."""


class Done(msgspec.Struct, frozen=True, kw_only=True, tag="done", tag_field="s"):
    """The event is confirmed on the bus; this is the answer every attempt gets."""

    transfer: bool = False
    decided: bool = True
    """False when the decision did not come within the budget (the answer is ``success``)."""


class Settled(msgspec.Struct, frozen=True, kw_only=True):
    answer: Done
    first: bool
    """True for the attempt that published the event, False for a retry that found it done."""


Work = Callable[[], Awaitable[Done]]
"""Publishes the event (confirmed) and waits for the decision; raises when not confirmed."""


class Recorder:
    """The "done" writes on their way to the store, after their pushes were answered."""

    __slots__ = ("_writes",)

    def __init__(self) -> None:
        self._writes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._writes)

    def start(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        """Wait until every write started so far has landed or failed (it logs its failure)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Pending | Done] = msgspec.json.Decoder(Pending | Done)


def key_for(event_id: str) -> str:
    """The store key of a push; the event id is already derived from the push's dedupe key."""
    return "ingress:push:" + event_id


async def settle(
    store: Store,
    key: str,
    work: Work,
    *,
    pending_ttl_s: float,
    done_ttl_s: float,
    wait_s: float,
    recorder: Recorder,
) -> Settled:
    """Run ``work`` (publish, then wait for the decision) once per key, or return its answer.

    The first attempt returns as soon as ``work`` did; its answer is written to the store by a
    task of ``recorder``. ``work`` raising releases the claim and propagates. Raises
    :class:`StoreUnavailable` when the store fails before the event was published and
    :class:`StillPending` when another attempt still holds the key after ``wait_s``.
    """
    marker = _encoder.encode(Pending(owner=new_id()))
    mark = Write(key=key, value=marker, ttl_s=pending_ttl_s)
    deadline = time.monotonic() + wait_s
    poll_s = _FIRST_POLL_S
    while True:
        held = await _claim(store, mark)
        if held is None:
            answer = await _run(store, key, marker, work)
            recorder.start(_record(store, key, answer, done_ttl_s))
            return Settled(answer=answer, first=True)
        state = _state(held, key)
        if isinstance(state, Done):
            metrics.DEDUPE_HITS.labels(state="done").inc()
            return Settled(answer=state, first=False)
        if poll_s == _FIRST_POLL_S:
            metrics.DEDUPE_HITS.labels(state="pending").inc()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StillPending(key)
        # Polls the other attempt's progress, bounded by the deadline above; the next claim
        # takes the key if that attempt released it or its marker expired meanwhile.
        await asyncio.sleep(min(poll_s, remaining))
        poll_s = min(poll_s * 2, _MAX_POLL_S)


async def _claim(store: Store, mark: Write) -> bytes | None:
    """None when this call wrote ``mark``, else what its key holds (in the same step)."""
    try:
        claimed = await store.claim(mark)
    except StoreError as exc:
        metrics.STORE_ERRORS.labels(op="claim").inc()
        raise StoreUnavailable(str(exc)) from exc
    if claimed.ok:
        return None
    # Not written means the key holds a value, which the same atomic step read.
    return claimed.known if claimed.known is not None else b""


def _state(raw: bytes, key: str) -> Pending | Done:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        # Not written by this version of ingress: do not guess whether it was published.
        metrics.STORE_ERRORS.labels(op="decode").inc()
        log.error("dedupe.unreadable_state", key=key)
        raise StoreUnavailable(f"unreadable dedupe state under {key}") from exc


async def _run(store: Store, key: str, marker: bytes, work: Work) -> Done:
    try:
        return await work()
    except BaseException:
        # Cancelled or not confirmed: the next attempt must publish, so give the key back.
        await _release(store, key, marker)
        raise


async def _record(store: Store, key: str, answer: Done, done_ttl_s: float) -> None:
    try:
        await store.set_many([Write(key=key, value=_encoder.encode(answer), ttl_s=done_ttl_s)])
    except StoreError:
        # The push was answered (its event is confirmed); a retry after the pending marker
        # expires would publish it again, with the same event id for consumers to drop.
        metrics.STORE_ERRORS.labels(op="done").inc()
        log.warning("dedupe.done_not_recorded", key=key)


async def _release(store: Store, key: str, marker: bytes) -> None:
    try:
        await store.delete_if_equals(key, marker)
    except StoreError:
        # The marker expires after the pending TTL; until then retries are answered 503.
        metrics.STORE_ERRORS.labels(op="release").inc()
        log.warning("dedupe.release_failed", key=key)
