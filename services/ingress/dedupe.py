"""Exactly one event per push, however many retries arrive on however many replicas.

The store holds one key per push. The first attempt claims it with a "pending" marker that
names the attempt, publishes, and only once the broker confirmed (and the decision is known)
replaces the marker by "done" and the answer. A retry that finds "done" gets the same answer;
one that finds "pending" polls until the key is done (same answer), gone (it claims the push
itself) or still pending at its deadline (503, so that WeChat tries again later: never
``success`` for an event that is neither confirmed nor kept).

When the broker does not confirm in time, the event goes to the spool (``spool.py``) and the
push is settled all the same; the same happens at once while the spool holds anything (the
claim reads the spool's flag), so that no event overtakes the ones kept before it. Only when
neither the broker nor the spool takes the event is the marker released (if still ours), so
WeChat's next retry is not mistaken for a duplicate. When the store itself cannot be used,
the event is published without a claim: the consumers drop a second copy by its event id.

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
from typing import Any, Literal

import msgspec
import structlog

from libs.common.bus import BusError
from libs.common.schemas import new_id
from libs.common.store import Claim, Store, StoreError, Write, forgotten
from services.ingress import metrics, spool
from services.ingress.errors import SpoolFull, StillPending, StoreUnavailable

log = structlog.get_logger(__name__)

_FIRST_POLL_S = 0.01
_MAX_POLL_S = 0.2


class Pending(msgspec.Struct, frozen=True, kw_only=True, tag="pending", tag_field="s"):
    owner: str
    """Which attempt holds the claim: only it may release the key."""


class Done(msgspec.Struct, frozen=True, kw_only=True, tag="done", tag_field="s"):
    """The event is confirmed on the bus, or kept in the spool; the answer every attempt gets."""

    transfer: bool = False
    decided: bool = True
    """False when the decision did not come within the budget (the answer is ``success``)."""
    spooled: bool = False
    """The event waits in the spool for the broker (the answer is ``success``)."""


Path = Literal["published", "spooled", "unclaimed", "duplicate"]


class Settled(msgspec.Struct, frozen=True, kw_only=True):
    answer: Done
    path: Path
    """How this attempt settled the push: it published the event, kept it in the spool,
    published it without a claim (the store was down), or found it settled before."""

    @property
    def first(self) -> bool:
        return self.path != "duplicate"


Publish = Callable[[bool], Awaitable[Done]]
"""Publishes the event (confirmed), a possible repeat if told so, and waits for the decision;
raises BusError when the broker did not confirm it in time."""
Keep = Callable[[bool], Awaitable[bool]]
"""Appends the event to the spool (a possible repeat if told so); False when the spool is
full; raises StoreError."""


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


class Push(msgspec.Struct, frozen=True, kw_only=True):
    """One push as the dedupe state machine sees it."""

    key: str
    born: float
    """Unix seconds the push was made (its CreateTime)."""
    arrived: float
    """Unix seconds this attempt arrived."""

    def may_repeat(self, claim: Claim[None]) -> bool:
        """Whether an earlier attempt of this push may have been published and the store
        forgotten it since: the store's memory is younger than the push, and this attempt
        comes late enough to be one of WeChat's retries (see :data:`RETRY_HINT_S`)."""
        return forgotten(claim, self.born) and self.arrived - self.born > RETRY_HINT_S


RETRY_HINT_S = 3.0
"""WeChat sends a push as it is made and resends it 5 s apart; an attempt that comes later
than this after the push's CreateTime is one of the resends."""


CLAIM_BOUND_S = 1.5
"""The longest a push waits for its dedupe claim (a connection from the pool included),
leaving the rest of WeChat's 5 s to the publish and the decision."""


async def settle(
    store: Store,
    push: Push,
    publish: Publish,
    keep: Keep | None,
    *,
    pending_ttl_s: float,
    done_ttl_s: float,
    wait_s: float,
    recorder: Recorder,
) -> Settled:
    """Publish the push's event once per key (or keep it in the spool), or return the answer
    an earlier attempt settled on.

    The first attempt returns as soon as its event is confirmed or kept; its answer is written
    to the store by a task of ``recorder``. ``keep`` None: no spool. Raises BusError when
    neither the broker nor the spool took the event (the claim released), :class:`SpoolFull`,
    and :class:`StillPending` when another attempt still holds the key after ``wait_s``.
    """
    marker = _encoder.encode(Pending(owner=new_id()))
    mark = Write(key=push.key, value=marker, ttl_s=pending_ttl_s)
    deadline = time.monotonic() + wait_s
    poll_s = _FIRST_POLL_S
    while True:
        try:
            # A store that does not answer soon is as good as down: the push is published
            # unclaimed while WeChat still waits for the answer.
            async with asyncio.timeout(CLAIM_BOUND_S):
                claim = await store.claim(mark, flag=None if keep is None else spool.FLAG)
        except (StoreError, TimeoutError) as exc:
            metrics.STORE_ERRORS.labels(op="claim").inc()
            log.warning(
                "dedupe.store_unavailable", error=str(exc) or f"no answer within {CLAIM_BOUND_S:g}s"
            )
            # Published all the same: a retry of this push may publish it again, with the
            # same event id, which the consumers drop.
            return Settled(answer=await publish(False), path="unclaimed")
        if claim.ok:
            repeat = push.may_repeat(claim)
            answer, path = await _run(store, push.key, marker, publish, keep, claim, repeat)
            recorder.start(_record(store, push.key, answer, done_ttl_s))
            return Settled(answer=answer, path=path)
        held = claim.known if claim.known is not None else b""
        state = _state(held, push.key)
        if isinstance(state, Done):
            metrics.DEDUPE_HITS.labels(state="done").inc()
            return Settled(answer=state, path="duplicate")
        if poll_s == _FIRST_POLL_S:
            metrics.DEDUPE_HITS.labels(state="pending").inc()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StillPending(push.key)
        # Polls the other attempt's progress, bounded by the deadline above; the next claim
        # takes the key if that attempt released it or its marker expired meanwhile.
        await asyncio.sleep(min(poll_s, remaining))
        poll_s = min(poll_s * 2, _MAX_POLL_S)


def _state(raw: bytes, key: str) -> Pending | Done:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        # Not written by this version of ingress: do not guess whether it was published.
        metrics.STORE_ERRORS.labels(op="decode").inc()
        log.error("dedupe.unreadable_state", key=key)
        raise StoreUnavailable(f"unreadable dedupe state under {key}") from exc


async def _run(
    store: Store,
    key: str,
    marker: bytes,
    publish: Publish,
    keep: Keep | None,
    claim: Claim[None],
    repeat: bool,
) -> tuple[Done, Path]:
    """Settle the push this attempt claimed: publish it, or keep it in the spool."""
    try:
        if keep is not None and claim.flagged:
            # The spool holds events still: this one goes behind them, not ahead.
            return await _keep(keep, repeat, key), "spooled"
        try:
            return await publish(repeat), "published"
        except BusError as exc:
            if keep is None:
                raise
            log.warning("push.spooling", error=str(exc))
            # The broker may yet take the copy that timed out: the spooled one may repeat it.
            return await _keep(keep, True, key), "spooled"
    except BaseException:
        # Cancelled, or taken by neither: the next attempt must try again, so give the key back.
        await _release(store, key, marker)
        raise


async def _keep(keep: Keep, repeat: bool, key: str) -> Done:
    try:
        kept = await keep(repeat)
    except StoreError as exc:
        metrics.STORE_ERRORS.labels(op="spool").inc()
        raise BusError(f"neither the broker nor the spool took the event: {exc}") from exc
    if not kept:
        raise SpoolFull(key)
    return Done(transfer=False, decided=False, spooled=True)


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
