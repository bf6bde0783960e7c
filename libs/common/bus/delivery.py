"""One delivery, the same on both backends: decode, call the handler, decide the fate.

The backends only carry out the :class:`Verdict` (ack; publish to a delay queue, then ack;
publish to the dead-letter queue, then ack), so retry and dead-letter rules cannot drift
between ``amqp://`` and ``memory://``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Literal, TypeVar

import msgspec
import structlog

from libs.common.bus import (
    ATTEMPT_HEADER,
    DEATH_REASON_HEADER,
    NOTE_HEADER,
    REPEAT_HEADER,
    REQUEST_ID_HEADER,
    ROUTING_KEY_HEADER,
    DeadLetter,
    Handler,
    metrics,
)
from libs.common.bus.outcomes import Reject, Retry
from libs.common.schemas import BusMessage, decode, encode
from libs.common.topology import QueueSpec

log = structlog.get_logger(__name__)

REASON_MAX_CHARS = 400
"""Dead-letter reasons carry exception text: bounded, so a header never grows without end."""

T = TypeVar("T")

Replier = Callable[[str, bytes, Mapping[str, Any], str | None], Awaitable[None]]
"""``(reply_to, body, headers, correlation_id)``: how a backend sends a reply."""


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """The :class:`libs.common.bus.Delivery` both backends hand to handlers."""

    attempt: int
    max_attempts: int
    reply_to: str | None
    redelivered: bool
    headers: Mapping[str, Any]
    message_id: str | None
    correlation_id: str | None
    replier: Replier

    @property
    def final(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def fresh(self) -> bool:
        return not self.redelivered and not is_repeat(self.headers)

    @property
    def note(self) -> str | None:
        raw = self.headers.get(NOTE_HEADER)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        return raw if isinstance(raw, str) and raw else None

    async def reply(self, body: msgspec.Struct) -> None:
        if not self.reply_to:
            return
        headers = {REQUEST_ID_HEADER: self.message_id} if self.message_id else {}
        await self.replier(self.reply_to, encode(body), headers, self.correlation_id)


Outcome = Literal["ack", "retry", "dead_letter", "undecodable"]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    reason: str = ""
    delay_s: float = 0.0
    repeat: bool = True
    """For a retry: whether its copy may repeat work this delivery (or an earlier) did."""
    note: str | None = None
    """For a retry: what its copy carries to the next attempt."""


async def handle(spec: QueueSpec, handler: Handler, body: bytes, delivery: Delivery) -> Verdict:
    """Run ``handler`` on one body; never raises except on cancellation."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(queue=spec.name, attempt=delivery.attempt)
    try:
        msg = decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("delivery.undecodable", error=str(exc)[:REASON_MAX_CHARS])
        return Verdict(outcome="undecodable", reason=_bounded(f"undecodable: {exc}"))
    structlog.contextvars.bind_contextvars(correlation_id=msg.correlation_id, event_id=msg.id)
    try:
        await handler(msg, delivery)
    except Reject as exc:
        log.warning("delivery.rejected", reason=exc.reason)
        return Verdict(outcome="dead_letter", reason=_bounded(f"rejected: {exc.reason}"))
    except Retry as exc:
        log.info("delivery.retry_requested", reason=exc.reason)
        clean = exc.nothing_done and delivery.fresh
        return _retry(spec, delivery, exc.reason, exc.delay_s, repeat=not clean, note=exc.note)
    except Exception as exc:  # the bus edge: any other handler failure is a retry
        log.warning("delivery.handler_failed", error_type=type(exc).__name__, exc_info=exc)
        return _retry(spec, delivery, f"{type(exc).__name__}: {exc}", None, repeat=True)
    return Verdict(outcome="ack")


def _retry(
    spec: QueueSpec,
    delivery: Delivery,
    reason: str,
    delay_s: float | None,
    *,
    repeat: bool,
    note: str | None = None,
) -> Verdict:
    if delivery.final:
        return Verdict(outcome="dead_letter", reason=_bounded(f"attempts exhausted: {reason}"))
    delay = spec.retry_delay(delivery.attempt, delay_s)
    return Verdict(
        outcome="retry", reason=_bounded(reason), delay_s=delay, repeat=repeat, note=note
    )


async def finish(handlers: Collection[asyncio.Task[Any]], grace_s: float | None) -> None:
    """Let the handlers in flight finish, at most ``grace_s``; cancel what is left (each
    cancelled delivery goes back to its queue unsettled)."""
    if not handlers:
        return
    _, left = await asyncio.wait(handlers, timeout=grace_s)
    if not left:
        return
    log.warning("consumer.abandoned", deliveries=len(left), grace_s=grace_s)
    for task in left:
        task.cancel()
    await asyncio.wait(left)


def _bounded(text: str) -> str:
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


def pick_waiter(waiting: Mapping[str, T] | None, headers: Mapping[str, Any] | None) -> T | None:
    """The request a reply answers: by its request-id header, else the only one waiting."""
    if not waiting:
        return None
    request_id = (headers or {}).get(REQUEST_ID_HEADER)
    if isinstance(request_id, bytes):
        request_id = request_id.decode("utf-8", "replace")
    if isinstance(request_id, str) and request_id in waiting:
        return waiting[request_id]
    return next(iter(waiting.values())) if len(waiting) == 1 else None


class PendingReplies:
    """The requests of one bus waiting for their replies, by correlation id and request id.

    Both backends keep them the same way; only how a request leaves and how a reply arrives
    differs.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, dict[str, asyncio.Future[bytes]]] = {}

    async def wait(
        self, msg: BusMessage, send: Callable[[], Awaitable[None]], *, timeout_s: float
    ) -> bytes | None:
        """Register ``msg``, ``send`` it (its failure raises), then wait for the reply; None
        after ``timeout_s``."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(msg.correlation_id, {})
        waiting[msg.id] = future
        try:
            await send()
            try:
                async with asyncio.timeout(timeout_s):
                    return await future
            except TimeoutError:
                metrics.RPC_TIMEOUTS.inc()
                return None
        finally:
            waiting.pop(msg.id, None)
            if not waiting:
                self._waiting.pop(msg.correlation_id, None)

    def resolve(
        self, body: bytes, headers: Mapping[str, Any] | None, correlation_id: str | None
    ) -> bool:
        """Hand a reply to the request it answers; False (counted) when none waits for it."""
        future = pick_waiter(self._waiting.get(correlation_id or ""), headers)
        if future is None or future.done():
            metrics.RPC_LATE_REPLIES.inc()
            log.info("rpc.late_reply")
            return False
        future.set_result(body)
        return True

    def fail_all(self, error: Exception) -> None:
        for waiting in self._waiting.values():
            for future in waiting.values():
                if not future.done():
                    future.set_exception(error)


# --- headers ----------------------------------------------------------------------------------


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """The attempt a delivery is (1 when the header is missing or malformed)."""
    raw = (headers or {}).get(ATTEMPT_HEADER)
    if isinstance(raw, bool) or not isinstance(raw, int | str | bytes):
        return 1
    try:
        value = int(raw)
    except ValueError:
        return 1
    return value if value >= 1 else 1


def _own(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    # Only our headers travel on: the broker's (x-death, x-delivery-count) describe the
    # previous hop, and the broker adds fresh ones where they still apply.
    return {k: v for k, v in (headers or {}).items() if not k.startswith("x-") or _ours(k)}


def _ours(name: str) -> bool:
    return name.startswith("x-wxkf-")


def is_repeat(headers: Mapping[str, Any] | None) -> bool:
    """Whether a copy carries the mark of a possible repeat (see ``REPEAT_HEADER``)."""
    raw = (headers or {}).get(REPEAT_HEADER)
    return raw not in (None, 0, False, b"", "", b"0", "0")


def original_key(headers: Mapping[str, Any] | None, routing_key: str) -> str:
    raw = (headers or {}).get(ROUTING_KEY_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) and raw else routing_key


def retry_headers(
    headers: Mapping[str, Any] | None,
    routing_key: str,
    *,
    repeat: bool = True,
    note: str | None = None,
) -> dict[str, Any]:
    out = _own(headers)
    out[ROUTING_KEY_HEADER] = original_key(headers, routing_key)
    out[ATTEMPT_HEADER] = attempt_of(headers) + 1
    out.pop(DEATH_REASON_HEADER, None)
    _mark(out, repeat or is_repeat(headers))
    # A note is for the very next attempt only.
    if note:
        out[NOTE_HEADER] = note
    else:
        out.pop(NOTE_HEADER, None)
    return out


def _mark(headers: dict[str, Any], repeat: bool) -> None:
    if repeat:
        headers[REPEAT_HEADER] = 1
    else:
        headers.pop(REPEAT_HEADER, None)


def publish_headers(repeat: bool) -> dict[str, Any] | None:
    """The headers a publisher sets: the repeat mark, or none."""
    return {REPEAT_HEADER: 1} if repeat else None


def dead_headers(
    headers: Mapping[str, Any] | None, routing_key: str, reason: str
) -> dict[str, Any]:
    out = _own(headers)
    out[ROUTING_KEY_HEADER] = original_key(headers, routing_key)
    out[ATTEMPT_HEADER] = attempt_of(headers)
    out[DEATH_REASON_HEADER] = reason
    # A dead letter may have done part of its work; whatever replays it repeats that.
    _mark(out, True)
    return out


def replay_headers(headers: Mapping[str, Any] | None, routing_key: str) -> dict[str, Any]:
    out = _own(headers)
    out[ROUTING_KEY_HEADER] = original_key(headers, routing_key)
    out[ATTEMPT_HEADER] = 1
    out.pop(DEATH_REASON_HEADER, None)
    return out


def dead_letter(
    queue: str, headers: Mapping[str, Any] | None, routing_key: str, body: bytes
) -> DeadLetter:
    """Describe a message found in ``<queue>.dlq``, dead-lettered by the bus or the broker."""
    headers = headers or {}
    reason = headers.get(DEATH_REASON_HEADER)
    key = original_key(headers, routing_key)
    if not isinstance(reason, str | bytes):
        # Dead-lettered by the broker itself (delivery limit): its x-death says why.
        reason, key = _broker_death(headers, key)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return DeadLetter(
        queue=queue, reason=reason, attempts=attempt_of(headers), routing_key=key, body=body
    )


def _broker_death(headers: Mapping[str, Any], key: str) -> tuple[str, str]:
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], Mapping):
        return "unknown", key
    first = deaths[0]
    reason = first.get("reason", "unknown")
    reason = reason.decode() if isinstance(reason, bytes) else str(reason)
    if ROUTING_KEY_HEADER not in headers:
        keys = first.get("routing-keys")
        if isinstance(keys, list) and keys:
            key = keys[0].decode() if isinstance(keys[0], bytes) else str(keys[0])
    return reason, key
